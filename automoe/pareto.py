"""Pareto math shared by the strategies and the search plots: dominance, non-dominated sorting,
crowding distance and hypervolume, on plain numbers (numpy only, no automoe imports).

Every objective is minimised; a caller with a maximised metric (BLEU) negates it first.
A row holding NaN is a failed evaluation: it belongs to no front and adds no hypervolume,
so callers can keep one row per evaluation and let failures fall out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Points = Sequence[Sequence[float]] | np.ndarray


def _as_matrix(points: Points) -> np.ndarray:
    """`points` as an (n, d) float array; an empty input is (0, 0)."""
    matrix = np.asarray(points, dtype=float)
    if matrix.size == 0:
        return matrix.reshape(0, matrix.shape[-1] if matrix.ndim == 2 else 0)
    if matrix.ndim != 2:
        raise ValueError(
            f"points must be a sequence of equal-length rows, got shape {matrix.shape}"
        )
    return matrix


def _valid(matrix: np.ndarray) -> np.ndarray:
    """Indices of the rows without NaN (the evaluations that did not fail)."""
    return np.flatnonzero(~np.isnan(matrix).any(axis=1))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated_sort(points: Points) -> list[list[int]]:
    """Indices of `points` grouped into successive non-dominated fronts, each in input order.

    The first front is the Pareto front. Rows with NaN appear in no front. O(n^2 d) time and
    O(n^2) memory (a boolean matrix), fine for thousands of points.
    """
    matrix = _as_matrix(points)
    valid = _valid(matrix)
    rows = matrix[valid]
    beats = np.empty((len(rows), len(rows)), dtype=bool)  # beats[i, j]: row i dominates row j
    for i, row in enumerate(rows):
        beats[i] = (row <= rows).all(axis=1) & (row < rows).any(axis=1)
    dominated_by = beats.sum(axis=0)
    out: list[list[int]] = []
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        out.append(valid[current].tolist())
        dominated_by[current] = -1  # placed: never picked again
        dominated_by -= beats[current].sum(axis=0)
        current = np.flatnonzero(dominated_by == 0)
    return out


def pareto_front(points: Points) -> list[int]:
    """Indices of the points no other point dominates, in input order (NaN rows excluded)."""
    fronts = non_dominated_sort(points)
    return fronts[0] if fronts else []


def crowding_distance(points: Points, front: Sequence[int]) -> list[float]:
    """NSGA-II crowding distance of each `front` member among the members, in `front` order.

    Boundary members of any objective get infinity, as do all members of a front smaller than
    three, so selection keeps the extremes; ties in an objective go by position in `front`.
    """
    values = _as_matrix(points)[list(front)]
    if len(front) < 3:
        return [float("inf")] * len(front)
    distance = np.zeros(len(front))
    with np.errstate(invalid="ignore"):  # infinite objectives give NaN, as plain floats would
        for column in values.T:
            order = np.argsort(column, kind="stable")
            low, high = column[order[0]], column[order[-1]]
            distance[order[[0, -1]]] = np.inf
            if high != low:
                distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / (high - low)
    return distance.tolist()


def _check_reference(reference: Sequence[float], dimensions: int) -> np.ndarray:
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or (dimensions and len(ref) != dimensions):
        raise ValueError(f"reference point {list(reference)} must have {dimensions} coordinates")
    if not np.isfinite(ref).all():
        raise ValueError(f"reference point {list(reference)} must be finite")
    return ref


def _exact_hypervolume(rows: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume dominated by `rows` (all strictly better than `ref`), by slicing.

    2-D is a sweep along x keeping the running minimum of y; higher dimensions cut slabs
    between successive values of the last objective and recurse on the points below each cut.
    """
    if rows.shape[1] == 1:
        return float(ref[0] - rows[:, 0].min())
    if rows.shape[1] == 2:
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
        ceiling = np.minimum.accumulate(np.concatenate(([ref[1]], rows[:-1, 1])))
        return float(((ref[0] - rows[:, 0]) * np.clip(ceiling - rows[:, 1], 0, None)).sum())
    rows = rows[np.argsort(rows[:, -1], kind="stable")]
    cuts = np.append(rows[:, -1], ref[-1])
    total = 0.0
    for k in range(len(rows)):
        if cuts[k + 1] > cuts[k]:
            total += _exact_hypervolume(rows[: k + 1, :-1], ref[:-1]) * (cuts[k + 1] - cuts[k])
    return total


def hypervolume(points: Points, reference: Sequence[float]) -> float:
    """Volume of objective space dominated by `points` and bounded by `reference`.

    The reference is always explicit, since the number means nothing without it. Points that
    do not strictly beat the reference in every objective, and NaN rows, contribute nothing.
    Exact in any dimension in O(n^(d-1) log n): quick for 2-D and 3-D, meant for small fronts
    beyond.
    """
    matrix = _as_matrix(points)
    ref = _check_reference(reference, matrix.shape[1])
    if not len(matrix):
        return 0.0
    rows = matrix[_valid(matrix)]
    rows = rows[(rows < ref).all(axis=1)]
    if not len(rows):
        return 0.0
    return _exact_hypervolume(rows[pareto_front(rows)], ref)


def hypervolume_curve(points_in_eval_order: Points, reference: Sequence[float]) -> list[float]:
    """Hypervolume of the first i points for every i, to show search progress.

    Keeps the current front and recomputes only when a new point is not weakly dominated by it.
    """
    matrix = _as_matrix(points_in_eval_order)
    ref = _check_reference(reference, matrix.shape[1])
    front = np.empty((0, matrix.shape[1]))
    curve: list[float] = []
    current = 0.0
    for row in matrix:
        improves = not np.isnan(row).any() and (row < ref).all()
        if improves and not (front <= row).all(axis=1).any():
            keep = ~((row <= front).all(axis=1))
            front = np.vstack([front[keep], row])
            current = _exact_hypervolume(front, ref)
        curve.append(current)
    return curve


def best_so_far(values: Sequence[float]) -> list[float]:
    """Running minimum; NaN entries (failed or infeasible) keep the previous best, and the
    curve is NaN until the first real value, so a plot shows a gap rather than a made-up best."""
    array = np.asarray(values, dtype=float)
    return np.fmin.accumulate(array).tolist() if array.size else []
