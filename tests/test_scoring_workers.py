"""Child processes never outlive their parent: `--jobs N` scoring workers end when the search
is killed with kill -9 (the issue's case left two 650 MB workers behind), through the
kernel's parent-death signal and, where there is none, a thread polling the parent's pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def children(pid: int) -> list[int]:
    """Every process whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_jobs_workers_end_when_the_search_is_killed(
    tmp_path: Path, tiny_run: Path, data_dir: Path, wait_ended: Callable[..., list[int]]
) -> None:
    run = tmp_path / "search"
    search = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "automoe.search",
            f"--supernet={tiny_run}",
            f"--run={run}",
            f"--data-dir={data_dir}",
            "--strategy=random",
            "--objectives=loss",
            "--valid-size=8",
            "--jobs=2",
            "--threads=2",
            "--no-progress",
            "--evaluations=100000",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    record = run / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while not (record.exists() and record.read_text().count("\n") >= 4):  # workers are scoring
        assert search.poll() is None, search.stderr.read() if search.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    helpers = children(search.pid)
    search.send_signal(signal.SIGKILL)
    search.wait()
    assert len(helpers) >= 2, "two scoring workers (and multiprocessing's resource tracker)"
    assert wait_ended(helpers, 10.0) == []


PARENT = """
import os, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1], str(os.getpid())])
"""
POLLING_CHILD = """
import os, sys, time
import automoe.processes as processes
processes.signal_on_parent_death = lambda sig: False  # as where the kernel has no such signal
processes.die_with_parent(int(sys.argv[1]))
print(os.getpid(), flush=True)
time.sleep(600)
"""


def test_without_the_kernels_signal_a_child_polls_for_its_parent(
    wait_ended: Callable[..., list[int]],
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, POLLING_CHILD], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_ended([child], 10.0) == []


def test_a_child_whose_parent_died_before_it_asked_exits_at_once() -> None:
    """The kernel signals only deaths after the request: one before it is checked for."""
    orphan = subprocess.run(
        [
            sys.executable,
            "-c",
            "from automoe.processes import die_with_parent\n"
            "die_with_parent(parent=0)\n"
            "print('still running')",
        ],
        capture_output=True,
        text=True,
    )
    assert orphan.returncode == 1 and orphan.stdout == ""
