"""What the staged benchmarks' commands share: seeds from the command line, paths shown
relative to the working directory, and one invocation of the scheduler with its report."""

from __future__ import annotations

import argparse
import shlex
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from automoe.errors import AutomoeError
from staged.layout import StagedLayout
from staged.stages import Outcome, Scheduler, Stage, StageTimes


def parse_seeds(text: str | None, minimum: int = 1) -> tuple[int, ...] | None:
    """`--seeds 1,2`: distinct integers, at least `minimum` of them (None: the default)."""
    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise AutomoeError(f"--seeds {text!r}: write comma-separated integers, e.g. 1,2") from None
    if len(seeds) < minimum or len(set(seeds)) != len(seeds):
        raise AutomoeError(f"--seeds {text!r}: give at least {minimum} distinct seed(s), e.g. 1,2")
    return seeds


def here(path: Path) -> Path:
    """`path` relative to the working directory when inside it: the report's commands then
    name no folder of this machine."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class Invocation:
    """How one invocation runs: cores, time limit (minutes), the scheduler's start and stop
    margins, in-process or not, and the command line that repeats it."""

    jobs: int
    time_limit: float | None
    min_start: float
    margin: float
    inline: bool
    script: str
    argv: Sequence[str]

    @property
    def again(self) -> str:
        return " ".join([f"python {self.script}", *map(shlex.quote, self.argv)])


Report = Callable[[Outcome, StageTimes, str], Sequence[Path]]


def run_invocation(
    stages: Callable[[], Sequence[Stage]],
    layout: StagedLayout,
    how: Invocation,
    write_report: Report,
) -> int:
    """Run what can run (SIGTERM stops the stages, keeping their checkpoints), write the
    report whatever happened, and say what is pending and how to continue."""
    times = StageTimes(layout.stage_times)
    deadline = None if how.time_limit is None else time.monotonic() + how.time_limit * 60
    scheduler = Scheduler(
        how.jobs, layout.logs, times, deadline, how.min_start, how.margin, how.inline
    )
    done = sum(s.done() for s in stages())
    limit = f", time limit {how.time_limit:g} min" if how.time_limit else ""
    print(f"{done} of {len(stages())} stages done in {layout.work}; {how.jobs} core(s){limit}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        scheduler.run(stages)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the running stages (their checkpoints are kept)")
    finally:
        signal.signal(signal.SIGTERM, previous)
        written = write_report(scheduler.outcome, times, how.again)
    outcome = scheduler.outcome
    pending = [s.name for s in stages() if not s.done()]
    print(f"ran {len(outcome.done)} stage(s): {', '.join(outcome.done) or 'none'}")
    print(f"wrote {' and '.join(map(str, written))}")
    if pending:
        print(f"{len(pending)} stage(s) pending: {', '.join(pending)}")
        print(f"continue with: {how.again}")
    else:
        print("every stage is done")
    if outcome.failed:
        print(f"{len(outcome.failed)} stage(s) failed: {', '.join(outcome.failed)} (see logs)")
        return 1
    return 130 if interrupted else 0


class Planned(Protocol):
    """What `run_plan` needs of a benchmark's plan."""

    layout: StagedLayout

    @property
    def sizes(self) -> Any: ...

    def stages(self) -> list[Stage]: ...


def run_plan(
    plan: Planned,
    args: argparse.Namespace,
    argv: Sequence[str],
    script: str,
    info: dict[str, Any],
    collect: Callable[[], dict[str, Any]],
    write: Callable[..., None],
) -> int:
    """One invocation of a staged benchmark from its parsed command line (`--jobs`,
    `--time-limit`, `--quick`, `--inline`): `write(plan, collect(), outcome, times, info,
    again, quick)` writes its report, `collect` reading the outputs once the stages ran."""
    how = Invocation(
        args.jobs,
        args.time_limit,
        plan.sizes.min_start,
        plan.sizes.margin,
        args.quick if args.inline is None else args.inline,
        script,
        argv,
    )

    def write_report(outcome: Outcome, times: StageTimes, again: str) -> list[Path]:
        write(plan, collect(), outcome, times, info, again, args.quick)
        return [plan.layout.report_md, plan.layout.report_json]

    return run_invocation(plan.stages, plan.layout, how, write_report)
