"""`evolution`: the evolutionary search of HAT and AutoMoE (paper §3.3), resumable.

Generation 0 is `population` random architectures. Once a generation is fully told, its
`parents` best members survive and `mutations` mutants of random parents plus `crossovers`
uniform crossovers of two distinct parents join them; every child must be new and pass
`is_feasible` (rejection sampling, so the constraint is checked before anything is scored).
Unlike the released code, surviving parents are not scored again: they keep their values.
The search stops after `iterations` scored generations (paper: 125 + 14 x 100 evaluations).

The defaults are the paper's (AutoMoE §4: population 125, parents 25, 50 mutants with
per-gene probability 0.3, 50 crossovers, 15 iterations; HAT ran 30 and the released
`generate_script.py` passes `--evo-iter 10`); they take 1,525 evaluations, so a 300-evaluation
search would stop them inside generation 2. Given `budget` (the evaluations the search may
score) and none of the four sizes, evolution keeps the paper's proportions and its 15
iterations and scales the sizes to the largest population that fits (`paper_schedule`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, ClassVar

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.strategies.base import Strategy
from automoe.strategies.pareto import rank

SIZES = ("population", "parents", "mutations", "crossovers")
# The smallest population whose paper proportions still give two parents to cross; a budget
# too small for `iterations` generations of it gets fewer generations instead.
MIN_POPULATION = 10


def _paper_sizes(population: int) -> dict[str, int]:
    """Parents, mutants and crossovers in the paper's 25 : 50 : 50 per 125 members."""
    children = int(0.8 * population + 0.5)
    parents = max(1, int(population / 5 + 0.5))
    crossovers = children // 2 if parents > 1 else 0
    return {
        "population": population,
        "parents": parents,
        "mutations": children - crossovers,
        "crossovers": crossovers,
    }


def _evaluations(sizes: Mapping[str, int], iterations: int) -> int:
    """Architectures scored: the population, then each later generation's children."""
    return sizes["population"] + (iterations - 1) * (sizes["mutations"] + sizes["crossovers"])


def paper_schedule(budget: int, iterations: int) -> dict[str, int]:
    """The paper's sizes scaled to the largest population whose `iterations` generations fit
    in `budget` evaluations (300 -> population 24, parents 5, 10 mutants, 9 crossovers: 290
    evaluations); a budget too small for that many generations of MIN_POPULATION gets as
    many generations as fit (one generation = random sampling of the whole budget)."""
    while iterations > 1 and _evaluations(_paper_sizes(MIN_POPULATION), iterations) > budget:
        iterations -= 1
    per_member = 1 + 0.8 * (iterations - 1)  # evaluations per member of the population
    population = min(budget, int((budget + 0.5 * (iterations - 1)) / per_member) + 1)
    while population > 1 and _evaluations(_paper_sizes(population), iterations) > budget:
        population -= 1
    return {**_paper_sizes(population), "iterations": iterations}


class EvolutionarySearch(Strategy):
    """Single objective: parents are the lowest-loss feasible members. Several objectives:
    non-dominated sorting then crowding distance (NSGA-II). Infeasible members rank after
    feasible ones by violation; failed evaluations never become parents.

    Option `budget` (default None): the evaluations the search may score; when given and no
    size option is, population, parents, mutations and crossovers follow `paper_schedule`."""

    name = "evolution"
    defaults: ClassVar[Mapping[str, Any]] = {
        "population": 125,
        "parents": 25,
        "mutations": 50,
        "mutation_prob": 0.3,
        "crossovers": 50,
        "iterations": 15,
        "budget": None,
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
        return self._generation >= self._sizes["iterations"]

    @property
    def generations(self) -> tuple[int, int]:
        """(generations fully scored, generations planned): whether a search that stopped had
        finished the schedule or was cut short, and where."""
        self._ensure()
        planned = self._sizes["iterations"]
        scored = self._generation + int(bool(self._members) and self._generation_told())
        return min(scored, planned), planned

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
        budget = self._int_option("budget", 1, optional=True)
        self._sizes = {name: self._options[name] for name in (*SIZES, "iterations")}
        if budget is not None and not set(SIZES) & set(self.options):
            self._sizes = paper_schedule(budget, self._options["iterations"])
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
            self._members = self._children(self._sizes["population"], self._sample)
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
        self._parents = [r.arch for r in ranked[: self._sizes["parents"]]]
        self._generation += 1
        if self.done:
            return
        if not self._parents:  # every member failed: start again from random samples
            children = self._children(self._sizes["population"], self._sample)
        else:
            children = self._children(self._sizes["mutations"], self._mutant)
            if len(self._parents) > 1:
                children += self._children(
                    self._sizes["crossovers"], self._crossover, taken=children
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
