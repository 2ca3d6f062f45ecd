"""A search stage that survives kills and time limits: `automoe.search --resume` continues
its run folder, and its `--time-limit` counts scoring minutes across resumes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from staged.stages import Stage


def resumable_search(
    name: str,
    run: Path,
    command: tuple[str, ...],
    resume_flags: Sequence[str] = (),
    deps: tuple[str, ...] = (),
    slots: int = 1,
) -> Stage:
    """`command` (an `automoe.search` with `--strategy=...` first and `--run=run`) as a stage
    done once the search ended for another reason than its time limit; `slots=ALL` for one
    that measures latency, which nothing may disturb."""

    def argv(left: float | None) -> list[str]:
        if not (run / "search.json").is_file():
            args, spent = list(command[1:]), 0.0
        else:
            args = [command[1], f"--run={run}", "--resume", "--threads=1", "--no-progress"]
            args += resume_flags
            spent = _search_minutes(run)
        return args + ([f"--time-limit={spent + left:.2f}"] if left is not None else [])

    return Stage(
        name,
        run / "summary.json",
        deps,
        command,
        argv,
        slots=slots,
        checkpoints=True,
        finished=lambda: search_finished(run),
        folder=run,
    )


def search_finished(run: Path) -> bool:
    path = run / "summary.json"
    if not path.is_file():
        return False
    return json.loads(path.read_text())["ending"]["stopped_by"] != "time limit"


def _search_minutes(run: Path) -> float:
    """Scoring minutes a search has spent: its `--time-limit` counts them across resumes."""
    path = run / "evaluations.jsonl"
    if not path.is_file():
        return 0.0
    for line in reversed(path.read_text().splitlines()):
        try:
            return float(json.loads(line)["elapsed_s"]) / 60
        except (ValueError, KeyError):
            continue  # a blank or torn last line
    return 0.0
