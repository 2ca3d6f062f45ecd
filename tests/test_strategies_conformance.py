"""Every registered strategy, and a tiny third-party one registered here, passes the conformance
checks (tests/test_conformance_broken.py shows that they reject broken ones)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from automoe.space import ArchConfig
from automoe.strategies import STRATEGIES, Strategy, get_strategy, register
from automoe.strategies.conformance import CHECKS, check_strategy

BUILTINS = sorted(STRATEGIES)

# Small settings so that a few rounds of asks cross evolution's generations and NSGA-II's.
SMALL: dict[str, dict[str, Any]] = {
    "evolution": {"population": 8, "parents": 3, "mutations": 3, "crossovers": 3, "iterations": 4},
    "optuna-tpe": {"n_startup_trials": 5},
    "optuna-nsga2": {"population_size": 6},
}


class Climber(Strategy):
    """A third-party strategy: mutates the best architecture so far (random at first)."""

    name = "test-climber"
    defaults: ClassVar[Mapping[str, Any]] = {"prob": 0.5}

    def _propose(self, n: int) -> list[ArchConfig]:
        best = self.best()
        out: list[ArchConfig] = []
        for _ in range(n):
            drawn = self._draw(
                lambda: (
                    self.space.sample(self._rng)
                    if best is None
                    else self.space.mutate(best.arch, self._options["prob"], self._rng),
                    None,
                ),
                taken={a.key() for a in out},
            )
            if drawn is None:
                break
            out.append(drawn[0])
        return out


@pytest.fixture(scope="module", autouse=True)
def third_party() -> Iterator[None]:
    register("test-climber", Climber)
    yield
    del STRATEGIES["test-climber"]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", [*BUILTINS, "test-climber"])
def test_conformance(name: str, check: Any) -> None:
    check(get_strategy(name), **SMALL.get(name, {}))


def test_check_strategy_runs_every_check_by_name() -> None:
    check_strategy("test-climber", prob=0.3)
