"""`python -m automoe.search` end to end on a tiny SuperNet: constraints, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from automoe.constraints import Constraint
from automoe.cost import count_flops
from automoe.errors import AutomoeError
from automoe.search.__main__ import main as search_main
from automoe.space import ArchConfig
from automoe.strategies import available

ROOT = Path(__file__).resolve().parents[1]
FLOPS_BOUND = 3.2e6


def search_args(run: Path, supernet: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"--supernet={supernet}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--valid-size=30",
        "--threads=1",
        "--no-progress",
        *extra,
    ]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


SMALL_EVOLUTION = [
    "--strategy=evolution",
    "--option=population=10",
    "--option=parents=4",
    "--option=mutations=4",
    "--option=crossovers=4",
]


def test_constraint_parsing_and_sign() -> None:
    c = Constraint.parse("latency_ms<=80")
    assert (c.metric, c.op, c.bound) == ("latency_ms", "<=", 80.0)
    assert c.violation(70) == -10 and c.violation(90) == 10
    assert Constraint.parse("params>=1e6").violation(2e6) == -1e6
    for bad, needle in (("latency<80", "METRIC<=BOUND"), ("speed<=3", "unknown metric")):
        with pytest.raises(AutomoeError, match=needle):
            Constraint.parse(bad)


def test_evolution_respects_constraint_and_writes_results(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    run = tmp_path / "evo"
    args = search_args(run, tiny_run, data_dir, *SMALL_EVOLUTION)
    assert search_main([*args, f"--constraint=flops<={FLOPS_BOUND}", "--evaluations=30"]) == 0
    evaluated = rows(run)
    assert len(evaluated) == 30
    assert len({r["arch_key"] for r in evaluated}) == 30
    settings = json.loads((run / "search.json").read_text())
    for r in evaluated:
        arch = ArchConfig.from_dict(r["arch"])
        flops = count_flops(arch, qkv_dim=32, vocab_size=400).without_output
        assert r["flops"] == pytest.approx(flops) and flops <= FLOPS_BOUND
        assert r["feasible"] and r["violation"] <= 0 and r["loss"] > 0
    best = ArchConfig.load(run / "best.yaml")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["arch_key"] == best.key()
    assert summary["best"]["loss"] == min(r["loss"] for r in evaluated)
    assert settings["constraints"] == [{"metric": "flops", "op": "<=", "bound": FLOPS_BOUND}]
    reference = json.loads((run / "reference.json").read_text())
    assert set(reference) == {"largest", "smallest", "dense"}
    assert all(len(layer) == 1 for layer in reference["dense"]["arch"]["encoder_ffn_dims"])
    front = json.loads((run / "pareto.json").read_text())["flops"]
    assert best.key() in front
    assert (run / "evaluations.csv").read_text().count("\n") == 31
    for cost in ("flops", "params"):
        assert (run / "plots" / f"tradeoff_{cost}.png").stat().st_size > 0


def test_resume_continues_without_rescoring(tmp_path: Path, tiny_run: Path, data_dir: Path) -> None:
    run = tmp_path / "resumed"
    args = search_args(run, tiny_run, data_dir, *SMALL_EVOLUTION, "--objectives=loss")
    assert search_main([*args, "--evaluations=14"]) == 0
    first = rows(run)
    assert (
        search_main(
            [
                *search_args(run, tiny_run, data_dir, "--strategy=evolution"),
                "--resume",
                "--evaluations=30",
            ]
        )
        == 0
    )
    both = rows(run)
    assert both[:14] == first and len(both) == 30
    assert len({r["arch_key"] for r in both}) == 30
    straight = tmp_path / "straight"
    assert (
        search_main(
            [
                *search_args(straight, tiny_run, data_dir, *SMALL_EVOLUTION, "--objectives=loss"),
                "--evaluations=30",
            ]
        )
        == 0
    )
    assert [r["arch_key"] for r in rows(straight)] == [r["arch_key"] for r in both]


def test_killed_search_resumes_and_loses_nothing(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "automoe.search",
        *search_args(
            run, tiny_run, data_dir, "--strategy=random", "--batch=2", "--objectives=loss"
        ),
        "--evaluations=400",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    record = run / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if record.exists() and len(record.read_text().splitlines()) >= 12:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(run)
    resume = search_args(run, tiny_run, data_dir, "--strategy=random")
    assert search_main([*resume, "--resume", f"--evaluations={len(before) + 10}"]) == 0
    after = rows(run)
    assert after[: len(before)] == before
    assert len(after) == len(before) + 10
    assert len({r["arch_key"] for r in after}) == len(after)


@pytest.mark.parametrize("strategy", sorted(available()))
def test_every_strategy_runs_end_to_end(
    strategy: str, tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    run = tmp_path / strategy
    args = search_args(run, tiny_run, data_dir, f"--strategy={strategy}", "--evaluations=12")
    assert search_main([*args, f"--constraint=flops<={FLOPS_BOUND}"]) == 0
    evaluated = rows(run)
    assert len(evaluated) == 12 and all(r["flops"] <= FLOPS_BOUND for r in evaluated)


def test_parallel_workers_score_like_one_process(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--strategy=random", "--evaluations=6", "--batch=6", "--objectives=loss"]
    assert search_main([*search_args(one, tiny_run, data_dir, *common)]) == 0
    assert search_main([*search_args(two, tiny_run, data_dir, *common), "--jobs=2"]) == 0
    a, b = rows(one), rows(two)
    assert [r["arch_key"] for r in a] == [r["arch_key"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)


def test_user_errors_are_one_clear_message(tmp_path: Path, tiny_run: Path, data_dir: Path) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "automoe.search", *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    base = search_args(tmp_path / "r", tiny_run, data_dir)
    cases = [
        ((*base, "--strategy=simulated-annealing"), "evolution"),
        ((*base, "--strategy=random", "--constraint=flops<=10"), "cannot be met"),
        ((*base, "--strategy=random", "--constraint=flops<10"), "METRIC<=BOUND"),
        ((*base, "--strategy=random", "--option=population"), "KEY=VALUE"),
        (
            (*search_args(tmp_path / "r", tmp_path / "missing.pt", data_dir), "--strategy=random"),
            "does not exist",
        ),
        ((*base, "--strategy=random", "--resume"), "no search to resume"),
    ]
    for args, needle in cases:
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert needle in result.stderr, (args, result.stderr)
