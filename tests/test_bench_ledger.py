"""benchmarks/staged/ledger.py: finished stages' results outlive the machine that ran them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from staged import ledger
from staged.records import training_record
from staged.stages import Scheduler, Stage, StageTimes


def _training(work: Path, name: str, steps: int, planned: int = 20) -> Stage:
    """A training stage and its run folder, `steps` of `planned` updates done."""
    run = work / "train" / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"train": {"max_steps": planned}}))
    rows = [{"step": s, "tokens": 100, "elapsed_s": s * 2.0} for s in range(10, steps + 1, 10)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "checkpoint.json").write_text("{}")  # a small file all the same
    (run / "checkpoint.pt").write_bytes(b"\0" * 64)
    if steps >= planned:
        (run / "model.pt").write_bytes(b"\0" * 64)
    return Stage(f"train {name}", run / "model.pt", checkpoints=True, folder=run)


def _machine(work: Path) -> list[Stage]:
    """A work folder with a finished and a paused training, a score and a log."""
    stages = [_training(work, "a-s1", 20), _training(work, "b-s1", 10)]
    score = work / "eval" / "a-s1.json"
    score.parent.mkdir()
    score.write_text('{"bleu": 38.8}')
    stages.append(Stage("eval a-s1", score, ("train a-s1",)))
    (work / "logs").mkdir()
    (work / "logs" / "train-a-s1.log").write_text("log")
    return stages


def test_the_ledger_keeps_finished_results_only_and_no_model_or_log(tmp_path: Path) -> None:
    work, folder = tmp_path / "work", tmp_path / "ledger"
    ledger.save(work, folder, _machine(work), skip=[work / "logs"])
    kept = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert kept == [
        "done.json",
        "eval/a-s1.json",
        "train/a-s1/checkpoint.json",
        "train/a-s1/metrics.jsonl",
        "train/a-s1/run.json",
    ]
    assert json.loads((folder / "done.json").read_text()) == ["eval a-s1", "train a-s1"]


def test_a_new_machine_counts_a_recorded_training_done_and_resumes_nothing_else(
    tmp_path: Path,
) -> None:
    old, new, folder = tmp_path / "old", tmp_path / "new", tmp_path / "ledger"
    ledger.save(old, folder, _machine(old))
    assert ledger.restore(new, folder) == 4
    assert ledger.restore(new, folder) == 0  # never overwrites
    stages = [
        Stage("train a-s1", new / "train/a-s1/model.pt", folder=new / "train/a-s1"),
        Stage("train b-s1", new / "train/b-s1/model.pt", folder=new / "train/b-s1"),
        Stage("eval a-s1", new / "eval/a-s1.json", ("train a-s1",)),
    ]
    marked = {s.name: s for s in ledger.mark(stages, folder)}
    assert marked["train a-s1"].done() and not marked["train a-s1"].output.exists()
    assert not marked["train b-s1"].done() and not (new / "train/b-s1").exists()
    assert marked["eval a-s1"].output.exists()
    assert training_record(new / "train/a-s1") == {"steps": 20, "elapsed_s": 40.0, "tokens": 2000}


def test_a_paused_training_has_no_training_record(tmp_path: Path) -> None:
    _training(tmp_path, "b-s1", 10)
    assert training_record(tmp_path / "train/b-s1") is None


def _fake(tmp_path: Path, fake_job: Path, name: str, deps: tuple[str, ...] = (), **kw) -> Stage:
    out = tmp_path / f"{name}.out"
    command = ("fakejob", name, str(out), str(fake_job), "0")
    return Stage(name, out, deps, command, **kw)  # type: ignore[arg-type]


def test_a_recorded_stage_runs_again_when_a_stage_still_to_do_needs_its_output(
    tmp_path: Path, fake_job: Path
) -> None:
    """A model another machine trained is gone: what needs it would wait forever."""
    folder = tmp_path / "ledger"
    folder.mkdir()
    (folder / "done.json").write_text('["shape", "train"]')
    shape, train = _fake(tmp_path, fake_job, "shape"), _fake(tmp_path, fake_job, "train")
    plan = [shape, train, _fake(tmp_path, fake_job, "timing", ("shape",))]
    marked = {s.name: s for s in ledger.mark(plan, folder)}
    assert not marked["shape"].done() and marked["train"].done()  # nothing needs train
    times = StageTimes(tmp_path / "times.json")
    outcome = Scheduler(2, tmp_path / "logs", times).run(lambda: ledger.mark(plan, folder))
    assert outcome.done == ["shape", "timing"] and outcome.failed == {}
    assert fake_job.read_text().split("\n")[:2] == ["start shape", "end shape"]


def test_a_stage_naming_its_inputs_runs_after_a_recorded_stage_when_they_came_back(
    tmp_path: Path, fake_job: Path
) -> None:
    folder = tmp_path / "ledger"
    folder.mkdir()
    (folder / "done.json").write_text('["search"]')
    best, pareto = tmp_path / "best.yaml", tmp_path / "pareto.json"
    best.write_text("arch")  # restored by the ledger; pareto.json was never recorded
    search = Stage("search", tmp_path / "summary.json", command=("never",))
    train = _fake(tmp_path, fake_job, "train", ("search",), inputs=(best,))
    times = StageTimes(tmp_path / "times.json")
    outcome = Scheduler(2, tmp_path / "logs", times).run(
        lambda: ledger.mark([search, train], folder)
    )
    assert outcome.done == ["train"] and outcome.failed == {}  # the search did not run again
    front = _fake(tmp_path, fake_job, "front", ("search",), inputs=(pareto, best))
    marked = {s.name: s for s in ledger.mark([search, train, front], folder)}
    assert not marked["search"].done()  # what front reads is not here: the search reruns


def test_a_stage_whose_dependencies_did_not_make_its_input_waits_and_says_so(
    tmp_path: Path, fake_job: Path
) -> None:
    missing = tmp_path / "best.yaml"
    plan = [
        _fake(tmp_path, fake_job, "search"),
        _fake(tmp_path, fake_job, "train", ("search",), inputs=(missing,)),
    ]
    outcome = Scheduler(2, tmp_path / "logs", StageTimes(tmp_path / "t.json")).run(lambda: plan)
    assert outcome.done == ["search"]
    assert outcome.waiting["train"] == f"needs {missing}, which its dependencies did not make"


def test_large_files_are_data_not_results_and_stay_out(tmp_path: Path) -> None:
    work, folder = tmp_path / "work", tmp_path / "ledger"
    work.mkdir()
    (work / "big.csv").write_text("x" * (ledger.MAX_BYTES + 1))
    (work / "small.csv").write_text("x")
    ledger.save(work, folder, [])
    assert not (folder / "big.csv").exists() and (folder / "small.csv").exists()
