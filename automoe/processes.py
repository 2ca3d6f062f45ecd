"""Child processes that end when their parent does, even when it is killed with SIGKILL.

A parent killed with kill -9 runs no cleanup, so its children must notice on their own:
scoring workers each hold a SuperNet (hundreds of MB), benchmark stages and test servers run
for hours. On Linux the kernel signals the child when its parent dies (prctl
PR_SET_PDEATHSIG): immediate, no thread, and it survives exec, so it also covers children that
run another program. Elsewhere a Python child polls its parent's pid once a second from a
daemon thread, which needs no cooperation from the parent (a pipe would have to be passed to
every child) and costs one sleeping thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0


def signal_on_parent_death(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies; False where it
    cannot (not Linux). Safe between fork and exec."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent: int, sig: int = signal.SIGTERM, poll: bool = True) -> None:
    """Make this process receive `sig` when process `parent` (its parent) ends.

    `parent` is the pid the parent had when it started this process: a parent that died
    before this call is noticed here, and this process exits at once. Linux signals when the
    parent *thread* that started the child ends, so start children from a thread that lives
    as long as they should. `poll=False` skips the polling fallback: between fork and exec
    (`preexec_fn`) no thread may start, and none would survive the exec.
    """
    if signal_on_parent_death(sig):
        if os.getppid() != parent:
            os._exit(1)
        return
    if poll:
        threading.Thread(target=_watch, args=(parent, sig), daemon=True).start()


def _watch(parent: int, sig: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), sig)
