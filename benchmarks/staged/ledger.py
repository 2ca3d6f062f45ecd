"""The committed record of a staged benchmark's finished stages: what outlives the machine.

A benchmark's work folder (checkpoints, models, logs) stays on the machine that ran it, and a
later session may get a new machine: every finished training would be lost, and with it
hours of CPU time. So after every stage the ledger copies the small result files of the work
folder (JSON, JSON lines, CSV, YAML) beside the report, to be committed with it, and lists
the stages that were done (`done.json`). A new invocation first copies back what its work
folder lacks. A stage that was done but whose big output (a model file) is not on this
machine then counts as done by record: its results are in the restored files, and it is
not run again, unless a stage still to do needs that output: then it runs again.

What is never copied: logs, checkpoints and models (binary), partial outputs, and the run
folder of a training or search that had not finished (its restored metrics would not match
the checkpoint it lacks).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from automoe.files import write_text_atomic
from staged.stages import Stage

DONE_FILE = "done.json"
KEPT_SUFFIXES = (".json", ".jsonl", ".csv", ".yaml")
MAX_BYTES = 2 * 1024 * 1024  # larger files are not results but data (a latency dataset is ~10 kB)


def recorded(folder: Path) -> frozenset[str]:
    """The stages the ledger in `folder` lists as done."""
    path = folder / DONE_FILE
    return frozenset(json.loads(path.read_text())) if path.is_file() else frozenset()


def restore(work: Path, folder: Path) -> int:
    """Copy back every recorded file the work folder lacks; returns how many."""
    count = 0
    for source in sorted(folder.rglob("*")):
        if not source.is_file() or source.name == DONE_FILE:
            continue
        target = work / source.relative_to(folder)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            count += 1
    return count


def mark(stages: Sequence[Stage], folder: Path) -> list[Stage]:
    """The stages, those recorded as done but lacking their output here done by record,
    unless a stage still to do needs that output: then it runs again (a SuperNet its
    search needs, an untrained model its timing needs), or what needs it would wait forever.
    A stage that names its inputs needs only them (the ledger may have brought them back)."""
    names = recorded(folder)
    pending = [s for s in stages if s.name not in names and not s.done()]
    needed = {
        dep
        for s in pending
        if not s.inputs or not all(p.exists() for p in s.inputs)
        for dep in s.deps
    }
    return [
        dataclasses.replace(s, finished=_always)
        if s.name in names and s.name not in needed and not s.done()
        else s
        for s in stages
    ]


def save(work: Path, folder: Path, stages: Sequence[Stage], skip: Sequence[Path] = ()) -> None:
    """Record the small files of the work folder (but those under `skip` and the folders of
    unfinished trainings and searches) and the names of the stages done."""
    unfinished = [s.folder for s in stages if s.folder is not None and not s.done()]
    for source in sorted(work.rglob("*")):
        if not _kept(source) or _under(source, [*skip, *unfinished]):
            continue
        target = folder / source.relative_to(work)
        data = source.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    done = sorted({s.name for s in stages if s.done()} | recorded(folder))
    write_text_atomic(folder / DONE_FILE, json.dumps(done, indent=1) + "\n")


def _always() -> bool:
    return True


def _kept(path: Path) -> bool:
    return path.is_file() and path.suffix in KEPT_SUFFIXES and path.stat().st_size <= MAX_BYTES


def _under(path: Path, folders: Sequence[Path]) -> bool:
    return any(path.is_relative_to(f) for f in folders)
