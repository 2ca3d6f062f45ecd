"""One worker of a search shared through a storage (`--storage URL --study NAME`).

The strategy's state is a function of the shared record. Every worker builds the same strategy
(the study's settings, its seed) and drives it through the rounds one process would: ask
`batch` architectures, have every one scored, tell them in the order proposed, ask again. What
a strategy proposes depends only on what it was told before, so every worker computes the same
round, whatever the strategy (evolution's generations, Nevergrad's or Optuna's samplers alike);
the record says which members are scored, being scored (claimed) or free. A worker claims free
members (`--jobs` at a time), scores them and records each result at once; when none is free it
waits for the others' results, failing stale claims meanwhile, and tells the round once every
member has a result. A worker that joins late, or is restarted, replays the recorded rounds the
same way without scoring anything. N workers thus leave the record one process would have
written with the same seed and batch: the same architectures at the same `index`.

When two workers ask at once they compute the same round and try its free members in orders of
their own (a hash of worker name and architecture), so they seldom want the same one; when they
do, the claim rule of `automoe.search.storage` lets exactly one of them score it.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from automoe.errors import AutomoeError
from automoe.search.loop import SearchLoop, evaluation_log
from automoe.search.storage import RELEASED, SCORES, Entry, SharedStudy
from automoe.space import ArchConfig

COSTS = ("latency_ms", "flops", "params")


class SharedLoop(SearchLoop):
    """`SearchLoop` whose record is a `SharedStudy`; `claims` architectures are scored at once
    (the scorer's jobs), and a waiting worker looks at the record about every `poll_s` seconds."""

    def __init__(
        self, *args: Any, study: SharedStudy, claims: int = 1, poll_s: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        self.claims = claims
        self.poll_s = poll_s
        self.log = evaluation_log(self.folder, extra=("worker",))
        self.scored = 0  # architectures this worker scored
        self._claimed: list[int] = []  # trial ids of its claims not recorded yet
        self._started = time.perf_counter()

    def resume(self) -> None:
        """Check the strategy's options; the record itself is replayed by `run`."""
        self.strategy.ask(0)

    def _save_state(self) -> None:
        """Nothing to save: the state is rebuilt from the record."""

    def _clock(self) -> float:
        return time.perf_counter() - self._started

    def record(self) -> list[dict[str, Any]]:
        """Every result in the study now, in the order of the search's proposals."""
        return self.study.rows()

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        """Work on the shared search until its budget or strategy is spent (or this worker's
        time limit); claims left unscored by an error or an interrupt are released."""
        self._started = time.perf_counter()
        return super().run(progress)

    def _progress_bar(self, progress: bool) -> tqdm:
        return tqdm(
            total=self.budget.evaluations,
            disable=not progress,
            unit="arch",
            desc=f"search ({self.strategy.name}, {self.study.worker})",
        )

    def _ended(self) -> None:
        self.study.release(self._claimed, RELEASED)

    def _settle(self, archs: list[ArchConfig], bar: tqdm) -> list[dict[str, Any]] | None:
        """The round's rows once every member has a result, scoring free members meanwhile;
        None when this worker's time runs out first."""
        first = len(self.rows)
        index = {arch.key(): first + i for i, arch in enumerate(archs)}
        while True:
            entries = self.study.entries()
            self._check(entries, archs, first)
            told = {e.key: e for e in entries if e.told and e.key in index}
            bar.n = sum(e.told for e in entries)
            bar.refresh()
            if len(told) == len(archs):
                rows = [told[arch.key()].row() for arch in archs]
                self.rows += rows
                return rows
            if self.budget.out_of_time(self._clock()):
                return None
            live = {e.key for e in entries if e.live}
            free = [a for a in archs if a.key() not in told and a.key() not in live]
            if free:
                self._score(sorted(free, key=self._order)[: self.claims], index)
            else:
                self.study.expire_stale()
                time.sleep(random.uniform(0.5, 1.5) * self.poll_s)

    def _order(self, arch: ArchConfig) -> str:
        """This worker's own order of a round's members (others try them in other orders)."""
        return hashlib.sha1(f"{self.study.worker}:{arch.key()}".encode()).hexdigest()

    def _check(self, entries: Sequence[Entry], archs: list[ArchConfig], first: int) -> None:
        """Refuse a record whose trials in this round name other architectures than this
        worker's strategy proposes: its workers run different software or settings."""
        for entry in entries:
            position = (entry.index if entry.index is not None else -1) - first
            if 0 <= position < len(archs) and entry.key != archs[position].key():
                raise AutomoeError(
                    f"study {self.study.name!r} records architecture {entry.key} as evaluation "
                    f"{entry.index}, where this worker's {self.strategy.name} proposes "
                    f"{archs[position].key()}: its workers disagree; run every worker with the "
                    "same versions of automoe, Optuna and Nevergrad"
                )

    def _score(self, archs: list[ArchConfig], index: dict[str, int]) -> None:
        """Claim `archs`, score those whose claims stand, and record each result."""
        claimed = []
        for arch in archs:
            costs = self.costs.costs(arch)
            violations = self.violations(arch)
            attrs = {
                "index": index[arch.key()],
                **{k: costs.get(k) for k in COSTS},
                "feasible": all(v <= 0 for v in violations),
                "violation": max(violations, default=0.0),
                "ask_s": self.ask_s,
                "elapsed_s": self._clock(),
            }
            named = {str(c): v for c, v in zip(self.constraints, violations, strict=True)}
            trial = self.study.claim(arch, attrs, named)
            if trial is not None:
                claimed.append((arch, trial))
                self._claimed.append(trial)
        if not claimed:
            return
        started = time.perf_counter()
        scores = self.scorer([arch for arch, _ in claimed])
        seconds = (time.perf_counter() - started) / len(claimed)
        for (arch, trial), score in zip(claimed, scores, strict=True):
            row = self._row(arch, score, seconds)
            values = self._values(row)
            result = {k: row[k] for k in SCORES if row[k] is not None}
            result["eval_s"] = seconds
            if values is None:
                result["feasible"] = False
            if self.study.finish(trial, result, values):
                self.scored += 1
            self._claimed.remove(trial)

    def _values(self, row: dict[str, Any]) -> list[float] | None:
        """The trial's values: the metric as it reads (loss, or BLEU), then the cost
        objectives; None when scoring failed."""
        metric, *costs = self.objectives
        values = [row[metric], *(row[c] for c in costs)]
        if row["objective"] is None or not all(math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]
