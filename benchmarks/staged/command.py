"""What the staged benchmarks' commands share: seeds from the command line, paths shown
relative to the working directory, and one invocation of the scheduler with its report."""

from __future__ import annotations

import argparse
import fnmatch
import shlex
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from automoe.argtypes import positive_float, positive_int
from automoe.errors import AutomoeError
from staged import ledger
from staged.layout import StagedLayout
from staged.settings import fix_settings
from staged.stages import Scheduler, Stage, StageTimes


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


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags every staged benchmark takes for one invocation: cores, time, what runs."""
    p.add_argument("--jobs", type=positive_int, default=2, help="cores: jobs run at a time")
    p.add_argument("--time-limit", type=positive_float, help="minutes for this invocation")
    p.add_argument(
        "--only",
        metavar="PATTERNS",
        help="start only the stages whose names match one of these comma-separated patterns "
        "(shell-style: 'eval *,train automoe-half-s1'); the rest wait. For a session that "
        "cannot finish a long stage on a machine that does not keep the work folder",
    )
    p.add_argument(
        "--inline",
        action=argparse.BooleanOptionalAction,
        help="run commands in this process, one at a time (default with --quick: no process "
        "start-ups; the time limit is then only passed on, not enforced)",
    )


def selection(text: str | None) -> Callable[[Stage], bool] | None:
    """`--only` as a test of a stage's name (None: every stage may start)."""
    if text is None:
        return None
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise AutomoeError(f"--only {text!r}: give stage names or patterns, e.g. 'eval *'")
    return lambda stage: any(fnmatch.fnmatchcase(stage.name, p) for p in patterns)


def here(path: Path) -> Path:
    """`path` relative to the working directory when inside it: the report's commands then
    name no folder of this machine."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    settings: dict[str, Any],
) -> int:
    """One invocation of a staged benchmark from its parsed command line (`--jobs`,
    `--time-limit`, `--only`, `--quick`, `--inline`): bring back the ledger's record of earlier
    machines' stages, fix the work folder to `settings`, run what can run (SIGTERM stops the
    stages, keeping their checkpoints), record every finished stage in the ledger, write the
    report whatever happened with `write(plan, collect(), outcome, times, info, again,
    quick)`, `collect` reading the outputs once the stages ran, and say what is pending and
    how to continue."""
    layout = plan.layout
    restored = ledger.restore(layout.work, layout.ledger)
    if restored:
        print(f"restored {restored} result file(s) of earlier runs from {layout.ledger}")
    fix_settings(layout.work, settings)
    again = " ".join([f"python {script}", *map(shlex.quote, argv)])
    inline = args.quick if args.inline is None else args.inline
    times = StageTimes(layout.stage_times)
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit * 60

    # the report and its folder (the ledger among them) may lie inside the work folder
    skip = [layout.logs, layout.figures, layout.report_md, layout.report_json]

    def record() -> None:
        ledger.save(layout.work, layout.ledger, plan.stages(), skip=skip)

    scheduler = Scheduler(
        args.jobs,
        layout.logs,
        times,
        deadline,
        plan.sizes.min_start,
        plan.sizes.margin,
        inline,
        after=record,
        selected=selection(args.only),
    )
    stages = plan.stages
    done = sum(s.done() for s in stages())
    limit = f", time limit {args.time_limit:g} min" if args.time_limit else ""
    print(f"{done} of {len(stages())} stages done in {layout.work}; {args.jobs} core(s){limit}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        scheduler.run(stages)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the running stages (their checkpoints are kept)")
    finally:
        signal.signal(signal.SIGTERM, previous)
        write(plan, collect(), scheduler.outcome, times, info, again, args.quick)
        record()  # after the report, which may keep what it read from outside the work folder
    outcome = scheduler.outcome
    pending = [s.name for s in stages() if not s.done()]
    print(f"ran {len(outcome.done)} stage(s): {', '.join(outcome.done) or 'none'}")
    print(f"wrote {layout.report_md} and {layout.report_json}")
    if pending:
        print(f"{len(pending)} stage(s) pending: {', '.join(pending)}")
        print(f"continue with: {again}")
    else:
        print("every stage is done")
    if outcome.failed:
        print(f"{len(outcome.failed)} stage(s) failed: {', '.join(outcome.failed)} (see logs)")
        return 1
    return 130 if interrupted else 0
