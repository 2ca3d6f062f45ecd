"""`automoe.pareto`: hand-computed cases (arithmetic in the comments) and properties checked on
integer points, where hypervolume has an exact oracle (counting dominated unit cells)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.pareto import (
    best_so_far,
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_curve,
    non_dominated_sort,
    pareto_front,
)

NAN = math.nan

# ----------------------------------------------------------------- hand-computed cases


def test_dominance_and_fronts() -> None:
    assert dominates((1, 2), (1, 3)) and not dominates((1, 2), (1, 2))
    assert not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))
    # (3,3) is beaten only by (2,2); (6,6) by everything; duplicates share a front.
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (6, 6), (2, 2)]
    assert non_dominated_sort(points) == [[0, 1, 2, 5], [3], [4]]
    assert pareto_front(points) == [0, 1, 2, 5]


def test_nan_rows_are_in_no_front_and_add_no_volume() -> None:
    points = [(2, 2), (NAN, 0), (1, 3), (3, 3)]
    assert non_dominated_sort(points) == [[0, 2], [3]]
    # without the NaN row: staircase (1,3),(2,2) under (4,4) = 3*1 + 2*1 = 5
    assert hypervolume(points, (4, 4)) == 5.0
    assert hypervolume_curve(points, (4, 4)) == [4.0, 4.0, 5.0, 5.0]


def test_empty_inputs() -> None:
    assert non_dominated_sort([]) == [] and pareto_front([]) == []
    assert hypervolume([], (1, 1)) == 0.0
    assert hypervolume_curve([], (1, 1)) == []
    assert best_so_far([]) == []
    assert crowding_distance([], []) == []


def test_crowding_distance() -> None:
    # interior (2,2): x gap (5-1)/4 = 1, y gap (5-1)/4 = 1 -> 2
    assert crowding_distance([(1, 5), (2, 2), (5, 1)], [0, 1, 2]) == [math.inf, 2.0, math.inf]
    # front [3, 0, 1, 2] of x = 0,2,3,10 and y = 10,5,2,0 (ranges 10):
    # member 0 (x=2): (3-0)/10 + (10-2)/10 = 1.1; member 1 (x=3): (10-2)/10 + (5-0)/10 = 1.3
    points = [(2, 5), (3, 2), (10, 0), (0, 10)]
    assert crowding_distance(points, [3, 0, 1, 2]) == pytest.approx([math.inf, 1.1, 1.3, math.inf])
    assert crowding_distance(points, [1, 2]) == [math.inf, math.inf]  # fewer than three


def test_hypervolume_2d() -> None:
    # staircase under (4,4): (1,3) adds 3*1, (2,2) adds 2*1, (3,1) adds 1*1 -> 6
    assert hypervolume([(3, 1), (1, 3), (2, 2)], (4, 4)) == 6.0
    # (5,0) lies beyond the reference in x, (4,1) on its edge: neither adds anything
    assert hypervolume([(3, 1), (1, 3), (2, 2), (5, 0), (4, 1)], (4, 4)) == 6.0
    # one point: (10-2.5) * (200-50) = 7.5 * 150 = 1125
    assert hypervolume([(2.5, 50.0)], (10.0, 200.0)) == 1125.0


def test_hypervolume_3d_and_beyond() -> None:
    # boxes to (4,4,4): (1,2,3) -> 3*2*1 = 6, (2,1,2) -> 2*3*2 = 12,
    # overlap from (2,2,3) -> 2*2*1 = 4: union 6 + 12 - 4 = 14
    assert hypervolume([(1, 2, 3), (2, 1, 2)], (4, 4, 4)) == 14.0
    # three boxes of 3*3*1 = 9, pairwise overlaps 1*1*3 = 3, triple overlap 1: 27 - 9 + 1 = 19
    assert hypervolume([(1, 1, 3), (1, 3, 1), (3, 1, 1)], (4, 4, 4)) == 19.0
    # 1-D: 5 - 2 = 3; 4-D: one box 1*2*3*4 = 24
    assert hypervolume([(3,), (2,), (7,)], (5,)) == 3.0
    assert hypervolume([(0, 0, 0, 0)], (1, 2, 3, 4)) == 24.0


def test_hypervolume_curve_and_best_so_far() -> None:
    # (3,1): 1*3 = 3; (5,5) is outside; (1,3): 3 + 3*1 - overlap (3,3) 1*1 = 5; (2,2): 6
    assert hypervolume_curve([(3, 1), (5, 5), (1, 3), (2, 2)], (4, 4)) == [3, 3, 5, 6]
    assert best_so_far([NAN, 3.0, NAN, 2.0, 4.0]) == pytest.approx(
        [NAN, 3.0, 3.0, 2.0, 2.0], nan_ok=True
    )


def test_bad_reference_points() -> None:
    with pytest.raises(ValueError, match="2 coordinates"):
        hypervolume([(1, 2)], (3, 3, 3))
    with pytest.raises(ValueError, match="finite"):
        hypervolume_curve([(1, 2)], (3, math.inf))
    with pytest.raises(ValueError, match="equal-length rows"):
        non_dominated_sort([1.0, 2.0])


# ----------------------------------------------------------------- properties

REF = 6


def point_sets(dims: int, min_size: int = 0) -> st.SearchStrategy[list[tuple[int, ...]]]:
    """Small integer points around the reference (REF in every objective), some outside it."""
    coordinate = st.integers(0, REF + 1)
    return st.lists(st.tuples(*[coordinate] * dims), min_size=min_size, max_size=12)


def counted_volume(points: list[tuple[int, ...]], dims: int) -> int:
    """Oracle: unit cells [c, c+1] below the reference whose corner c some point weakly beats."""
    return sum(
        any(all(p <= c for p, c in zip(point, cell, strict=True)) for point in points)
        for cell in itertools.product(range(REF), repeat=dims)
    )


dims = st.sampled_from([2, 3])


@settings(max_examples=60, deadline=None)
@given(st.data(), dims)
def test_hypervolume_is_exact(data: st.DataObject, d: int) -> None:
    points = data.draw(point_sets(d))
    assert hypervolume(points, (REF,) * d) == counted_volume(points, d)


@settings(max_examples=60, deadline=None)
@given(st.data(), dims)
def test_dominated_points_add_nothing_and_any_point_adds_no_less(
    data: st.DataObject, d: int
) -> None:
    points = data.draw(point_sets(d, min_size=1))
    anchor = data.draw(st.sampled_from(points))
    worse = tuple(a + data.draw(st.integers(0, 3)) for a in anchor)
    extra = data.draw(st.tuples(*[st.integers(0, REF + 1)] * d))
    ref = (REF,) * d
    volume = hypervolume(points, ref)
    assert hypervolume([*points, worse], ref) == volume
    assert hypervolume([*points, extra], ref) >= volume
    curve = hypervolume_curve(points, ref)
    assert curve == [hypervolume(points[: i + 1], ref) for i in range(len(points))]
    assert all(a <= b for a, b in itertools.pairwise(curve))


@settings(max_examples=60, deadline=None)
@given(st.data(), dims)
def test_fronts_partition_and_dominance(data: st.DataObject, d: int) -> None:
    points = data.draw(point_sets(d))
    fronts = non_dominated_sort(points)
    assert sorted(i for front in fronts for i in front) == list(range(len(points)))
    for front in fronts:
        assert front == sorted(front)
        assert not any(dominates(points[a], points[b]) for a in front for b in front)
    for better, front in itertools.pairwise(fronts):
        assert all(any(dominates(points[a], points[b]) for a in better) for b in front)
    first = pareto_front(points)
    others = set(range(len(points))) - set(first)
    assert all(any(dominates(points[a], points[b]) for a in first) for b in others)


@settings(max_examples=60, deadline=None)
@given(st.data(), dims)
def test_permutation_invariance(data: st.DataObject, d: int) -> None:
    points = data.draw(point_sets(d))
    order = data.draw(st.permutations(range(len(points))))
    shuffled = [points[i] for i in order]
    ref = (REF,) * d
    assert hypervolume(shuffled, ref) == hypervolume(points, ref)
    front = {points[i] for i in pareto_front(points)}
    assert {shuffled[i] for i in pareto_front(shuffled)} == front
    fronts = [sorted(points[i] for i in f) for f in non_dominated_sort(points)]
    assert [sorted(shuffled[i] for i in f) for f in non_dominated_sort(shuffled)] == fronts


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(-10, 10), st.just(NAN)), max_size=20))
def test_best_so_far_is_the_running_minimum_of_real_values(values: list[float]) -> None:
    best = best_so_far(values)
    for i, value in enumerate(best):
        seen = [v for v in values[: i + 1] if not math.isnan(v)]
        assert (math.isnan(value) and not seen) or value == min(seen)


def test_thousands_of_points_sort_quickly() -> None:
    points = np.random.default_rng(0).random((2000, 3))
    fronts = non_dominated_sort(points)
    assert sum(map(len, fronts)) == 2000
    assert 0 < hypervolume(points, (1, 1, 1)) < 1
