"""A training stage that survives kills and time limits: it continues its run folder's
checkpoint when there is one and is told the minutes left."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from automoe.files import previous_path
from automoe.runs import CHECKPOINT_FILE
from staged.stages import Stage


def resumable_training(
    name: str,
    command: tuple[str, ...],
    final: str,
    resume_flags: Sequence[str] = (),
    deps: tuple[str, ...] = (),
    slots: int = 1,
    threads: int = 1,
    inputs: tuple[Path, ...] = (),
) -> Stage:
    """`command` (an `automoe.train` with `--run=DIR`) as a stage done once `DIR/final` exists.

    A started run resumes (`--resume` plus `resume_flags`, the flags a resume still needs,
    such as the data folder); every start gets `--time-limit`, so it pauses with a checkpoint.
    """
    run = Path(next(a for a in command if a.startswith("--run=")).removeprefix("--run="))

    def argv(left: float | None) -> list[str]:
        checkpoint = run / CHECKPOINT_FILE
        if checkpoint.exists() or previous_path(checkpoint).exists():
            args = [f"--run={run}", "--resume", f"--threads={threads}", "--no-progress"]
            args += resume_flags
        else:
            args = list(command[1:])
        return args + ([f"--time-limit={left:.2f}"] if left is not None else [])

    return Stage(
        name,
        run / final,
        deps,
        command,
        argv,
        slots=slots,
        threads=threads,
        checkpoints=True,
        folder=run,
        inputs=inputs,
    )
