"""The Stage abstraction and the scheduler that runs stages until done or out of time.

A stage is one step of the benchmark: a library command (`python -m automoe.train ...`) or a
function of the benchmark's own; it is done once its output exists, so every invocation
skips what an earlier one finished. The scheduler starts the stages whose dependencies are
done, in the plan's order, as background processes on `cores` cores (a stage takes one core,
or all of them: timing, or a job using every thread). It re-reads the plan after every
stage, because later stages are only known from earlier outputs (a search's front).

Time: with a deadline, a stage that checkpoints starts while a few minutes are left and is
told the time it has (`Stage.argv(minutes)`: a training's `--time-limit`); one that cannot
checkpoint starts only if its estimate fits. At the deadline whatever still runs is stopped
(its last checkpoint is kept). Child processes die with the scheduler's process.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import cpu_model

from automoe.files import write_text_atomic
from automoe.processes import die_with_parent

ALL = -1  # `Stage.slots`: every core, with nothing else running beside it
GRACE_S = 30.0  # between asking a stopped process to end and killing it


@dataclass
class Stage:
    """One step: `command` (module and arguments) or `action`; done once `output` exists.

    `argv(minutes_left)` gives the arguments of this start when they differ from `command`'s
    (continuing a started run; None = no time limit). `finished` replaces the existence test
    when an output can exist before the stage is done (a search paused by its time limit).
    `folder`: the run folder the stage owns (a training's, a search's). `inputs`: the files
    it reads that its dependencies wrote; a stage that names them may run after a dependency
    done by an earlier machine's record (`staged.ledger`) when they are here (the ledger
    brought them back), which otherwise runs again.
    """

    name: str
    output: Path
    deps: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    argv: Callable[[float | None], list[str]] | None = None
    action: Callable[[], None] | None = None
    about: str = ""
    slots: int = 1
    threads: int = 1
    checkpoints: bool = False
    minutes: float = 1.0
    stdout: bool = False
    finished: Callable[[], bool] | None = None
    folder: Path | None = None
    inputs: tuple[Path, ...] = ()

    def done(self) -> bool:
        return self.finished() if self.finished is not None else self.output.exists()

    def shown(self) -> str:
        """The command line that reproduces this stage, or what the benchmark does itself."""
        if not self.command:
            return self.about
        return " ".join(["python", "-m", self.command[0], *self.command[1:]])

    def args_now(self, minutes_left: float | None) -> list[str]:
        return self.argv(minutes_left) if self.argv else list(self.command[1:])

    @property
    def log_name(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name) + ".log"


class StageTimes:
    """Wall seconds each stage has run, summed over invocations (`stage_times.json`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path.is_file() else {}
        )

    def add(self, stage: Stage, seconds: float, done: bool) -> None:
        entry = self.data.setdefault(stage.name, {"seconds": 0.0, "threads": stage.threads})
        entry["seconds"] += seconds
        entry["starts"] = entry.get("starts", 0) + 1
        # A work folder's stages may finish on different machines (`staged.ledger`): the
        # hours of each are worth only as much as the CPU they were spent on.
        entry["cpu"] = cpu_model()
        if done:
            entry["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


@dataclass
class _Running:
    stage: Stage
    proc: subprocess.Popen
    started: float
    log: Any
    stdout_part: Path | None


@dataclass
class Outcome:
    """What one invocation did: stages run to the end, paused, failed or left waiting."""

    done: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return time.strftime("%H:%M:%S")


class Scheduler:
    """Runs a plan's stages on `cores` cores until nothing more can start.

    `inline` runs commands in this process, one at a time (no process start-up: the quick
    run), where a deadline can only be passed on to the stages, not enforced.
    """

    def __init__(
        self,
        cores: int,
        logs: Path,
        times: StageTimes,
        deadline: float | None = None,
        min_start: float = 1.0,
        margin: float = 1.0,
        inline: bool = False,
        after: Callable[[], None] | None = None,
        selected: Callable[[Stage], bool] | None = None,
    ) -> None:
        self.cores = cores
        self.logs = logs
        self.times = times
        self.deadline = deadline
        self.min_start = min_start
        self.margin = margin
        self.inline = inline
        self.after = after  # called whenever a stage ends (the ledger records it)
        self.selected = selected  # which stages may start (None: all)
        self.running: dict[str, _Running] = {}
        self.outcome = Outcome()

    def minutes_left(self) -> float | None:
        return None if self.deadline is None else (self.deadline - time.monotonic()) / 60

    def run(self, plan: Callable[[], Sequence[Stage]]) -> Outcome:
        """Start ready stages, wait for one to end, re-plan; until none runs or can start.
        The plan is read after reaping, so a stage's command sees what the stages that just
        ended wrote (a bound measured on stdout lands only when its process is reaped)."""
        try:
            while True:
                self._reap()
                stages = list(plan())
                if self._start_ready(stages):
                    continue
                if not self.running:
                    break
                self._wait()
        finally:
            self._stop_all()
        return self.outcome

    # ------------------------------------------------------------------ choosing stages

    def _start_ready(self, stages: Sequence[Stage]) -> bool:
        """Start what is ready and fits; True when an in-process stage ran (re-plan now)."""
        done = {s.name for s in stages if s.done()}
        used = sum(self._cores(r.stage) for r in self.running.values())
        self.outcome.waiting = {}
        for stage in stages:
            if stage.name in done or stage.name in self.running:
                continue
            if stage.name in self.outcome.failed or stage.name in self.outcome.paused:
                continue
            if self.selected is not None and not self.selected(stage):
                self.outcome.waiting[stage.name] = "not selected (--only)"
                continue
            missing = [d for d in stage.deps if d not in done]
            if missing:
                self.outcome.waiting[stage.name] = f"after {', '.join(missing)}"
                if stage.slots == ALL and self._imminent(missing, stages, done):
                    break  # it runs alone once those end: nothing after it may start now
                continue
            if not stage.command and stage.action is None:
                self.outcome.waiting[stage.name] = f"an input not made here: {stage.about}"
                continue
            absent = _absent(stage)
            if absent:
                self.outcome.waiting[stage.name] = absent
                continue
            reason = self._no_time(stage)
            if reason:
                self.outcome.waiting[stage.name] = reason
                continue
            need = self._cores(stage)
            if used + need > self.cores:
                self.outcome.waiting[stage.name] = "waiting for a free core"
                if stage.slots == ALL:
                    break  # nothing starts before it, or it would wait forever
                continue
            if stage.action is not None or self.inline:
                self._run_here(stage)
                return True
            self._spawn(stage)
            used += need
        return False

    def _imminent(self, missing: list[str], stages: Sequence[Stage], done: set[str]) -> bool:
        """Whether every stage in `missing` runs now or can start (its own deps done)."""
        by_name = {s.name: s for s in stages}
        ended = {*self.outcome.failed, *self.outcome.paused}

        def startable(stage: Stage) -> bool:
            made = bool(stage.command) or stage.action is not None
            chosen = self.selected is None or self.selected(stage)
            return (
                made and chosen and stage.name not in ended and all(d in done for d in stage.deps)
            )

        return all(
            name in self.running or (name in by_name and startable(by_name[name]))
            for name in missing
        )

    def _cores(self, stage: Stage) -> int:
        return self.cores if stage.slots == ALL else min(stage.slots, self.cores)

    def _no_time(self, stage: Stage) -> str:
        left = self.minutes_left()
        if left is None:
            return ""
        need = self.min_start if stage.checkpoints else stage.minutes
        if left < need:
            return f"not started: needs {need:.1f} min, {max(left, 0):.1f} left"
        return ""

    def _limit(self, stage: Stage) -> float | None:
        left = self.minutes_left()
        return None if left is None or not stage.checkpoints else max(left - self.margin, 0.05)

    # ------------------------------------------------------------------ running them

    def _open_log(self, stage: Stage, args: list[str]) -> Any:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / stage.log_name).open("a")
        shown = " ".join(["python -m", stage.command[0], *args]) if stage.command else stage.about
        log.write(f"\n=== {_dt.datetime.now().isoformat(timespec='seconds')} {shown}\n")
        log.flush()
        return log

    def _run_here(self, stage: Stage) -> None:
        """An in-process stage: a benchmark function, or (inline) a library command's main."""
        args = stage.args_now(self._limit(stage)) if stage.command else []
        print(f"[{_now()}] run   {stage.name}", flush=True)
        started = time.monotonic()
        log = self._open_log(stage, args)
        out = io.StringIO() if stage.stdout else log
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(log):
                if stage.action is not None:
                    stage.action()
                else:
                    code = _main_of(stage.command[0])(args)
                    if code:
                        raise RuntimeError(f"exit status {code}")
            if stage.stdout:
                write_text_atomic(stage.output, out.getvalue())
        except (Exception, SystemExit) as err:  # one stage's failure must not end the others
            traceback.print_exc(file=log)
            self._failed(stage, f"{type(err).__name__}: {err}")
        finally:
            log.close()
        self._ended(stage, time.monotonic() - started)

    def _spawn(self, stage: Stage) -> None:
        args = stage.args_now(self._limit(stage))
        log = self._open_log(stage, args)
        part = stage.output.with_name(stage.output.name + ".part") if stage.stdout else None
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
        out = part.open("wb") if part is not None else log
        env = {**os.environ, "OMP_NUM_THREADS": str(stage.threads)}
        proc = subprocess.Popen(
            [sys.executable, "-m", stage.command[0], *args],
            stdout=out,
            stderr=log,
            env=env,
            # SIGTERM when the scheduler dies (Linux; no thread may start before the exec)
            preexec_fn=functools.partial(die_with_parent, os.getpid(), poll=False),
        )
        if part is not None:
            out.close()
        self.running[stage.name] = _Running(stage, proc, time.monotonic(), log, part)
        print(f"[{_now()}] start {stage.name} (log: {self.logs / stage.log_name})", flush=True)

    def _wait(self) -> None:
        """Sleep until a process ends; past the deadline, stop everything still running."""
        while not any(r.proc.poll() is not None for r in self.running.values()):
            left = self.minutes_left()
            if left is not None and left <= 0:
                self._stop_all()
                return
            time.sleep(0.5)

    def _reap(self) -> None:
        for name, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            del self.running[name]
            run.log.close()
            if code == 0 and run.stdout_part is not None:
                os.replace(run.stdout_part, run.stage.output)
            elif code != 0:
                self._failed(run.stage, f"exit status {code}")
            self._ended(run.stage, time.monotonic() - run.started)

    def _stop_all(self) -> None:
        """Stop every running process (SIGTERM, then SIGKILL); their checkpoints stay."""
        for run in self.running.values():
            run.proc.terminate()
        for name, run in list(self.running.items()):
            try:
                run.proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
            run.log.close()
            if run.stdout_part is not None:
                run.stdout_part.unlink(missing_ok=True)
            del self.running[name]
            self.times.add(run.stage, time.monotonic() - run.started, False)
            self.outcome.paused.append(name)
            print(f"[{_now()}] stop  {name} at the time limit (resumes next time)", flush=True)

    def _failed(self, stage: Stage, why: str) -> None:
        self.outcome.failed[stage.name] = why
        tail = _tail(self.logs / stage.log_name)
        print(f"[{_now()}] FAIL  {stage.name}: {why}\n{tail}", flush=True)

    def _ended(self, stage: Stage, seconds: float) -> None:
        done = stage.done()
        self.times.add(stage, seconds, done)
        if self.after is not None:
            self.after()
        if stage.name in self.outcome.failed:
            return
        if done:
            self.outcome.done.append(stage.name)
            print(f"[{_now()}] done  {stage.name} ({seconds / 60:.1f} min)", flush=True)
        else:
            self.outcome.paused.append(stage.name)
            print(f"[{_now()}] pause {stage.name} ({seconds / 60:.1f} min; resumes next time)")


def _absent(stage: Stage) -> str:
    """Why a stage whose dependencies are done still cannot run ("" if it can): a named
    input that none of them made."""
    missing = [str(p) for p in stage.inputs if not p.exists()]
    return f"needs {', '.join(missing)}, which its dependencies did not make" if missing else ""


def _main_of(module: str) -> Callable[[list[str]], int]:
    """A library command's `main(argv)`, from the module or its `__main__`."""
    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):
        mod = importlib.import_module(f"{module}.__main__")
    return mod.main


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in text)
