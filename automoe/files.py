"""Atomic file writes: a reader, or a process killed mid-write, sees the old file or the new one.

Every file a long job rewrites (checkpoints, run records, strategy state, sidecars) goes
through `atomic_path`: the content is written to a temporary file beside the target, flushed
to disk, then renamed over it, which POSIX makes atomic within one file system. Those writes
assume one writer per folder, which `locked_folder` makes sure of.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from automoe.errors import AutomoeError

LOCK_FILE = ".lock"


@contextmanager
def atomic_path(path: str | Path, keep_previous: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    With `keep_previous`, the file being replaced survives as `path.prev`, so one damaged
    write (a full disk, a bad sector) never loses the last good copy. A temporary file that a
    killed writer left beside `path` is removed first: one writer per file is assumed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.part"):
        stale.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def previous_path(path: str | Path) -> Path:
    """Where `atomic_path(..., keep_previous=True)` keeps the copy it replaced."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextmanager
def locked_folder(folder: str | Path, owner: str) -> Iterator[Path]:
    """Hold `folder` for this process (creating it); a second process asking for it ends at
    once, with one message naming the holder's pid and `owner` (its command).

    The lock is the kernel's (flock on `folder/.lock`), so a killed holder releases it. The
    lock file is removed on release, and with it the folders this call created if nothing
    else was written into them: a run that failed leaves nothing behind.
    """
    folder = Path(folder)
    created = next((p for p in [folder, *folder.parents][::-1] if not p.exists()), None)
    path = folder / LOCK_FILE
    handle = _lock(path)
    try:
        handle.write(f"{os.getpid()} {owner}\n")
        handle.flush()
        yield folder
    finally:
        path.unlink(missing_ok=True)
        handle.close()
        while created is not None and folder != created.parent:
            with contextlib.suppress(OSError):
                folder.rmdir()
            folder = folder.parent


def _lock(path: Path) -> TextIO:
    """The lock file, opened and locked; retried while a releasing holder removes it."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = path.open("a+")
        except FileNotFoundError:  # the folder was removed by a holder's release
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise AutomoeError(
                f"{path.parent} is in use by another process (pid {holder}); wait for it to "
                "end, or stop it, or choose another folder"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                handle.truncate(0)
                return handle
        handle.close()  # locked a file its holder had just removed: lock the new one


def _holder(handle: TextIO) -> str:
    """The holder's "pid command", which it writes just after taking the lock."""
    for _ in range(20):
        handle.seek(0)
        text = handle.read().strip()
        if text:
            return text.replace(" ", ", ", 1)
        time.sleep(0.05)
    return "unknown"
