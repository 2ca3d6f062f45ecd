"""`optuna-tpe` and `optuna-nsga2`: Optuna samplers driven through `study.ask()`/`study.tell()`.

The space is defined by run (see `genome`): a layer's genes are suggested only below the chosen
depth, an expert's width only below the layer's expert count. Every gene is
`suggest_int(name, 0, n - 1)` over the index of the sorted choice list rather than a
categorical: widths, depths, heads and expert counts are ordered, and an integer lets TPE's
kernels (and NSGA-II's mutation) use that order, where a categorical treats 512, 768 and 1024
as unrelated labels. Each gene name keeps one range for the whole study, which Optuna requires.

Constraints use Optuna 5's own support, `Trial.set_constraint` (the samplers'
`constraints_func` is deprecated in 5.0.0): the told violations are set unchanged, since both
sides call a trial feasible when every value is <= 0. An architecture `is_feasible` refuses is
told PRUNED with constraint `is_feasible` = 1, so TPE counts it among the bad examples.
Failed evaluations are told FAIL.

Options: `storage_url` (SQLAlchemy URL), `journal_path` (journal file for several worker
processes) or neither (in memory, saved inside `state_dict`); `study_name`; `worker_index`
(each worker's sampler seeds differ); `heartbeat_interval`, `grace_period` and `max_retry`
(RDB storage only: a worker's trials whose heartbeat goes stale are failed and retried by the
next worker to ask). TPE takes `n_startup_trials`, NSGA-II `population_size` or `budget`
(see `OptunaNSGA2`).

A sampler that has converged keeps proposing architectures already scored (or refused), and
every refused draw is one more trial to model, so its asks slow down as they repeat. After
`random_after` (default 10) refused draws in a row, the next asks come from Optuna's
`RandomSampler` until one is accepted (0 turns this off).

Resume is exact: the sampler is re-seeded before every ask from (seed, worker_index, number of
asks), so it carries no hidden random state; the study itself reloads from its storage (or,
in memory, from the journal saved in the state).
"""

from __future__ import annotations

import json
import random
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.study import StudyDirection
from optuna.trial import TrialState

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.strategies import genome
from automoe.strategies.external import ExternalStrategy
from automoe.strategies.optuna_storage import Heartbeat, MemoryJournal, open_storage, quiet
from automoe.strategies.results import Result


class OptunaStrategy(ExternalStrategy):
    """Shared adapter; subclasses choose the sampler."""

    defaults: ClassVar[Mapping[str, Any]] = {
        "storage_url": None,
        "journal_path": None,
        "study_name": None,
        "worker_index": 0,
        "heartbeat_interval": None,
        "grace_period": None,
        "max_retry": 3,
        "random_after": 10,
    }

    @abstractmethod
    def _sampler(self, seed: int) -> BaseSampler:
        """A fresh sampler seeded with `seed`."""

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (e.g. for its dashboard or plots)."""
        self._ensure()
        return self._study

    def _setup(self, state: Mapping[str, Any] | None) -> None:
        super()._setup(state)
        options = self._options
        for name in ("storage_url", "journal_path", "study_name"):
            if options[name] is not None and not isinstance(options[name], str):
                raise AutomoeError(f"option {name} must be a string, got {options[name]!r}")
        if options["storage_url"] is not None and options["journal_path"] is not None:
            raise AutomoeError("give either storage_url or journal_path, not both")
        self._int_option("worker_index", 0)
        interval = self._int_option("heartbeat_interval", 1, optional=True)
        if interval is not None and options["storage_url"] is None:
            raise AutomoeError(
                "heartbeat_interval needs an RDB storage (storage_url): Optuna's "
                "JournalStorage has no heartbeats"
            )
        state = state or {}
        self._asks: int = state.get("asks", 0)
        self._refused: int = state.get("refused", 0)  # refused draws in a row
        self._int_option("random_after", 0)
        self._memory = MemoryJournal(state.get("journal") or ())
        self._storage = open_storage(
            storage_url=options["storage_url"],
            journal_path=options["journal_path"],
            memory=self._memory,
            heartbeat_interval=interval,
            grace_period=self._int_option("grace_period", 1, optional=True),
            max_retry=self._int_option("max_retry", 0, optional=True),
        )
        self._heartbeat = (
            Heartbeat(self._storage, interval)
            if interval is not None and isinstance(self._storage, RDBStorage)
            else None
        )
        name = options["study_name"] or f"automoe-{self.name}"
        self._study = optuna.create_study(
            storage=self._storage,
            study_name=name,
            directions=["minimize"] * len(self._objectives),
            sampler=self._sampler(self._trial_seed()),
            load_if_exists=True,
        )
        if self._study.directions != [StudyDirection.MINIMIZE] * len(self._objectives):
            raise AutomoeError(
                f"study {name!r} in the storage optimises {len(self._study.directions)} "
                f"objective(s) with directions {[d.name for d in self._study.directions]}; "
                f"this strategy minimises {list(self._objectives)}: use another study_name"
            )
        self._trials: dict[int, optuna.Trial] = {}  # live trials by handle (trial id)
        for handles in self._handles.values():
            for handle in handles:
                self._watch(handle)

    def _state(self) -> dict[str, Any]:
        persistent = self._options["storage_url"] or self._options["journal_path"]
        return {
            **super()._state(),
            "asks": self._asks,
            "refused": self._refused,
            "journal": None if persistent else json.loads(json.dumps(self._memory.logs)),
        }

    def _trial_seed(self) -> int:
        """The seed of the next ask's sampler: fixed by seed, worker and ask count."""
        material = f"{self.seed}:{self._options['worker_index']}:{self._asks}"
        return random.Random(material).getrandbits(32)

    def _watch(self, handle: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.add(handle)

    def _trial(self, handle: int) -> optuna.Trial:
        """The live trial of a handle (a trial id), rebuilt after a resume."""
        if handle not in self._trials:
            self._trials[handle] = optuna.Trial(self._study, handle)
        return self._trials[handle]

    def _propose(self, n: int) -> list[ArchConfig]:
        out = super()._propose(n)
        if out:
            self._refused = 0
        return out

    def _discard(self, arch: ArchConfig, handle: int, duplicate: bool) -> None:
        self._refused += 1
        super()._discard(arch, handle, duplicate)

    def _external_ask(self) -> tuple[ArchConfig, int]:
        limit = self._options["random_after"]
        stuck = limit > 0 and self._refused >= limit
        seed = self._trial_seed()
        self._study.sampler = RandomSampler(seed=seed) if stuck else self._sampler(seed)
        self._asks += 1
        with quiet():
            if self._heartbeat is not None:
                fail_stale_trials(self._study)
            trial = self._study.ask()
        arch = genome.decode(self.space, lambda name, n: trial.suggest_int(name, 0, n - 1))
        handle = trial._trial_id  # storage id: what `optuna.Trial` needs to rebuild it
        self._trials[handle] = trial
        self._watch(handle)
        return arch, handle

    def _finish(
        self,
        handle: int,
        values: list[float] | None,
        state: TrialState,
        constraints: Mapping[str, float],
    ) -> None:
        """Tell Optuna, unless another worker already failed the trial as stale (its retry is
        then queued in the study), and stop beating it."""
        if self._heartbeat is None or self._storage.get_trial(handle).state == TrialState.RUNNING:
            trial = self._trial(handle)
            for key, value in constraints.items():
                trial.set_constraint(key, value)
            self._study.tell(trial, values, state=state)
        self._trials.pop(handle, None)
        if self._heartbeat is not None:
            self._heartbeat.remove(handle)

    def _external_tell(self, handle: int, result: Result) -> None:
        if result.values is None:
            self._finish(handle, None, TrialState.FAIL, {})
        else:
            constraints = {str(i): v for i, v in enumerate(result.violations or ())}
            self._finish(handle, list(result.values), TrialState.COMPLETE, constraints)

    def _external_reject(self, handle: int) -> None:
        self._finish(handle, None, TrialState.PRUNED, {"is_feasible": 1.0})


class OptunaTPE(OptunaStrategy):
    """Tree-structured Parzen estimator (multivariate for one objective, constant liar on)."""

    name = "optuna-tpe"
    defaults: ClassVar[Mapping[str, Any]] = {"n_startup_trials": 10}

    def _sampler(self, seed: int) -> BaseSampler:
        startup = self._int_option("n_startup_trials", 0)
        return TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


class OptunaNSGA2(OptunaStrategy):
    """NSGA-II: a genetic algorithm with non-dominated sorting, made for several objectives.

    Given `budget` (the evaluations the search may score) and no `population_size`, the
    population is sized so that the budget holds GENERATIONS generations, the paper's
    iteration count that evolution keeps too; Optuna's default of 50 would leave 6 generations
    of a 300-evaluation search.
    """

    name = "optuna-nsga2"
    defaults: ClassVar[Mapping[str, Any]] = {"population_size": None, "budget": None}
    GENERATIONS = 15
    MIN_POPULATION = 4  # NSGA-II needs two parents and some choice between them
    DEFAULT_POPULATION = 50  # Optuna's own default, used without a budget

    def population(self) -> int:
        """The population size these options give."""
        size = self._int_option("population_size", 2, optional=True)
        if size is not None:
            return size
        budget = self._int_option("budget", 1, optional=True)
        if budget is None:
            return self.DEFAULT_POPULATION
        return max(self.MIN_POPULATION, budget // self.GENERATIONS)

    def _sampler(self, seed: int) -> BaseSampler:
        return NSGAIISampler(seed=seed, population_size=self.population())
