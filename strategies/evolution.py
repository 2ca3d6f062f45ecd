"""`evolution`: the evolutionary search of HAT and AutoMoE (paper §3.3), resumable.

Generation 0 is `population` random architectures. Once a generation is fully told, its
`parents` best members survive and `mutations` mutants of random parents plus `crossovers`
uniform crossovers of two distinct parents join them; every child must be new and pass
`is_feasible` (rejection sampling, so the constraint is checked before anything is scored).
Unlike the released code, surviving parents are not scored again: they keep their values.
The search stops after `iterations` scored generations (paper: 125 + 14 x 100 evaluations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, ClassVar

from automoe.arch import ArchConfig
from automoe.errors import AutomoeError
from automoe.strategies.base import Strategy
from automoe.strategies.pareto import rank


class EvolutionarySearch(Strategy):
    """Single objective: parents are the lowest-loss feasible members. Several objectives:
    non-dominated sorting then crowding distance (NSGA-II). Infeasible members rank after
    feasible ones by violation; failed evaluations never become parents."""

    name = "evolution"
    defaults: ClassVar[Mapping[str, Any]] = {
        "population": 125,
        "parents": 25,
        "mutations": 50,
        "mutation_prob": 0.3,
        "crossovers": 50,
        "iterations": 15,
    }

    @property
    def generation(self) -> int:
        """Index of the generation being asked or told (0 = the random population)."""
        self._ensure()
        return self._generation

    @property
    def parents(self) -> list[ArchConfig]:
        """The survivors the current generation was bred from (empty for generation 0)."""
        self._ensure()
        return list(self._parents)

    @property
    def done(self) -> bool:
        self._ensure()
        return self._generation >= self._options["iterations"]

    def _setup(self, state: Mapping[str, Any] | None) -> None:
        population = self._int_option("population", 1)
        parents = self._int_option("parents", 1)
        if parents > population:
            raise AutomoeError(
                f"option parents = {parents} of strategy 'evolution' exceeds population = "
                f"{population}"
            )
        for name in ("mutations", "crossovers"):
            self._int_option(name, 0)
        self._int_option("iterations", 1)
        prob = self._options["mutation_prob"]
        if isinstance(prob, bool) or not isinstance(prob, Real) or not 0.0 <= prob <= 1.0:
            raise AutomoeError(
                f"option mutation_prob of strategy 'evolution' must be in [0, 1], got {prob!r}"
            )
        state = state or {"generation": 0, "members": [], "next": 0, "parents": []}
        self._generation: int = state["generation"]
        self._members = [ArchConfig.from_dict(a) for a in state["members"]]
        self._next: int = state["next"]
        self._parents = [ArchConfig.from_dict(a) for a in state["parents"]]

    def _state(self) -> dict[str, Any]:
        return {
            "generation": self._generation,
            "members": [a.to_dict() for a in self._members],
            "next": self._next,
            "parents": [a.to_dict() for a in self._parents],
        }

    def _propose(self, n: int) -> list[ArchConfig]:
        if not self._members:
            self._members = self._children(self._options["population"], self._sample)
        while self._next == len(self._members) and not self.done and self._generation_told():
            self._advance()
        out = self._members[self._next : self._next + n]
        self._next += len(out)
        return out

    def _generation_told(self) -> bool:
        return all(a.key() in self._told for a in self._members)

    def _advance(self) -> None:
        """Select the survivors of a fully told generation and breed the next one."""
        ranked = rank([self._told[a.key()] for a in self._members])
        self._parents = [r.arch for r in ranked[: self._options["parents"]]]
        self._generation += 1
        if self.done:
            return
        if not self._parents:  # every member failed: start again from random samples
            children = self._children(self._options["population"], self._sample)
        else:
            children = self._children(self._options["mutations"], self._mutant)
            if len(self._parents) > 1:
                children += self._children(
                    self._options["crossovers"], self._crossover, taken=children
                )
        self._members = self._parents + children
        self._next = len(self._parents)

    def _children(
        self, count: int, make: Callable[[], ArchConfig], taken: list[ArchConfig] | None = None
    ) -> list[ArchConfig]:
        """Up to `count` new feasible architectures from `make`; fewer if the space runs out."""
        keys = {a.key() for a in taken or []}
        out: list[ArchConfig] = []
        for _ in range(count):
            drawn = self._draw(lambda: (make(), None), taken=keys)
            if drawn is None:
                break
            out.append(drawn[0])
            keys.add(drawn[0].key())
        return out

    def _sample(self) -> ArchConfig:
        return self.space.sample(self._rng)

    def _mutant(self) -> ArchConfig:
        parent = self._rng.choice(self._parents)
        return self.space.mutate(parent, self._options["mutation_prob"], self._rng)

    def _crossover(self) -> ArchConfig:
        a, b = self._rng.sample(self._parents, 2)
        return self.space.crossover(a, b, self._rng)
