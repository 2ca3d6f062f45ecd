"""The search's defaults answer a question: evolution's generations fit the budget, the
default objectives give the best model for each latency budget, and the summary says how
the search ended."""

from __future__ import annotations

import random

from automoe.space import SearchSpace
from automoe.strategies.evolution import EvolutionarySearch, paper_schedule


def evaluations(schedule: dict[str, int]) -> int:
    children = schedule["mutations"] + schedule["crossovers"]
    return schedule["population"] + (schedule["iterations"] - 1) * children


def test_paper_schedule_keeps_the_papers_proportions_and_iterations() -> None:
    assert paper_schedule(1525, 15) == {
        "population": 125,
        "parents": 25,
        "mutations": 50,
        "crossovers": 50,
        "iterations": 15,
    }
    default = paper_schedule(300, 15)
    assert default == {
        "population": 24,
        "parents": 5,
        "mutations": 10,
        "crossovers": 9,
        "iterations": 15,
    }
    assert evaluations(default) == 290
    for budget in (1, 5, 12, 50, 121, 122, 299, 300, 301, 1000, 5000):
        schedule = paper_schedule(budget, 15)
        assert 0.85 * budget <= evaluations(schedule) <= budget
        assert schedule["parents"] <= schedule["population"]
        bigger = paper_schedule(budget + 60, 15)
        assert bigger["iterations"] >= schedule["iterations"]
    assert paper_schedule(12, 15)["iterations"] == 1  # too small to evolve: random sampling
    assert paper_schedule(300, 30)["iterations"] == 30  # HAT's count, when asked for


def test_evolution_scales_to_its_budget_unless_sizes_are_given() -> None:
    space = SearchSpace.load("multi30k")
    assert len(EvolutionarySearch(space, budget=300).ask(1000)) == 24
    assert len(EvolutionarySearch(space).ask(1000)) == 125
    assert len(EvolutionarySearch(space, budget=300, population=30).ask(1000)) == 30
    evo = EvolutionarySearch(space, budget=50, seed=3)
    rng = random.Random(0)
    while archs := evo.ask(7):
        assert evo.generations[0] < evo.generations[1]
        evo.tell(archs, [(rng.random(),) for _ in archs])
    assert evo.done and evo.generations == (6, 6) and len(evo.history) == 50
