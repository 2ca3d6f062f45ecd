"""Atomic file writes: a reader, or a process killed mid-write, sees the old file or the new one.

Every file a long job rewrites (checkpoints, run records, strategy state, sidecars) goes
through `atomic_path`: the content is written to a temporary file beside the target, flushed
to disk, then renamed over it, which POSIX makes atomic within one file system.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
