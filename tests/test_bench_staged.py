"""benchmarks/staged: the scheduler's order, exclusivity, time limit and failures, resumable
trainings, and the settings a work folder is fixed to."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import common
from staged.command import selection
from staged.report import SPEED_CHANGES, speed_notes
from staged.settings import fix_settings
from staged.stages import ALL, Scheduler, Stage, StageTimes

from automoe.errors import AutomoeError


def test_other_sizes_on_an_old_work_folder_are_refused(tmp_path: Path) -> None:
    fix_settings(tmp_path, {"sizes": {"final_steps": 3000}})
    fix_settings(tmp_path, {"sizes": {"final_steps": 3000}})
    with pytest.raises(AutomoeError, match="started with other settings"):
        fix_settings(tmp_path, {"sizes": {"final_steps": 20}})


def _job(tmp: Path, trace: Path, name: str, sleep: float = 0.0, **kw: object) -> Stage:
    out = tmp / f"{name}.out"
    command = ("fakejob", name, str(out), str(trace), str(sleep))
    return Stage(name, out, command=command, **kw)  # type: ignore[arg-type]


def _scheduler(tmp: Path, cores: int = 2, deadline: float | None = None) -> Scheduler:
    return Scheduler(cores, tmp / "logs", StageTimes(tmp / "times.json"), deadline, 0.01, 0.0)


def test_a_stage_needing_every_core_runs_alone_and_later_stages_wait_for_it(
    tmp_path: Path, fake_job: Path
) -> None:
    plan = [
        _job(tmp_path, fake_job, "long", 1.0),
        _job(tmp_path, fake_job, "timing", slots=ALL),
        _job(tmp_path, fake_job, "other"),
        _job(tmp_path, fake_job, "after", deps=("other",)),
    ]
    outcome = _scheduler(tmp_path).run(lambda: plan)
    assert sorted(outcome.done) == ["after", "long", "other", "timing"]
    trace = fake_job.read_text().split("\n")
    assert trace[:4] == ["start long", "end long", "start timing", "end timing"]
    assert trace.index("end other") < trace.index("start after")
    assert _scheduler(tmp_path).run(lambda: plan).done == []  # done stages are skipped


def test_a_stage_planned_after_another_ends_sees_what_that_one_wrote(
    tmp_path: Path, fake_job: Path
) -> None:
    """The task_moe search's bound comes from a measurement written on stdout: planned before
    that output was reaped, the search started with the placeholder instead."""
    bound = tmp_path / "bound.out"

    def plan() -> list[Stage]:
        value = "measured" if bound.exists() else "placeholder"
        measure = ("fakejob", "measure", str(tmp_path / "m.txt"), str(fake_job), "0.2")
        search = ("fakejob", "search", str(tmp_path / "search.out"), str(fake_job), "0", value)
        return [
            Stage("measure", bound, command=measure, stdout=True),
            Stage("search", tmp_path / "search.out", ("measure",), search),
        ]

    assert _scheduler(tmp_path).run(plan).done == ["measure", "search"]
    assert (tmp_path / "search.out").read_text() == "measured"


def test_time_limit_stops_a_running_stage_and_starts_none_that_cannot_fit(
    tmp_path: Path, fake_job: Path
) -> None:
    def argv(minutes: float | None) -> list[str]:
        return ["slow", str(tmp_path / "slow.out"), str(fake_job), "60", f"--time-limit={minutes}"]

    slow = _job(tmp_path, fake_job, "slow", checkpoints=True, argv=argv)
    big = _job(tmp_path, fake_job, "big", minutes=30.0)
    outcome = _scheduler(tmp_path, deadline=time.monotonic() + 3).run(lambda: [slow, big])
    assert outcome.paused == ["slow"] and not slow.done()
    assert "needs 30.0 min" in outcome.waiting["big"]
    assert fake_job.read_text() == "start slow\n"  # stopped mid-run; big never started
    told = (tmp_path / "logs" / "slow.log").read_text().split("--time-limit=")[1].split()[0]
    assert 0 < float(told) <= 0.05  # the minutes that were left
    times = json.loads((tmp_path / "times.json").read_text())
    assert times["slow"]["starts"] == 1 and "finished" not in times["slow"]
    assert times["slow"]["cpu"] == common.cpu_model()  # hours mean little without the CPU


def test_a_failed_stage_is_reported_and_the_others_go_on(tmp_path: Path, fake_job: Path) -> None:
    broken = Stage("broken", tmp_path / "never", command=("fakejob",))  # missing arguments
    fine = _job(tmp_path, fake_job, "fine")
    outcome = _scheduler(tmp_path).run(lambda: [broken, fine])
    assert "exit status" in outcome.failed["broken"]
    assert outcome.done == ["fine"]


def test_speed_notes_name_the_old_trainings_of_a_full_run_per_change() -> None:
    before = {"attention": ("dense-s1", "switch-s1"), "loss": ("dense-s1", "dense-s2")}
    notes = [line for line in speed_notes(before, quick=False) if line]
    assert len(notes) == 2
    assert "dense-s1, switch-s1" in notes[0] and "train_attention.md" in notes[0]
    assert "dense-s1, dense-s2" in notes[1] and "train_loss.md" in notes[1]
    assert all(c.date in " ".join(notes) for c in SPEED_CHANGES.values())
    assert speed_notes(before, quick=True) == []
    assert speed_notes({"attention": (), "loss": ("token-s1",)}, quick=False) == [
        "",
        notes[1].replace("dense-s1, dense-s2", "token-s1"),
    ]


def test_an_all_core_stage_about_to_be_ready_holds_back_the_stages_after_it(
    tmp_path: Path, fake_job: Path
) -> None:
    plan = [
        _job(tmp_path, fake_job, "search", 1.0),
        _job(tmp_path, fake_job, "timing", deps=("search",), slots=ALL),
        _job(tmp_path, fake_job, "train"),
    ]
    _scheduler(tmp_path).run(lambda: plan)
    trace = fake_job.read_text().split("\n")
    assert trace[:6] == [
        "start search",
        "end search",
        "start timing",
        "end timing",
        "start train",
        "end train",
    ]


def test_an_all_core_stage_waiting_on_a_missing_input_holds_nothing_back(
    tmp_path: Path, fake_job: Path
) -> None:
    supernet = Stage("supernet", tmp_path / "supernet.pt", about="reused: supernet.pt")
    plan = [
        supernet,
        _job(tmp_path, fake_job, "timing", deps=("supernet",), slots=ALL),
        _job(tmp_path, fake_job, "train"),
    ]
    outcome = _scheduler(tmp_path).run(lambda: plan)
    assert outcome.done == ["train"]
    assert outcome.waiting == {
        "supernet": "an input not made here: reused: supernet.pt",
        "timing": "after supernet",
    }


def test_only_the_selected_stages_start_and_an_unselected_one_holds_nothing_back(
    tmp_path: Path, fake_job: Path
) -> None:
    plan = [
        _job(tmp_path, fake_job, "search"),
        _job(tmp_path, fake_job, "timing", deps=("search",), slots=ALL),
        _job(tmp_path, fake_job, "eval a"),
        _job(tmp_path, fake_job, "eval b", deps=("train b",)),
        _job(tmp_path, fake_job, "train b"),
    ]
    scheduler = _scheduler(tmp_path)
    scheduler.selected = selection("eval *, timing")
    outcome = scheduler.run(lambda: plan)
    assert outcome.done == ["eval a"]
    assert outcome.waiting == {
        "search": "not selected (--only)",
        "timing": "after search",
        "eval b": "after train b",
        "train b": "not selected (--only)",
    }
    assert selection(None) is None
    with pytest.raises(AutomoeError, match="--only"):
        selection(" , ")
