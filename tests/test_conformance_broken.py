"""Strategies broken in one way each, built on the real ones: the conformance checks must reject
every one, and the check meant for it must name the problem. A strategy that hangs fails on
time instead of stalling the suite."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.strategies import EvolutionarySearch, RandomSearch, Strategy, conformance
from automoe.strategies.conformance import (
    check_bad_tells,
    check_chunking,
    check_constraint_respected,
    check_constructor_stores_only,
    check_exhaustion,
    check_failed_evaluations,
    check_feedback,
    check_impossible_constraint,
    check_keeps_proposing,
    check_multi_objective,
    check_resume,
    check_seeds,
    check_strategy,
    check_valid_new_proposals,
)
from automoe.strategies.results import Result, parse_values

# Generation 0 of 8, then 3 parents and 6 children a generation, 4 generations: 26 proposals.
SMALL = {"population": 8, "parents": 3, "mutations": 3, "crossovers": 3, "iterations": 4}


class EagerEvolution(EvolutionarySearch):
    """Builds itself in the constructor, so bad options fail there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ensure()


class OverAsking(RandomSearch):
    """Proposes one more than asked."""

    def _propose(self, n: int) -> list[ArchConfig]:
        return super()._propose(n + 1)


class SeedIgnoring(RandomSearch):
    """Always starts from seed 0."""

    def _setup(self, state: Any) -> None:
        if state is None:
            self._rng = random.Random(0)


class Unseeded(RandomSearch):
    """Starts from a random state."""

    def _setup(self, state: Any) -> None:
        if state is None:
            self._rng = random.Random()


class GenerationForgetting(EvolutionarySearch):
    """Its saved state drops `generation` and `parents`: after a resume it runs an extra
    generation (32 proposals instead of 26)."""

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        del state["generation"], state["parents"]
        return state

    def _setup(self, state: Any) -> None:
        super()._setup(None if state is None else {"generation": 0, "parents": [], **state})


class RandomStateForgetting(EvolutionarySearch):
    """Restarts its random numbers from the seed on resume."""

    def _setup(self, state: Any) -> None:
        super()._setup(state)
        if state is not None:
            self._rng = random.Random(self.seed)


class ChunkSensitive(RandomSearch):
    """Spends one random number per ask, so ask(6) differs from ask(2), ask(1), ask(3)."""

    def _propose(self, n: int) -> list[ArchConfig]:
        self._rng.random()
        return super()._propose(n)


class Doctored(EvolutionarySearch):
    """Evolution that selects parents from results changed by `_doctor`."""

    def _doctor(self, result: Result) -> Result:
        return result

    def _advance(self) -> None:
        told = self._told
        self._told = {key: self._doctor(result) for key, result in told.items()}
        try:
            super()._advance()
        finally:
            self._told = told


class LossBlind(Doctored):
    """Selects parents as if every loss were equal."""

    def _doctor(self, result: Result) -> Result:
        return replace(result, values=result.values and (0.0,) * len(result.values))


class FeedbackDenying(EvolutionarySearch):
    """Declares that it ignores results, but does not."""

    uses_feedback = False


class FeasibilitySkipping(RandomSearch):
    """Draws without asking `is_feasible`."""

    def _propose(self, n: int) -> list[ArchConfig]:
        feasible, self.is_feasible = self.is_feasible, None
        try:
            return super()._propose(n)
        finally:
            self.is_feasible = feasible


class ViolationBlind(Doctored):
    """Selects parents as if no constraint had been violated."""

    def _doctor(self, result: Result) -> Result:
        return replace(result, violations=None)


class ImpossibilityHiding(RandomSearch):
    """Answers an impossible constraint with an empty ask instead of an error."""

    def _propose(self, n: int) -> list[ArchConfig]:
        try:
            return super()._propose(n)
        except AutomoeError:
            return []


class FailureHiding(RandomSearch):
    """Records failed evaluations as a large loss."""

    def tell(
        self, archs: Sequence[ArchConfig], values: Sequence[Any], violations: Any = None
    ) -> None:
        worst = (1e9,) * len(self.objectives)
        values = [worst if parse_values(v, len(worst)) is None else v for v in values]
        super().tell(archs, values, violations)


class FirstObjectiveOnly(Doctored):
    """Selects parents on the first objective alone."""

    def _doctor(self, result: Result) -> Result:
        return replace(result, values=result.values and result.values[:1])


class StrangerIgnoring(RandomSearch):
    """Silently drops told architectures it did not propose."""

    def tell(
        self, archs: Sequence[ArchConfig], values: Sequence[Any], violations: Any = None
    ) -> None:
        keep = [i for i, arch in enumerate(archs) if arch in self.pending]
        rows = None if violations is None else [violations[i] for i in keep]
        super().tell([archs[i] for i in keep], [values[i] for i in keep], rows)


class StopsAfterFour(RandomSearch):
    """Proposes nothing after its fourth architecture."""

    def _propose(self, n: int) -> list[ArchConfig]:
        return super()._propose(max(0, min(n, 4 - len(self._told) - len(self._pending))))


class HalfReaching(RandomSearch):
    """Never draws the wider decoder embedding, as if an off-by-one cut its last choice."""

    def _draw(self, make: Any, *args: Any, **kwargs: Any) -> Any:
        def narrowed() -> tuple[ArchConfig, Any]:
            arch, handle = make()
            return replace(arch, decoder_embed_dim=8), handle

        return super()._draw(narrowed, *args, **kwargs)


BROKEN: list[tuple[type[Strategy], dict[str, Any], Any, str]] = [
    (EagerEvolution, SMALL, check_constructor_stores_only, "constructor checked its options"),
    (OverAsking, {}, check_valid_new_proposals, r"ask\(4\) returned 5"),
    (SeedIgnoring, {}, check_seeds, "seeds 3 and 4 proposed the same"),
    (Unseeded, {}, check_seeds, "two runs with seed 3 proposed different"),
    (GenerationForgetting, SMALL, check_resume, "where an uninterrupted run made 26"),
    (RandomStateForgetting, SMALL, check_resume, "resumed strategy .* proposed differently"),
    (ChunkSensitive, {}, check_chunking, "depend on how asks are chunked"),
    (LossBlind, SMALL, check_feedback, "stay the same when every told loss is negated"),
    (FeedbackDenying, SMALL, check_feedback, "declares uses_feedback = False, yet"),
    (FeasibilitySkipping, {}, check_constraint_respected, "breaks is_feasible"),
    (ViolationBlind, SMALL, check_constraint_respected, "stay the same when .* violating"),
    (ImpossibilityHiding, {}, check_impossible_constraint, "did not raise"),
    (FailureHiding, {}, check_failed_evaluations, "history records 0 failures"),
    (FirstObjectiveOnly, SMALL, check_multi_objective, "objective 'size' alone"),
    (StrangerIgnoring, {}, check_bad_tells, "malformed tell was accepted"),
    (StopsAfterFour, {}, check_keeps_proposing, "stopped proposing after 4"),
    (HalfReaching, {}, check_exhaustion, "ran dry after 4 of the 8"),
]


@pytest.mark.parametrize(
    ("cls", "options", "check", "problem"), BROKEN, ids=[row[0].__name__ for row in BROKEN]
)
def test_the_suite_rejects_a_broken_strategy(
    cls: type[Strategy], options: dict[str, Any], check: Any, problem: str
) -> None:
    """The check meant for the flaw is the first to fail, and its message names the flaw."""
    with pytest.raises(AssertionError, match=f"{cls.__name__} fails {check.__name__}: .*{problem}"):
        check_strategy(cls, **options)


def test_every_check_has_a_broken_strategy() -> None:
    assert {row[2] for row in BROKEN} == set(conformance.CHECKS)


class Hanging(RandomSearch):
    """Loops in `_propose` (until released, so that a test may end the loop it started)."""

    release = threading.Event()

    def _propose(self, n: int) -> list[ArchConfig]:
        while not self.release.is_set():
            pass
        return super()._propose(n)


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Strategy]]:
    monkeypatch.setattr(conformance, "TIME_LIMIT", 0.5)
    Hanging.release.clear()
    yield Hanging
    Hanging.release.set()


def test_a_hanging_strategy_fails_on_time(hanging: type[Strategy]) -> None:
    with pytest.raises(AssertionError, match=r"did not finish within 0\.5 s"):
        check_strategy(hanging)


def test_a_hanging_strategy_fails_on_time_off_the_main_thread(hanging: type[Strategy]) -> None:
    """Off the main thread there is no SIGALRM: the check runs in a thread of its own."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            check_valid_new_proposals(hanging)
        except AssertionError as err:
            errors.append(err)

    caller = threading.Thread(target=run)
    caller.start()
    caller.join(30)
    assert len(errors) == 1
    assert "did not finish within 0.5 s" in str(errors[0])


class Crashing(RandomSearch):
    """Crashes when told a result."""

    def _observe(self, results: list[Result]) -> None:
        raise ZeroDivisionError("division by zero")


def test_a_crashing_strategy_fails_with_what_it_raised() -> None:
    with pytest.raises(AssertionError, match="the strategy raised ZeroDivisionError"):
        check_valid_new_proposals(Crashing)
