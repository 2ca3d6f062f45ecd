"""One search run: ask a strategy, score each new architecture once, tell, record, resume.

The run folder holds everything as it happens: `evaluations.jsonl`/`.csv` (one row per scored
architecture, appended and flushed at once), `strategy_state.json` (the strategy's own state
after every tell), and at the end (`automoe.search.results`) `pareto.json`, `best.yaml`,
`front/` and `summary.json`.
A killed run resumes from these files: scored architectures are never scored again, and
architectures the strategy was waiting on are told from the record when it has them.

A search stops when its budget (evaluations or time) runs out or the strategy proposes
nothing more; `ending` says which, and whether a strategy with a fixed schedule had finished
it: such a strategy exposes `generations` = (generations fully scored, planned), as
evolution does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from automoe.constraints import Constraint
from automoe.errors import AutomoeError
from automoe.files import write_text_atomic
from automoe.pareto import pareto_front
from automoe.records import RecordLog
from automoe.search.costs import CostModel
from automoe.space import ArchConfig
from automoe.strategies import Strategy

Scorer = Callable[[Sequence[ArchConfig]], list[dict[str, float]]]
EVALUATION_COLUMNS = [
    "index",
    "arch_key",
    "objective",
    "loss",
    "bleu",
    "latency_ms",
    "flops",
    "params",
    "feasible",
    "violation",
    "eval_s",
    "ask_s",
    "elapsed_s",
    "arch",
]


@dataclass
class Budget:
    """Stop after `evaluations` scored architectures or `seconds` of scoring, whichever first."""

    evaluations: int = 300
    seconds: float | None = None

    def left(self, done: int, elapsed: float) -> int:
        if self.out_of_time(elapsed):
            return 0
        return max(self.evaluations - done, 0)

    def out_of_time(self, elapsed: float) -> bool:
        return self.seconds is not None and elapsed >= self.seconds


def evaluation_log(folder: Path, extra: Sequence[str] = ()) -> RecordLog:
    """Every evaluation of a run, the architecture as one JSON cell in the CSV; `extra` columns
    follow (a shared search's `worker`)."""
    return RecordLog(
        folder,
        "evaluations",
        [*EVALUATION_COLUMNS, *extra],
        lambda row: {**row, "arch": json.dumps(row["arch"], separators=(",", ":"))},
    )


class SearchLoop:
    """Drives one strategy to its budget; the caller supplies scoring and costs."""

    def __init__(
        self,
        strategy: Strategy,
        scorer: Scorer,
        costs: CostModel,
        constraints: Sequence[Constraint],
        objectives: Sequence[str],
        folder: Path,
        budget: Budget,
        batch_size: int = 25,
    ) -> None:
        self.strategy = strategy
        self.scorer = scorer
        self.costs = costs
        self.constraints = list(constraints)
        self.objectives = list(objectives)
        self.folder = folder
        self.budget = budget
        self.batch_size = batch_size
        self.log = evaluation_log(folder)
        self.rows: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.ask_s = 0.0
        self.stopped: str | None = None  # "time limit", "evaluations" or "strategy"

    @property
    def state_path(self) -> Path:
        return self.folder / "strategy_state.json"

    def violations(self, arch: ArchConfig) -> list[float]:
        return [c.violation(self.costs.cost(arch, c.metric)) for c in self.constraints]

    def is_feasible(self, arch: ArchConfig) -> bool:
        return all(v <= 0 for v in self.violations(arch))

    def resume(self) -> None:
        """Reload the record and the strategy (a new one checks its options); tell it what it
        was waiting on, if recorded. Writes nothing but the repair of a torn last record."""
        self.rows = self.log.read()
        if self.rows:
            self.elapsed = float(self.rows[-1]["elapsed_s"])
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text())
            except json.JSONDecodeError as err:
                raise AutomoeError(
                    f"{self.state_path} is corrupt ({err}); start a new run"
                ) from None
            self.strategy.load_state_dict(state)
        else:
            self.strategy.ask(0)
        known = {row["arch_key"]: row for row in self.rows}
        waiting = [a for a in self.strategy.pending if a.key() in known]
        if waiting:
            self._tell(waiting, [known[a.key()] for a in waiting])

    def _tell(self, archs: list[ArchConfig], rows: list[dict[str, Any]]) -> None:
        values = [
            None if row["objective"] is None else tuple(row[o] for o in self._value_keys())
            for row in rows
        ]
        violations = [self.violations(a) if self.constraints else None for a in archs]
        self.strategy.tell(archs, values, violations)
        self._save_state()

    def _save_state(self) -> None:
        write_text_atomic(self.state_path, json.dumps(self.strategy.state_dict()))

    def _value_keys(self) -> list[str]:
        return ["objective" if o in ("loss", "bleu") else o for o in self.objectives]

    def _row(self, arch: ArchConfig, score: dict[str, float], seconds: float) -> dict[str, Any]:
        violations = self.violations(arch)
        costs = self.costs.costs(arch)
        return {
            "index": len(self.rows),
            "arch_key": arch.key(),
            "objective": score.get("objective"),
            "loss": score.get("loss"),
            "bleu": score.get("bleu"),
            **{k: costs.get(k) for k in ("latency_ms", "flops", "params")},
            "feasible": all(v <= 0 for v in violations) and score.get("objective") is not None,
            "violation": max(violations, default=0.0),
            "eval_s": seconds,
            "ask_s": self.ask_s,
            "elapsed_s": self.elapsed,
            "arch": arch.to_dict(),
        }

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        """Ask a round, settle it (score what is new), tell; until the budget, the time limit
        or the strategy is spent."""
        bar = self._progress_bar(progress)
        try:
            while True:
                left = self.budget.left(len(self.rows), self._clock())
                if left <= 0:
                    timed_out = self.budget.out_of_time(self._clock())
                    self.stopped = "time limit" if timed_out else "evaluations"
                    break
                asked = time.perf_counter()
                archs = self.strategy.ask(min(self.batch_size, left))
                if not archs:
                    self.stopped = "strategy"
                    break
                self.ask_s = (time.perf_counter() - asked) / len(archs)
                rows = self._settle(archs, bar)
                if rows is None:
                    self.stopped = "time limit"
                    break
                self._tell(archs, rows)
                best = self.best()
                if best is not None:
                    bar.set_postfix(best=f"{best['objective']:.4f}", refresh=False)
        finally:
            bar.close()
            self._ended()
        return self.rows

    def _progress_bar(self, progress: bool) -> tqdm:
        return tqdm(
            total=self.budget.evaluations,
            initial=len(self.rows),
            disable=not progress,
            unit="arch",
            desc=f"search ({self.strategy.name})",
        )

    def _clock(self) -> float:
        """Seconds counted against the time limit: scoring time, summed over resumes."""
        return self.elapsed

    def _settle(self, archs: list[ArchConfig], bar: tqdm) -> list[dict[str, Any]] | None:
        """The round's rows, in the order asked: architectures of the record are not scored
        again, new ones are scored, recorded and logged at once."""
        known = {row["arch_key"]: row for row in self.rows}
        new = [a for a in archs if a.key() not in known]
        started = time.perf_counter()
        scores = self.scorer(new) if new else []
        seconds = (time.perf_counter() - started) / max(len(new), 1)
        self.elapsed += time.perf_counter() - started
        for arch, score in zip(new, scores, strict=True):
            row = self._row(arch, score, seconds)
            self.rows.append(row)
            self.log.append(row)
            known[arch.key()] = row
        bar.update(len(new))
        return [known[a.key()] for a in archs]

    def _ended(self) -> None:
        """Called once `run` ends, however it ends."""

    def best(self) -> dict[str, Any] | None:
        feasible = [r for r in self.rows if r["feasible"]]
        return min(feasible, key=lambda r: r["objective"], default=None)

    def front(self, *costs: str) -> list[dict[str, Any]]:
        """Feasible rows not dominated in (objective, *costs), in the order scored."""
        rows = [r for r in self.rows if r["feasible"] and all(r.get(c) is not None for c in costs)]
        points = [(r["objective"], *(r[c] for c in costs)) for r in rows]
        return [rows[i] for i in pareto_front(points)]

    def ending(self) -> dict[str, Any]:
        """Why the search stopped, and whether the strategy had finished its schedule (None
        for a strategy without one), with one sentence saying so."""
        generations = getattr(self.strategy, "generations", None)
        finished: bool | None = None
        if generations is not None:
            done, planned = generations
            finished = done >= planned
        elif self.strategy.done:
            finished = True
        n = len(self.rows)
        limit = (
            "the time limit ran out"
            if self.stopped == "time limit"
            else f"the budget of {self.budget.evaluations} evaluations was used up"
        )
        if finished:
            schedule = f" ({planned} of {planned} generations)" if generations else ""
            text = f"the strategy finished its schedule{schedule} after {n} evaluations"
        elif self.stopped == "strategy":
            text = f"the strategy proposed nothing new after {n} evaluations (space exhausted)"
        elif finished is False:
            text = (
                f"ended before the strategy was done: generation {done + 1} of {planned} ({limit})"
            )
        else:
            text = f"stopped after {n} evaluations: {limit}"
        return {"stopped_by": self.stopped, "strategy_finished": finished, "text": text}
