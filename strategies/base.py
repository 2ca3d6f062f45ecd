"""`Strategy`: the ask/tell protocol every search strategy follows, and the bookkeeping they share.

A strategy proposes architectures (`ask`), is told how they scored (`tell`) and saves its whole
state as plain JSON (`state_dict`), so a search resumes exactly where it stopped. It knows the
search space and nothing else: scoring, cost predictors and data live with the caller, who may
pass a cheap `is_feasible` predicate (e.g. latency from a cost predictor under a budget) that
every proposal must pass before it is returned.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies.pareto import pareto_front
from automoe.strategies.results import (
    Result,
    parse_values,
    parse_violations,
    rng_from_json,
    rng_to_json,
)

H = TypeVar("H")
Feasibility = Callable[[ArchConfig], bool]

STATE_VERSION = 1


def _keep(arch: ArchConfig, handle: Any, duplicate: bool) -> None:
    """Default for `_draw`: a discarded candidate needs no follow-up."""


class Strategy(ABC):
    """Proposes architectures of a `SearchSpace` and learns from their scores.

    `objectives` names what the caller measures, e.g. `("loss",)` or `("loss", "latency_ms")`;
    every objective is minimised (negate one to maximise it). The constructor only stores its
    arguments (scikit-learn's rule): options are checked and the strategy is built on first use,
    so constructing one is free and cannot fail half-way.

    Options every strategy takes: `max_tries` (default 1000), how many candidates one proposal
    may draw before the strategy concludes the space is exhausted (it then returns fewer) or,
    when `is_feasible` rejected every one of them, that the constraint looks impossible (it
    raises AutomoeError).
    """

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {"max_tries": 1000}
    uses_feedback: ClassVar[bool] = True
    """Whether told results change what is proposed. A strategy that ignores them by design
    (random search) sets False, and the conformance checks then hold it to that."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[str] = ("loss",),
        *,
        seed: int = 0,
        is_feasible: Feasibility | None = None,
        **options: Any,
    ) -> None:
        self.space = space
        self.objectives = objectives
        self.seed = seed
        self.is_feasible = is_feasible
        self.options = options
        self._ready = False

    # ----------------------------------------------------------------- public protocol

    def ask(self, n: int = 1) -> list[ArchConfig]:
        """Up to `n` new architectures: never one already told or still pending.

        Fewer (even none) come back when the strategy needs results for its pending ones first
        (e.g. evolution between generations) or the space is exhausted; `done` tells the two
        apart. Proposals do not depend on how asks are chunked: `ask(4)` gives what `ask(2)`
        twice would.
        """
        self._ensure()
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise AutomoeError(f"ask(n) needs a non-negative integer n, got {n!r}")
        if n == 0 or self.done:
            return []
        proposals = self._propose(n)
        for arch in proposals:
            self.space.validate(arch)
            if not self._is_new(arch):
                raise AutomoeError(
                    f"strategy {self.name!r} proposed architecture {arch.key()} twice"
                )
            self._pending[arch.key()] = arch
        return proposals

    def tell(
        self,
        archs: Sequence[ArchConfig],
        values: Sequence[Any],
        violations: Sequence[Any] | None = None,
    ) -> None:
        """Report scores of pending architectures, in any order and chunking.

        `values[i]` holds one float per objective, or None/NaN when the evaluation failed.
        `violations[i]` holds constraint violations, feasible when every one is <= 0 (Optuna's
        convention), or None when no constraint applies.
        """
        self._ensure()
        archs = list(archs)
        values = list(values)
        rows = [None] * len(archs) if violations is None else list(violations)
        if not len(archs) == len(values) == len(rows):
            raise AutomoeError(
                f"tell got {len(archs)} architectures, {len(values)} values and "
                f"{len(rows)} violations; give one of each per architecture"
            )
        results = []
        seen = set()
        for arch, entry, row in zip(archs, values, rows, strict=True):
            key = arch.key() if isinstance(arch, ArchConfig) else None
            if key not in self._pending or key in seen:
                raise AutomoeError(
                    f"cannot tell architecture {key or repr(arch)}: strategy {self.name!r} did "
                    "not propose it, or it was already told"
                )
            seen.add(key)
            results.append(
                Result(arch, parse_values(entry, len(self._objectives)), parse_violations(row))
            )
        for result in results:
            key = result.arch.key()
            del self._pending[key]
            self._told[key] = result
            self._history.append(result)
        self._observe(results)

    @property
    def history(self) -> list[Result]:
        """Every told result, in the order told."""
        self._ensure()
        return list(self._history)

    @property
    def pending(self) -> list[ArchConfig]:
        """Proposed architectures not told yet, in the order proposed."""
        self._ensure()
        return list(self._pending.values())

    @property
    def done(self) -> bool:
        """True once the strategy will propose nothing more (e.g. its iterations are used up)."""
        return False

    def front(self) -> list[Result]:
        """Feasible told results that no other feasible one dominates (Pareto front)."""
        return pareto_front(self.history)

    def best(self) -> Result | None:
        """The best feasible result told so far: the lowest value for one objective, the
        lexicographically smallest member of the front for several; None if none is feasible."""
        return min(self.front(), key=lambda r: r.values, default=None)  # type: ignore[arg-type, return-value]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-serialisable lists, dicts, strings and numbers."""
        self._ensure()
        return {
            "strategy": self.name,
            "version": STATE_VERSION,
            "space": self.space.to_dict(),
            "objectives": list(self._objectives),
            "seed": self.seed,
            "options": dict(self._options),
            "rng": rng_to_json(self._rng),
            "history": [result.to_json() for result in self._history],
            "pending": [arch.to_dict() for arch in self._pending.values()],
            "extra": self._state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict()` output; the strategy then continues exactly as the saved
        one would have. Call it on a fresh strategy built with the same space, objectives, seed
        and options (`is_feasible` is code, so pass it again)."""
        if self._ready:
            raise AutomoeError("load_state_dict needs a fresh strategy that has not been used")
        self._configure()
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise AutomoeError(
                f"not a saved strategy state of version {STATE_VERSION}: expected the mapping "
                "state_dict() returns"
            )
        mine = {
            "strategy": self.name,
            "space": self.space.to_dict(),
            "objectives": list(self._objectives),
            "seed": self.seed,
            "options": dict(self._options),
        }
        for field, value in mine.items():
            if state.get(field) != value:
                shown = (  # whole spaces are too long to print
                    f"another search space (this strategy searches {self.space.name!r})"
                    if field == "space"
                    else f"{field} = {state.get(field)!r}, not {value!r}"
                )
                raise AutomoeError(
                    f"saved state has {shown}; build the strategy as it was when saved"
                )
        self._rng = rng_from_json(state["rng"])
        self._history = [Result.from_json(item) for item in state["history"]]
        self._told = {result.arch.key(): result for result in self._history}
        pending = [ArchConfig.from_dict(item) for item in state["pending"]]
        self._pending = {arch.key(): arch for arch in pending}
        self._setup(state["extra"])
        self._ready = True

    # ----------------------------------------------------------------- hooks for subclasses

    def _setup(self, state: Mapping[str, Any] | None) -> None:  # noqa: B027 - optional hook
        """Build the strategy's own machinery, fresh (`state` None) or from `_state()` output."""

    @abstractmethod
    def _propose(self, n: int) -> list[ArchConfig]:
        """Up to `n` new, feasible architectures (use `_draw`)."""

    def _observe(self, results: list[Result]) -> None:  # noqa: B027 - optional hook
        """Learn from results just told (already in `_history`)."""

    def _state(self) -> dict[str, Any]:
        """The strategy's own resumable state, JSON only."""
        return {}

    # ----------------------------------------------------------------- shared helpers

    def _ensure(self) -> None:
        if not self._ready:
            self._configure()
            self._history: list[Result] = []
            self._told: dict[str, Result] = {}
            self._pending: dict[str, ArchConfig] = {}
            self._rng = random.Random(self.seed)
            self._setup(None)
            self._ready = True

    def _configure(self) -> None:
        """Check the constructor's arguments and resolve options against `defaults`."""
        if not isinstance(self.space, SearchSpace):
            raise AutomoeError(f"a strategy needs a SearchSpace, got {type(self.space).__name__}")
        objectives = (self.objectives,) if isinstance(self.objectives, str) else self.objectives
        if (
            not isinstance(objectives, Iterable)
            or not objectives
            or not all(isinstance(o, str) and o for o in objectives)
            or len(set(objectives)) != len(objectives)
        ):
            raise AutomoeError(
                f"objectives must be distinct non-empty names, e.g. ('loss',) or "
                f"('loss', 'latency_ms'); got {self.objectives!r}"
            )
        self._objectives = tuple(objectives)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise AutomoeError(f"seed must be an integer, got {self.seed!r}")
        if self.is_feasible is not None and not callable(self.is_feasible):
            raise AutomoeError(
                f"is_feasible must be callable(arch) -> bool, got {self.is_feasible!r}"
            )
        allowed: dict[str, Any] = {}
        for klass in reversed(type(self).__mro__):
            allowed.update(vars(klass).get("defaults", {}))
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise AutomoeError(
                f"strategy {self.name!r} has no option(s) {unknown}; its options are "
                f"{sorted(allowed)}"
            )
        self._options = {**allowed, **self.options}
        self._int_option("max_tries", 1)

    def _int_option(self, name: str, minimum: int, *, optional: bool = False) -> Any:
        """The option's value, checked to be an integer >= `minimum` (or None if `optional`)."""
        value = self._options[name]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            none = " or None" if optional else ""
            raise AutomoeError(
                f"option {name} of strategy {self.name!r} must be an integer >= {minimum}"
                f"{none}, got {value!r}"
            )
        return value

    def _is_new(self, arch: ArchConfig, taken: Iterable[str] = ()) -> bool:
        key = arch.key()
        return key not in self._told and key not in self._pending and key not in taken

    def _draw(
        self,
        make: Callable[[], tuple[ArchConfig, H]],
        discard: Callable[[ArchConfig, H, bool], None] = _keep,
        taken: Iterable[str] = (),
    ) -> tuple[ArchConfig, H] | None:
        """The first candidate from `make` that is new and passes `is_feasible`, within
        `max_tries` draws; `discard(arch, handle, duplicate)` hears about each one refused.

        None when every draw was a duplicate (the space looks exhausted); AutomoeError when
        `is_feasible` refused every draw.
        """
        taken = set(taken)
        tries = self._options["max_tries"]
        duplicates = 0
        for _ in range(tries):
            arch, handle = make()
            if not self._is_new(arch, taken):
                duplicates += 1
                discard(arch, handle, True)
            elif self.is_feasible is not None and not self.is_feasible(arch):
                discard(arch, handle, False)
            else:
                return arch, handle
        if duplicates:
            return None
        raise AutomoeError(
            f"the constraint looks impossible: is_feasible rejected all {tries} architectures "
            f"strategy {self.name!r} drew in a row (loosen the constraint or raise max_tries)"
        )
