"""The notebook API: `automoe.search(...)` runs the same search as the command and returns its
result; bad settings fail with one message before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import automoe
from automoe.errors import AutomoeError
from automoe.search.__main__ import main as search_main


def small_search(
    run: Path, supernet: Path, data_dir: Path, **extra: object
) -> automoe.SearchResult:
    return automoe.search(
        "random",
        run=run,
        supernet=str(supernet),
        data_dir=str(data_dir),
        objectives=["loss", "flops"],
        evaluations=6,
        batch=3,
        valid_size=30,
        threads=1,
        progress=False,
        **extra,
    )


def test_search_call_returns_the_run_and_equals_the_command(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    result = small_search(tmp_path / "api", tiny_run, data_dir)
    assert len(result.evaluations) == 6
    assert all(isinstance(row["arch"], automoe.ArchConfig) for row in result.evaluations)
    assert result.objectives == ["loss", "flops"]
    assert result.front and result.front[-1]["arch"] == result.best
    costs = [point["flops"] for point in result.front]
    assert costs == sorted(costs)  # cheapest first
    assert result.best == automoe.ArchConfig.load(result.run / "best.yaml")
    assert result.plots and all(p.is_file() for p in result.plots)
    assert automoe.SearchResult.load(result.run) == result

    command = tmp_path / "cli"
    argv = [
        "--strategy=random",
        f"--run={command}",
        f"--supernet={tiny_run}",
        f"--data-dir={data_dir}",
        "--objectives=loss,flops",
        "--evaluations=6",
        "--batch=3",
        "--valid-size=30",
        "--threads=1",
        "--no-progress",
    ]
    assert search_main(argv) == 0
    by_command = automoe.SearchResult.load(command)
    assert [r["arch_key"] for r in by_command.evaluations] == [
        r["arch_key"] for r in result.evaluations
    ]
    assert [r["loss"] for r in by_command.evaluations] == pytest.approx(
        [r["loss"] for r in result.evaluations]
    )


def test_resume_through_the_call_extends_the_budget(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    run = tmp_path / "grow"
    small_search(run, tiny_run, data_dir)
    more = automoe.search("random", run=run, resume=True, evaluations=9, progress=False, threads=1)
    assert len(more.evaluations) == 9
    assert len({r["arch_key"] for r in more.evaluations}) == 9


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"evaluations": 0}, "evaluations = 0 must be a positive integer"),
        ({"batch": 2.5}, "batch = 2.5 must be a positive integer"),
        ({"metric": "accuracy"}, "metric = 'accuracy'; choices"),
        ({"constraints": ["latency<80"]}, "METRIC<=BOUND"),
        ({"objectives": ["latency_ms"]}, "start with loss"),
        ({"strategy": "annealing"}, "annealing"),
        ({"colour": "red"}, "unknown setting(s) ['colour']"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(
    tmp_path: Path, tiny_run: Path, settings: dict, needle: str
) -> None:
    strategy = settings.pop("strategy", "random")
    run = tmp_path / "bad"
    with pytest.raises(AutomoeError) as info:
        automoe.search(strategy, run=run, supernet=str(tiny_run), **settings)
    assert needle in str(info.value)
    assert not run.exists()


def test_load_of_an_unfinished_run_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AutomoeError, match="no finished search"):
        automoe.SearchResult.load(tmp_path)
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(AutomoeError, match="not valid JSON"):
        automoe.SearchResult.load(tmp_path)


def test_import_automoe_stays_light() -> None:
    """Commands import the package first: the API must not load torch's search stack with it."""
    heavy = "('optuna', 'nevergrad', 'sklearn')"
    code = f"import json, sys, automoe; print(json.dumps([m for m in {heavy} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def tiny_training(data_dir: Path) -> dict[str, object]:
    return {
        "data_dir": data_dir,
        "train_limit": 400,
        "valid_size": 30,
        "vocab_size": 400,
        "max_tokens": 512,
        "warmup_steps": 5,
        "threads": 1,
        "progress": False,
    }


def test_train_call_trains_pauses_and_resumes_like_the_command(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    run = tmp_path / "nb"
    paused = automoe.train(
        run, space=tiny_space_file, max_steps=8, stop_at=4, **tiny_training(data_dir)
    )
    assert (paused.run, paused.step, paused.model) == (run, 4, None)
    done = automoe.train(run, resume=True, progress=False, threads=1)
    assert (done.step, done.model) == (8, run / "supernet.pt")
    net = automoe.SuperNet.load(done.model)
    assert net.space == automoe.SearchSpace.load(tiny_space_file)

    arch = tmp_path / "smallest.yaml"
    net.space.smallest().save(arch)
    one = automoe.train(tmp_path / "one", arch=arch, init_from=run, max_steps=2, progress=False)
    assert one.model == tmp_path / "one" / "model.pt" and one.step == 2


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"max_steps": 0}, "argument --max-steps"),
        ({"sampling": "greedy"}, "argument --sampling: invalid choice"),
        ({"colour": "red"}, "unrecognized arguments: --colour=red"),
    ],
)
def test_train_call_refuses_bad_options_in_one_message(
    tmp_path: Path, tiny_space_file: Path, options: dict, needle: str
) -> None:
    with pytest.raises(AutomoeError) as info:
        automoe.train(tmp_path / "bad", space=tiny_space_file, **options)
    assert str(info.value).startswith("train(): ") and needle in str(info.value)
    assert not (tmp_path / "bad").exists()
