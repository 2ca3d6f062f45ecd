"""Ranking told results: Deb's constrained domination with NSGA-II's non-dominated sorting and
crowding distance, so one order serves single- and multi-objective selection alike."""

from __future__ import annotations

from collections.abc import Sequence

from automoe.strategies.results import Result


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` everywhere and better somewhere (all objectives minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of `points` grouped into successive non-dominated fronts, each in input order."""
    dominated_by = [0] * len(points)
    beats: list[list[int]] = [[] for _ in points]
    for i, p in enumerate(points):
        for j in range(i + 1, len(points)):
            if dominates(p, points[j]):
                beats[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], p):
                beats[j].append(i)
                dominated_by[i] += 1
    out = []
    current = [i for i, count in enumerate(dominated_by) if count == 0]
    while current:
        out.append(current)
        following = []
        for i in current:
            for j in beats[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def crowding(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point within its front (boundaries get infinity)."""
    distance = [0.0] * len(points)
    if len(points) < 3:
        return [float("inf")] * len(points)
    for m in range(len(points[0])):
        order = sorted(range(len(points)), key=lambda i: (points[i][m], i))
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = float("inf")
        if high == low:
            continue
        for before, i, after in zip(order, order[1:], order[2:], strict=False):
            distance[i] += (points[after][m] - points[before][m]) / (high - low)
    return distance


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
    for front in fronts(points):  # type: ignore[arg-type]
        distance = crowding([points[i] for i in front])  # type: ignore[misc]
        by_spread = sorted(range(len(front)), key=lambda k: (-distance[k], front[k]))
        ordered += [feasible[front[k]] for k in by_spread]
    return ordered + infeasible


def pareto_front(results: Sequence[Result]) -> list[Result]:
    """The feasible results no other feasible result dominates, in input order."""
    feasible = [r for r in results if r.feasible]
    points = [r.values for r in feasible]
    front = fronts(points)[0] if feasible else []  # type: ignore[arg-type]
    return [feasible[i] for i in front]
