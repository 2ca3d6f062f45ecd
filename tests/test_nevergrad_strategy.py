"""The Nevergrad adapter: what the optimizer is told about failed, refused and infeasible
results, how many asks duplicates cost, the options that reach the optimizer, exact resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nevergrad as ng
import numpy as np
import pytest

from automoe.space import ArchConfig, SearchSpace
from automoe.strategies import Strategy, get_strategy
from automoe.strategies.conformance import TINY_SPACE, loss, size, tiny_space

Evaluate = Callable[[ArchConfig], Any]


@dataclass
class Spy:
    """What reached the optimizer: its constructor's keywords, the losses given to `tell`,
    the loss it learned from each tell (after Nevergrad's multi-objective scalarisation and
    constraint penalty: the value its algorithm compares) and the number of asks. Set `stuck`
    and every ask proposes the same point, like an optimizer that has converged."""

    stuck: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    told: list[list[float]] = field(default_factory=list)
    learned: list[float] = field(default_factory=list)
    asks: int = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Registers optimizer "Spy": DiscreteLenglerOnePlusOne with its calls recorded."""
    record = Spy()
    make = ng.optimizers.registry["DiscreteLenglerOnePlusOne"]

    def build(**kwargs: Any) -> Any:
        record.kwargs = kwargs
        optimizer = make(**kwargs)
        ask, tell = optimizer.ask, optimizer.tell

        def counted_ask() -> Any:
            record.asks += 1
            return optimizer.parametrization.spawn_child() if record.stuck else ask()

        def recorded_tell(candidate: Any, losses: Any, **extra: Any) -> None:
            record.told.append(np.atleast_1d(np.asarray(losses, dtype=float)).tolist())
            tell(candidate, losses, **extra)

        def learn(internal: Callable[[Any, float], None]) -> Callable[[Any, float], None]:
            def hook(candidate: Any, value: float) -> None:
                record.learned.append(value)
                internal(candidate, value)

            return hook

        optimizer.ask, optimizer.tell = counted_ask, recorded_tell
        # The scalar loss the algorithm itself works with, penalties included.
        optimizer._internal_tell_candidate = learn(optimizer._internal_tell_candidate)
        optimizer._internal_tell_not_asked = learn(optimizer._internal_tell_not_asked)
        return optimizer

    monkeypatch.setitem(ng.optimizers.registry, "Spy", build)
    return record


def run(strategy: Strategy, rounds: int, batch: int, evaluate: Evaluate) -> list[ArchConfig]:
    proposed: list[ArchConfig] = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        proposed += archs
        strategy.tell(archs, [evaluate(a) for a in archs])
    return proposed


def two_objectives(arch: ArchConfig) -> tuple[float, float]:
    """Loss and size, each with a tie-breaker so that every architecture scores differently."""
    tie = int(arch.key(), 16) % 10**6 * 1e-7
    return loss(arch) + tie, size(arch) + tie


@pytest.mark.parametrize("first", ["failed", "refused"])
def test_a_bad_first_result_does_not_become_the_reference_point(spy: Spy, first: str) -> None:
    drawn, evaluated = [], []

    def feasible(arch: ArchConfig) -> bool:
        drawn.append(arch)
        return first != "refused" or len(drawn) > 1

    def evaluate(arch: ArchConfig) -> Any:
        evaluated.append(arch)
        return None if first == "failed" and len(evaluated) == 1 else two_objectives(arch)

    strategy = get_strategy("nevergrad")(
        tiny_space(), ("loss", "size"), optimizer="Spy", is_feasible=feasible
    )
    run(strategy, 10, 4, evaluate)
    assert strategy.history[0].failed == (first == "failed")
    assert max(max(losses) for losses in spy.told) < 1e4  # no stand-in like 1e20
    # Nevergrad's reference is the largest of the first 15 vectors; after it, the hypervolume
    # losses it learns must still tell the architectures apart.
    later = spy.learned[15:]
    assert len(later) >= 20 and len(set(later)) >= len(later) // 2


@pytest.mark.parametrize("objectives", [("bleu",), ("bleu", "size")])
def test_violations_and_failures_learn_worse_than_any_feasible_result(
    spy: Spy, objectives: tuple[str, ...]
) -> None:
    strategy = get_strategy("nevergrad")(tiny_space(), objectives, optimizer="Spy")
    archs = strategy.ask(8)

    def values(arch: ArchConfig, bleu: float) -> tuple[float, ...]:
        return (bleu, float(size(arch)))[: len(objectives)]

    # negated BLEU: every loss is negative; the violating and the failed architectures come
    # last and would be the best of all by value
    feasible = [values(a, -20.0 - i) for i, a in enumerate(archs[:6])]
    strategy.tell(archs[:6], feasible, [(-1.0,)] * 6)
    told = len(spy.learned)
    violating = tuple(v - 1000 for v in values(archs[6], -40.0))  # dominates every feasible one
    strategy.tell(archs[6:], [violating, None], [(0.5,), None])
    assert len(spy.learned) > told
    assert min(spy.learned[told:]) > max(spy.learned[:told])


def test_duplicates_cost_a_bounded_number_of_optimizer_asks(spy: Spy) -> None:
    spy.stuck = True
    strategy = get_strategy("nevergrad")(tiny_space(), optimizer="Spy", max_tries=50)
    proposed = run(strategy, 4, 5, lambda a: (loss(a),))
    assert len({a.key() for a in proposed}) == len(proposed) == 20
    # at most random_after (10) refused asks before each accepted proposal, plus that one
    assert spy.asks <= 20 * (10 + 1)


def small_space() -> SearchSpace:
    """28,800 architectures: an optimizer soon proposes known ones again."""
    decoder = {**TINY_SPACE["decoder"], "layers": [1]}
    return SearchSpace.from_dict(
        {**TINY_SPACE, "identity_experts": False, "fractional_experts": False, "decoder": decoder}
    )


def test_budget_and_workers_reach_the_optimizer(spy: Spy) -> None:
    strategy = get_strategy("nevergrad")(tiny_space(), optimizer="Spy", budget=300, num_workers=25)
    strategy.ask(1)
    assert spy.kwargs["budget"] == 300 and spy.kwargs["num_workers"] == 25


@pytest.mark.parametrize("optimizer", ["NGOpt", "DE", "DiscreteLenglerOnePlusOne"])
def test_resume_replays_held_results_and_own_draws(optimizer: str) -> None:
    """Refusals and failures held back until a feasible result, and the strategy's own draws
    after refused ones (three quarters are refused here): a resumed run continues identically."""

    def build() -> Strategy:
        return get_strategy("nevergrad")(
            small_space(),
            ("loss", "size"),
            seed=4,
            optimizer=optimizer,
            random_after=2,
            is_feasible=lambda arch: arch.encoder_embed_dim == arch.decoder_embed_dim == 16,
        )

    def evaluate(arch: ArchConfig) -> Any:
        return None if arch.decoder_self_heads[0] == 1 else (round(loss(arch), 1), size(arch))

    straight, stopped = build(), build()
    for strategy in (straight, stopped):
        run(strategy, 4, 5, evaluate)
    pending = stopped.ask(3)
    resumed = build()
    resumed.load_state_dict(json.loads(json.dumps(stopped.state_dict())))
    assert straight.ask(3) == pending == resumed.pending
    for strategy in (straight, resumed):
        strategy.tell(pending, [evaluate(a) for a in pending])
        run(strategy, 4, 5, evaluate)
    assert straight.history == resumed.history
    assert straight.state_dict() == resumed.state_dict()
    kinds = [event[0] for event in straight.state_dict()["extra"]["events"]]
    assert "draw" in kinds and any(r.failed for r in straight.history)
