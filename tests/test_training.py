"""SuperNet training: schedule, loss, sampling, exact resume after a kill, and the CLI."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from automoe.errors import AutomoeError, run_cli
from automoe.files import previous_path
from automoe.runs import load_model_file, save_with_tokenizer
from automoe.space import SearchSpace
from automoe.train.__main__ import build_parser
from automoe.train.__main__ import main as train_main
from automoe.train.sampling import step_archs
from automoe.train.schedule import warmup_cosine

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(run: Path, space: Path, data_dir: Path, steps: int = 8, **extra: object) -> list[str]:
    args = {
        "run": run,
        "space": space,
        "data-dir": data_dir,
        "train-limit": 300,
        "valid-size": 40,
        "vocab-size": 400,
        "max-tokens": 512,
        "max-steps": steps,
        "warmup-steps": 3,
        "checkpoint-every": 2,
        "validate-every": 4,
        "log-every": 1,
        "threads": 1,
        **extra,
    }
    out = [f"--{k}={v}" for k, v in args.items()]
    return [*out, "--no-progress"]


def test_warmup_then_cosine() -> None:
    kw = dict(lr=1e-3, warmup=10, total=110, init_lr=1e-7, min_lr=1e-5)
    assert warmup_cosine(0, **kw) == pytest.approx(1e-7)
    assert warmup_cosine(5, **kw) == pytest.approx((1e-7 + 1e-3) / 2)
    assert warmup_cosine(10, **kw) == pytest.approx(1e-3)
    assert warmup_cosine(60, **kw) == pytest.approx((1e-3 + 1e-5) / 2)
    assert warmup_cosine(110, **kw) == pytest.approx(1e-5)
    assert warmup_cosine(500, **kw) == pytest.approx(1e-5)
    rates = [warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_step_archs_depend_only_on_seed_and_step(tiny_space_file: Path) -> None:
    space = SearchSpace.load(tiny_space_file)
    assert step_archs(space, 1, 7) == step_archs(space, 1, 7)
    distinct = {step_archs(space, 1, s)[0] for s in range(30)}
    assert len(distinct) > 10
    assert {step_archs(space, 2, s)[0] for s in range(30)} != distinct
    sandwich = step_archs(space, 1, 7, "sandwich")
    assert sandwich[:2] == [space.largest(), space.smallest()]
    assert sandwich[2] == step_archs(space, 1, 7)[0]
    with pytest.raises(AutomoeError, match="sandwich"):
        step_archs(space, 1, 7, "greedy")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The final weights: a SuperNet's supernet.pt or, for `--arch`, model.pt."""
    final = run / "supernet.pt" if (run / "supernet.pt").exists() else run / "model.pt"
    return torch.load(final, weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_training_learns_and_is_deterministic(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    for name in ("a", "b"):
        assert train_main(tiny_args(tmp_path / name, tiny_space_file, data_dir, steps=12)) == 0
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    rows = [
        line.split(",") for line in (tmp_path / "a" / "metrics.csv").read_text().splitlines()[1:]
    ]
    losses = [float(r[3]) for r in rows]
    assert [int(r[0]) for r in rows] == list(range(1, 13))
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    for name in ("run.json", "tokenizer.model", "checkpoint.pt", "metrics.jsonl"):
        assert (tmp_path / "a" / name).is_file()


def test_resume_after_stop_equals_uninterrupted_run(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=10)) == 0
    assert train_main([*tiny_args(parts, tiny_space_file, data_dir, steps=10), "--stop-at=6"]) == 0
    assert not (parts / "supernet.pt").exists()
    assert train_main([f"--run={parts}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, parts)
    steps = [line.split(",")[0] for line in (parts / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 11)]


@pytest.mark.parametrize("model", ["supernet", "arch"])
def test_resume_after_kill_equals_uninterrupted_run(
    model: str, tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """SIGKILL a real training process mid-run; resuming must lose and change nothing, for a
    SuperNet and for one architecture (`--arch`)."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    steps = 14
    extra = {}
    if model == "arch":
        arch = tmp_path / "arch.yaml"
        arch.write_text(yaml.safe_dump(SearchSpace.load(tiny_space_file).largest().to_dict()))
        extra = {"arch": arch}
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=steps, **extra)) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "automoe.train",
        *tiny_args(killed, tiny_space_file, data_dir, steps, **extra),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pt").is_file()
    assert not (killed / "supernet.pt").exists() and not (killed / "model.pt").exists()
    assert train_main([f"--run={killed}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, killed)
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == steps


def test_sigterm_pauses_at_an_update_with_a_checkpoint_and_resumes_exactly(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """A SIGTERM (preemption, `kill`, a scheduler's stop) ends the run after the current update
    with a checkpoint of that update, not of the last periodic one: nothing trained is lost."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    steps = 14
    flags = {"checkpoint-every": 100}  # only the pause itself can checkpoint mid-run
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=steps, **flags)) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "automoe.train",
        *tiny_args(stopped, tiny_space_file, data_dir, steps, **flags),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = stopped / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    done = len(metrics.read_text().splitlines())
    assert 4 <= done < steps
    assert f"paused at step {done}" in out
    checkpoint = torch.load(stopped / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["step"] == done
    assert train_main([f"--run={stopped}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, stopped)


def test_cli_errors_are_one_clear_message(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "automoe.train", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    bad_space = tmp_path / "bad.yaml"
    bad_space.write_text(tiny_space_file.read_text().replace("heads: [2, 4]", "heads: [3]"))
    cases = {
        "bad space": ([f"--run={tmp_path / 'r1'}", f"--space={bad_space}"], "heads"),
        "bad data dir": (
            [f"--run={tmp_path / 'r2'}", f"--data-dir={tmp_path / 'nowhere'}"],
            "--data-dir",
        ),
        "resume nothing": ([f"--run={tmp_path / 'r3'}", "--resume"], "not a run folder"),
    }
    for name, (args, needle) in cases.items():
        result = run(*args)
        assert result.returncode == 2, name
        assert "Traceback" not in result.stderr, name
        assert needle in result.stderr, (name, result.stderr)

    done = tmp_path / "done"
    assert train_main(tiny_args(done, tiny_space_file, data_dir, steps=2)) == 0
    again = run(*tiny_args(done, tiny_space_file, data_dir, steps=2))
    assert again.returncode == 2 and "--resume" in again.stderr
    changed = run(f"--run={done}", "--resume", "--lr=0.5")
    assert changed.returncode == 2 and "--lr" in changed.stderr
    (done / "checkpoint.pt").write_bytes(b"garbage")
    corrupt = run(f"--run={done}", "--resume", "--max-steps=4")
    assert corrupt.returncode == 2 and "corrupt" in corrupt.stderr


# --- option validation -------------------------------------------------------------------


REFUSED = {
    "max-steps": ["0", "-5"],
    "lr": ["0", "-1e-3", "nan"],
    "warmup-steps": ["-1"],
    "clip-norm": ["-1", "inf"],
    "label-smoothing": ["-0.1", "1.5"],
    "balance-coef": ["-0.01"],
    "update-freq": ["0"],
    "checkpoint-every": ["0"],
    "validate-every": ["0"],
    "log-every": ["0"],
    "dropout": ["1.2", "-0.1"],
    "attention-dropout": ["2"],
    "activation-dropout": ["-1"],
    "capacity-factor": ["0"],
    "vocab-size": ["0"],
    "max-len": ["-1"],
    "max-tokens": ["0"],
    "train-limit": ["-1"],
    "valid-size": ["0"],
    "task-temperature": ["0", "-1", "nan"],
    "threads": ["0"],
    "stop-at": ["0"],
    "time-limit": ["0", "-2"],
    "seed": ["1.5"],
}
ACCEPTED_ZERO = [
    "warmup-steps",
    "clip-norm",
    "label-smoothing",
    "balance-coef",
    "dropout",
    "train-limit",
    "seed",
]


@pytest.mark.parametrize(("option", "values"), sorted(REFUSED.items()))
def test_impossible_numbers_are_refused_when_parsed(
    option: str, values: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for value in values:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["--run=r", f"--{option}={value}"])
        assert exit_info.value.code == 2
        assert f"--{option}" in capsys.readouterr().err


def test_zero_is_accepted_where_it_means_off() -> None:
    args = vars(build_parser().parse_args(["--run=r", *(f"--{o}=0" for o in ACCEPTED_ZERO)]))
    assert all(args[o.replace("-", "_")] == 0 for o in ACCEPTED_ZERO)
    assert build_parser().parse_args(["--run=r", "--task-temperature=inf"]).task_temperature == (
        math.inf
    )


def test_every_numeric_option_is_checked() -> None:
    """A new numeric option missing from the table above fails here."""
    typed = {a.option_strings[0][2:] for a in build_parser()._actions if a.type is not None}
    assert typed == set(REFUSED)


def test_zero_steps_writes_nothing(tmp_path: Path, tiny_space_file: Path, data_dir: Path) -> None:
    run = tmp_path / "zero"
    with pytest.raises(SystemExit) as exit_info:
        train_main(tiny_args(run, tiny_space_file, data_dir, steps=0))
    assert exit_info.value.code == 2
    assert not run.exists()


# --- checkpoints: atomic, the previous one kept, older formats still resume ----------------


def _damage(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_checkpoint_resumes_from_the_previous_one(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=10)) == 0
    assert train_main([*tiny_args(parts, tiny_space_file, data_dir, steps=10), "--stop-at=6"]) == 0
    _damage(parts / "checkpoint.pt")
    capsys.readouterr()
    assert train_main([f"--run={parts}", "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.pt.prev" in out and "step 4" in out
    _assert_same_weights(full, parts)
    steps = [line.split(",")[0] for line in (parts / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 11)]


def test_fallback_keeps_the_good_previous_checkpoint(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """The first save after a fallback replaces the damaged file, never the good `.prev`."""
    run = tmp_path / "run"
    assert train_main([*tiny_args(run, tiny_space_file, data_dir, steps=10), "--stop-at=6"]) == 0
    _damage(run / "checkpoint.pt")
    assert train_main([f"--run={run}", "--resume", "--stop-at=6", "--no-progress"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6
    assert torch.load(previous_path(run / "checkpoint.pt"), weights_only=True)["step"] == 4


def test_kill_between_the_two_renames_resumes_from_the_previous_checkpoint(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=10)) == 0
    assert train_main([*tiny_args(parts, tiny_space_file, data_dir, steps=10), "--stop-at=6"]) == 0
    (parts / "checkpoint.pt").unlink()
    again = run_cli(train_main, tiny_args(parts, tiny_space_file, data_dir, steps=10))
    assert again == 2
    assert train_main([f"--run={parts}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, parts)


LEGACY_KEYS = (
    "format",
    "model",
    "optimizer",
    "settings",
    "step",
    "epoch",
    "batch_index",
    "elapsed",
    "torch_rng",
)


def test_checkpoint_of_the_first_format_still_resumes(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """A run folder from before `.prev` existed: one `automoe-trainer/1` checkpoint, saved
    with plain torch.save, holding exactly the keys that format had."""
    full, legacy = tmp_path / "full", tmp_path / "legacy"
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=10)) == 0
    assert train_main([*tiny_args(legacy, tiny_space_file, data_dir, steps=10), "--stop-at=6"]) == 0
    state = torch.load(legacy / "checkpoint.pt", weights_only=True)
    assert state["format"] == "automoe-trainer/1"
    torch.save({k: state[k] for k in LEGACY_KEYS}, legacy / "checkpoint.pt")
    previous_path(legacy / "checkpoint.pt").unlink(missing_ok=True)
    assert train_main([f"--run={legacy}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, legacy)


def test_a_failed_save_keeps_the_old_files_and_leaves_no_temporary(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    assert train_main(tiny_args(run, tiny_space_file, data_dir, steps=4)) == 0
    models = ("checkpoint.pt", "checkpoint.pt.prev", "supernet.pt")
    before = {name: (run / name).read_bytes() for name in models}
    names = {p.name for p in run.iterdir()}
    model, tokenizer = load_model_file(run)

    def full_disk(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_with_tokenizer(model, tokenizer, run / "supernet.pt")
    with pytest.raises(OSError, match="No space"):
        train_main([f"--run={run}", "--resume", "--max-steps=6", "--no-progress"])
    assert {name: (run / name).read_bytes() for name in models} == before
    assert {p.name for p in run.iterdir()} == names


# --- resuming writes nothing until the inputs are known good -----------------------------


def _snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_new_run_with_bad_data_dir_creates_nothing(tmp_path: Path, tiny_space_file: Path) -> None:
    run = tmp_path / "run"
    args = tiny_args(run, tiny_space_file, tmp_path / "nowhere")
    assert run_cli(train_main, args) == 2
    assert not run.exists()


def test_resume_from_a_corrupt_checkpoint_rewrites_nothing(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train_main([*tiny_args(run, tiny_space_file, data_dir, steps=10), "--stop-at=2"]) == 0
    assert not previous_path(run / "checkpoint.pt").exists()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    before = _snapshot(run)
    capsys.readouterr()
    assert run_cli(train_main, [f"--run={run}", "--resume", "--max-steps=12"]) == 2
    assert "corrupt" in _one_error_line(capsys)
    assert _snapshot(run) == before


@pytest.mark.parametrize("kept", [("run.json",), ("run.json", "tokenizer.model")])
def test_resume_of_a_run_of_which_only_the_settings_are_left_trains_it_again_the_same(
    kept: tuple[str, ...],
    tmp_path: Path,
    tiny_space_file: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full, again = tmp_path / "full", tmp_path / "again"
    assert train_main(tiny_args(full, tiny_space_file, data_dir, steps=6)) == 0
    again.mkdir()
    for name in kept:  # what a results ledger keeps of a run whose machine is gone
        (again / name).write_bytes((full / name).read_bytes())
    (again / "metrics.jsonl").write_text('{"step": 3, "loss": 9.0}\n')  # a run cut off early
    capsys.readouterr()
    assert train_main([f"--run={again}", "--resume", "--no-progress"]) == 0
    assert "holds no checkpoint yet: training from the first update" in capsys.readouterr().out
    _assert_same_weights(full, again)
    steps = [line.split(",")[0] for line in (again / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 7)]


def test_resume_of_a_finished_run_says_so_and_rewrites_nothing(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train_main(tiny_args(run, tiny_space_file, data_dir, steps=4)) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert train_main([f"--run={run}", "--resume", "--no-progress"]) == 0
    assert "already trained for 4 steps" in capsys.readouterr().out
    assert train_main([f"--run={run}", "--resume", "--max-steps=3", "--no-progress"]) == 0
    assert "already trained for 4 steps" in capsys.readouterr().out
    assert _snapshot(run) == before


def test_resume_rewrites_the_model_a_kill_did_not_save(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """Killed after the final checkpoint but before `supernet.pt`: resuming writes it."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    for run in (full, killed):
        assert train_main(tiny_args(run, tiny_space_file, data_dir, steps=4)) == 0
    (killed / "supernet.pt").unlink()
    assert train_main([f"--run={killed}", "--resume", "--no-progress"]) == 0
    _assert_same_weights(full, killed)


def test_resume_with_stop_at_already_passed_is_refused(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train_main([*tiny_args(run, tiny_space_file, data_dir, steps=10), "--stop-at=4"]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert run_cli(train_main, [f"--run={run}", "--resume", "--stop-at=4"]) == 2
    assert "--stop-at" in _one_error_line(capsys)
    assert _snapshot(run) == before


def test_both_checkpoints_damaged_is_one_clear_message(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train_main([*tiny_args(run, tiny_space_file, data_dir, steps=10), "--stop-at=4"]) == 0
    _damage(run / "checkpoint.pt")
    _damage(previous_path(run / "checkpoint.pt"))
    before = _snapshot(run)
    capsys.readouterr()
    assert run_cli(train_main, [f"--run={run}", "--resume"]) == 2
    line = _one_error_line(capsys)
    assert "checkpoint.pt.prev" in line and "corrupt" in line
    assert _snapshot(run) == before
