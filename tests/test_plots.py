"""Search-run figures and `python -m automoe.plot`, on fake run folders built in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automoe.errors import run_cli
from automoe.plot.__main__ import main
from automoe.plot.figures import load_run, plot_progress, plot_tradeoff


def make_run(
    folder: Path,
    strategy: str = "evolution",
    seed: int = 0,
    count: int = 12,
    reference_point: dict[str, float] | None = None,
    references: bool = True,
) -> Path:
    """A search run folder as `python -m automoe.search` writes it: one failed evaluation,
    some over the 80 ms latency bound, lines written out of order."""
    folder.mkdir(parents=True)
    search: dict[str, Any] = {
        "strategy": strategy,
        "seed": seed,
        "objectives": ["loss", "latency_ms"],
        "metric": "loss",
        "constraints": [{"metric": "latency_ms", "op": "<=", "bound": 80.0}],
        "cost_metrics": ["latency_ms", "flops", "params"],
    }
    if reference_point:
        search["reference_point"] = reference_point
    (folder / "search.json").write_text(json.dumps(search))
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        latency = float(rng.uniform(20, 120))
        rows.append(
            {
                "index": index,
                "arch_key": f"arch{index}",
                "arch": {},
                "loss": None if index == 3 else float(6 - latency / 40 + rng.uniform(0, 1)),
                "latency_ms": latency,
                "flops": latency * 3e7,
                "params": latency * 1e5,
                "feasible": index != 3 and latency <= 80,
                "violation": latency - 80,
                "elapsed_s": 1.0,
            }
        )
    lines = [json.dumps(row) for row in rows]
    lines[0], lines[1] = lines[1], lines[0]
    (folder / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    if references:
        metrics = {"latency_ms": 120.0, "flops": 3.6e9, "params": 1.2e7}
        reference = {
            "largest": {"loss": 3.0, **metrics},
            "smallest": {"loss": 6.5, "latency_ms": 15.0, "flops": 4.5e8, "params": 1.5e6},
            "dense": {"loss": 3.5, **metrics},
        }
        (folder / "reference.json").write_text(json.dumps(reference))
    return folder


def assert_figures(paths: list[Path]) -> None:
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert "<svg" in svg.read_text() and svg.stat().st_size > 1000


def test_load_run_reads_in_evaluation_order(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path / "run"))
    assert [e["index"] for e in run.evaluations] == list(range(12))
    assert np.isnan(run.column("loss")[3]) and not run.feasible[3]
    assert np.isnan(run.column("bleu")).all()  # a metric the run never wrote
    assert [str(c) for c in run.constraints] == ["latency_ms<=80"]
    assert set(run.references) == {"largest", "smallest", "dense"}
    assert run.label == "run (evolution, seed 0)"


@pytest.mark.parametrize("cost", ["latency_ms", "flops", "params"])
def test_figures_for_one_run(tmp_path: Path, cost: str) -> None:
    runs = [load_run(make_run(tmp_path / "run", references=cost != "params"))]
    assert_figures(plot_tradeoff(runs, tmp_path / "out", cost))
    assert_figures(plot_progress(runs, tmp_path / "out", (9.0, 200.0), cost))


def test_cli_overlays_runs_and_prints_the_stored_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_run(tmp_path / "a", reference_point={"loss": 9.0, "latency_ms": 200.0})
    second = make_run(tmp_path / "b", strategy="random", seed=1, references=False)
    assert main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"loss=9, latency_ms=200 (from {first / 'search.json'})" in out
    written = sorted(p.name for p in (first / "plots").iterdir())
    assert written == [
        "progress_latency_ms.png",
        "progress_latency_ms.svg",
        "tradeoff_latency_ms.png",
        "tradeoff_latency_ms.svg",
    ]
    for name in written:
        assert f"wrote {first / 'plots' / name}" in out
        assert (first / "plots" / name).stat().st_size > 1000


def test_cli_default_and_given_reference_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [make_run(tmp_path / "a"), make_run(tmp_path / "b", seed=1)]
    out_dir = tmp_path / "figures"
    assert main([*map(str, runs), "--cost", "flops", "--out", str(out_dir)]) == 0
    records = [load_run(r) for r in runs]
    worst_loss = max(np.nanmax(r.column("loss")) for r in records) * 1.1
    worst_flops = max(np.nanmax(r.column("flops")) for r in records) * 1.1
    expected = f"loss={worst_loss:g}, flops={worst_flops:g} (1.1 x the largest loss and flops"
    assert expected in capsys.readouterr().out
    assert (out_dir / "tradeoff_flops.svg").is_file()
    assert main([str(runs[0]), "--reference", "8,1e6", "--cost", "params"]) == 0
    assert "loss=8, params=1e+06 (from --reference)" in capsys.readouterr().out


def test_cli_errors_are_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_run(tmp_path / "good")
    empty = make_run(tmp_path / "empty")
    (empty / "evaluations.jsonl").write_text("")
    corrupt = make_run(tmp_path / "corrupt")
    (corrupt / "evaluations.jsonl").write_text('{"index": 0, "loss": 4.0, "feasible": true}\n{"in')
    unreadable = make_run(tmp_path / "unreadable")
    (unreadable / "search.json").write_text("{")
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "not a search run folder"),
        ([str(empty)], "no evaluations yet"),
        ([str(corrupt)], "line 2 is not valid JSON"),
        ([str(unreadable)], "search.json is not valid JSON"),
        (
            [str(good), "--cost", "watts"],
            "unknown cost 'watts'; choices: latency_ms, flops, params",
        ),
        ([str(good), "--reference", "9"], "write QUALITY,COST"),
    ]
    for argv, needle in cases:
        assert run_cli(main, argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert needle in err, (argv, err)


def test_module_runs_as_a_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "automoe.plot", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: search run folder {tmp_path / 'missing'} does not exist\n"


def bleu_run(folder: Path) -> Path:
    """A run that scored BLEU: rows hold bleu (higher is better) and no loss."""
    make_run(folder)
    search = json.loads((folder / "search.json").read_text())
    search.update(metric="bleu", objectives=["bleu", "latency_ms"])
    (folder / "search.json").write_text(json.dumps(search))
    rows = [json.loads(line) for line in (folder / "evaluations.jsonl").read_text().splitlines()]
    for row in rows:
        loss = row.pop("loss")
        row["bleu"] = None if loss is None else 40.0 - 5.0 * loss
        row["objective"] = None if loss is None else -row["bleu"]
    (folder / "evaluations.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    return folder


def test_bleu_runs_plot_bleu_with_fronts_on_the_maximised_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = load_run(bleu_run(tmp_path / "b"))
    assert run.metric == "bleu"
    np.testing.assert_allclose(run.score(), -run.column("bleu"))
    assert_figures(plot_tradeoff([run], tmp_path / "out"))
    assert "validation BLEU" in (tmp_path / "out" / "tradeoff_latency_ms.svg").read_text()
    assert_figures(plot_progress([run], tmp_path / "out", (0.0, 100.0)))
    assert (
        "best feasible validation BLEU"
        in (tmp_path / "out" / "progress_latency_ms.svg").read_text()
    )
    assert main([str(run.path), "--out", str(tmp_path / "cli")]) == 0
    lowest = np.nanmin(run.column("bleu")) / 1.1
    assert f"bleu={lowest:g}" in capsys.readouterr().out
    loss_run = make_run(tmp_path / "l")
    assert run_cli(main, [str(run.path), str(loss_run)]) == 2
    assert "plot loss and BLEU runs separately" in capsys.readouterr().err
