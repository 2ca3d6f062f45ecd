"""Ranking told results: Deb's constrained domination with NSGA-II's non-dominated sorting and
crowding distance, so one order serves single- and multi-objective selection alike.

The Pareto math itself lives in `automoe.pareto`; this module adds the strategy rules for
infeasible and failed results.
"""

from __future__ import annotations

from collections.abc import Sequence

from automoe.pareto import crowding_distance, dominates, non_dominated_sort
from automoe.pareto import pareto_front as front_indices
from automoe.strategies.results import Result

__all__ = ["crowding", "dominates", "fronts", "pareto_front", "rank"]

fronts = non_dominated_sort  # the name strategies have always exported


def crowding(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point, taking all of `points` as one front."""
    return crowding_distance(points, range(len(points)))


def rank(results: Sequence[Result]) -> list[Result]:
    """Evaluated results best first; failed evaluations are left out.

    Feasible results come first: by value for one objective, else by front then by crowding
    distance (wider spread first). Infeasible ones follow, least violation first. Remaining ties
    go by input order, so the ranking is deterministic.
    """
    feasible = [r for r in results if r.feasible]
    infeasible = sorted(
        (r for r in results if not r.failed and not r.feasible), key=lambda r: r.violation
    )
    points = [r.values for r in feasible]
    ordered: list[Result] = []
    for front in non_dominated_sort(points):  # type: ignore[arg-type]
        distance = crowding_distance(points, front)  # type: ignore[arg-type]
        by_spread = sorted(range(len(front)), key=lambda k: (-distance[k], front[k]))
        ordered += [feasible[front[k]] for k in by_spread]
    return ordered + infeasible


def pareto_front(results: Sequence[Result]) -> list[Result]:
    """The feasible results no other feasible result dominates, in input order."""
    feasible = [r for r in results if r.feasible]
    points = [r.values for r in feasible]
    return [feasible[i] for i in front_indices(points)]  # type: ignore[arg-type]
