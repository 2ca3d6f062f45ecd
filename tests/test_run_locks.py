"""One process per run folder: a second search, training or Multi30k benchmark given a folder
in use ends at once with one message naming the holder's pid; a killed holder frees it; a
released lock leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from automoe.errors import AutomoeError, run_cli
from automoe.files import LOCK_FILE, locked_folder
from automoe.search.__main__ import main as search_main
from automoe.train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from automoe.files import locked_folder
with locked_folder(sys.argv[1], "holder"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def held(folder: Path) -> Iterator[int]:
    """`folder` locked by another process, for the block; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def wait_for_lock(folder: Path, proc: subprocess.Popen) -> None:
    """Until `proc` (a command) holds `folder`."""
    lock = folder / LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith(f"{proc.pid} ")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)


def refusal(capsys: pytest.CaptureFixture[str], main: Callable[..., int], args: list[str]) -> str:
    """The one error line of a command run in this process, refused with exit status 2."""
    capsys.readouterr()
    assert run_cli(main, args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_second_search_into_a_running_searchs_folder_ends_at_once(
    tmp_path: Path, tiny_run: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: two searches into one folder wrote 40 rows, 20 indexes twice, and a
    summary saying 20. Now the second is refused and the first's record stays whole."""
    run = tmp_path / "search"
    args = [
        f"--supernet={tiny_run}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--strategy=random",
        "--objectives=loss",
        "--valid-size=8",
        "--threads=1",
        "--no-progress",
        "--evaluations=20",
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "automoe.search", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_lock(run, first)
    err = refusal(capsys, search_main, args)
    assert f"{run} is in use by another process (pid {first.pid}, python -m automoe" in err
    assert first.wait() == 0, first.stderr.read() if first.stderr else ""
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(20))
    assert json.loads((run / "summary.json").read_text())["evaluations"] == 20
    assert not (run / LOCK_FILE).exists()


def test_a_second_training_is_refused_and_a_killed_trainer_frees_the_folder(
    tmp_path: Path,
    tiny_space_file: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "train"
    args = [
        f"--run={run}",
        f"--space={tiny_space_file}",
        f"--data-dir={data_dir}",
        "--train-limit=300",
        "--vocab-size=400",
        "--max-steps=100000",
        "--threads=1",
        "--no-progress",
    ]
    trainer = subprocess.Popen(
        [sys.executable, "-m", "automoe.train", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_lock(run, trainer)
        err = refusal(capsys, train_main, args)
        assert f"(pid {trainer.pid}, python -m automoe.train)" in err
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    with locked_folder(run, "test"):
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()} test\n"


def test_only_rank_0_of_a_torchrun_training_takes_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every rank names the same --run; rank 0 alone writes there and holds it."""
    run = tmp_path / "ddp"
    with held(run) as holder:
        monkeypatch.setenv("RANK", "1")
        assert "is in use" not in refusal(capsys, train_main, [f"--run={run}", "--resume"])
        monkeypatch.setenv("RANK", "0")
        assert f"pid {holder}, holder" in refusal(capsys, train_main, [f"--run={run}", "--resume"])


def test_a_second_multi30k_benchmark_on_one_work_folder_is_refused(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_multi30k

    work = tmp_path / "work"
    with held(work) as holder, pytest.raises(AutomoeError, match=f"pid {holder}, holder"):
        bench_multi30k.main(["--quick", f"--work={work}", f"--data-dir={data_dir}"])


def test_a_released_lock_leaves_only_what_was_written(tmp_path: Path) -> None:
    empty = tmp_path / "new" / "run"
    with locked_folder(empty, "test"):
        assert (empty / LOCK_FILE).is_file()
    assert not (tmp_path / "new").exists(), "folders it created and nothing filled are removed"

    used = tmp_path / "used"
    with locked_folder(used, "test"):
        (used / "run.json").write_text("{}")
    assert [p.name for p in used.iterdir()] == ["run.json"]

    with locked_folder(used, "again"):  # released: the same process takes it again
        pass


def test_a_lock_file_left_by_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("999999 python -m automoe.search\n")
    with locked_folder(tmp_path, "test"):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()} test\n"


def test_one_process_holding_a_folder_cannot_take_it_twice(tmp_path: Path) -> None:
    with (
        locked_folder(tmp_path, "outer"),
        pytest.raises(AutomoeError, match="outer"),
        locked_folder(tmp_path, "inner"),
    ):
        pass
