"""User-facing errors and the command-line wrapper that turns them into one clear message."""

from __future__ import annotations

import sys
from collections.abc import Callable


class AutomoeError(Exception):
    """A problem the user can fix (bad config, path or file): printed without a traceback."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a command's `main`, printing user errors as one line on stderr with exit code 2."""
    try:
        code = main(argv)
    except AutomoeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished work is saved, rerun with --resume to continue", file=sys.stderr
        )
        return 130
    return int(code or 0)
