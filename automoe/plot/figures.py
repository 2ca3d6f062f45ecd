"""Figures of a search run read back from its folder: the quality-cost trade-off and the
progress of the search, several runs overlaid so strategies and seeds compare on one figure.
Quality is the metric the search scored: validation loss (lower is better) or BLEU (higher);
fronts and hypervolumes use the minimised objective (loss, or -BLEU), axes show the metric.

Drawn with matplotlib's object API (`Figure` renders through Agg), so plotting works on a
headless machine and never changes the backend of a program that imports this module.
Each figure is written as PNG (quick look) and SVG (papers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from automoe.constraints import Constraint
from automoe.errors import AutomoeError
from automoe.pareto import best_so_far, hypervolume_curve, pareto_front

MARGIN = 1.1  # default reference: this much beyond the worst quality and cost seen

SEARCH_FILE = "search.json"
EVALUATIONS_FILE = "evaluations.jsonl"
REFERENCE_FILE = "reference.json"

# cost -> (quantity, axis unit, divisor from the stored unit to the axis unit)
COST_AXES = {
    "latency_ms": ("latency", "ms", 1.0),
    "flops": ("compute", "GFLOPs", 1e9),
    "params": ("parameters", "M", 1e6),
}
_MARKERS = {"largest": "^", "smallest": "v", "dense": "s"}
METRIC_LABELS = {"loss": "validation loss", "bleu": "validation BLEU"}


@dataclass(frozen=True)
class RunRecord:
    """One search run folder: its settings, evaluations (in evaluation order) and the
    reference sub-networks (name -> metrics, empty when the run wrote none)."""

    path: Path
    search: dict[str, Any]
    constraints: tuple[Constraint, ...]
    evaluations: list[dict[str, Any]]
    references: dict[str, dict[str, Any]]

    @property
    def label(self) -> str:
        strategy, seed = self.search.get("strategy", "?"), self.search.get("seed", "?")
        return f"{self.path.resolve().name} ({strategy}, seed {seed})"

    @property
    def metric(self) -> str:
        """The quality metric the search scored: "loss" or "bleu"."""
        return str(self.search.get("metric", "loss"))

    def column(self, metric: str) -> np.ndarray:
        """One metric per evaluation as floats; NaN where it is null or missing (failures)."""
        return np.array([_float(e.get(metric)) for e in self.evaluations])

    def score(self) -> np.ndarray:
        """The quality as minimised: loss, or -BLEU."""
        return minimised(self.metric, self.column(self.metric))

    @property
    def feasible(self) -> np.ndarray:
        """Evaluated (a score) and within every constraint, as the search judged it."""
        judged = np.array([e["feasible"] is True for e in self.evaluations])
        return judged & ~np.isnan(self.score())


def minimised(metric: str, values: Any) -> Any:
    """A quality value (or array) turned into the lower-is-better objective."""
    return -np.asarray(values) if metric == "bleu" else values


def common_metric(runs: Sequence[RunRecord]) -> str:
    """The metric every run scored; runs of loss and of BLEU cannot share one figure."""
    metrics = sorted({run.metric for run in runs})
    if len(metrics) != 1:
        raise AutomoeError(
            f"the runs scored different metrics {metrics}; plot loss and BLEU runs separately"
        )
    if metrics[0] not in METRIC_LABELS:
        raise AutomoeError(f"unknown search metric {metrics[0]!r}; choices: {list(METRIC_LABELS)}")
    return metrics[0]


def _float(value: Any) -> float:
    """A JSON number as float; null or missing (a failed evaluation) becomes NaN."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number else np.nan


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AutomoeError(f"{path} is not valid JSON ({err}); the run folder is corrupt") from None


def load_run(path: str | Path) -> RunRecord:
    """Read a folder written by `python -m automoe.search`; AutomoeError says what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise AutomoeError(f"search run folder {path} does not exist")
    if not (path / SEARCH_FILE).is_file():
        raise AutomoeError(
            f"{path} is not a search run folder (no {SEARCH_FILE}); run python -m automoe.search"
        )
    search = _read_json(path / SEARCH_FILE)
    corrupt = f"{path / SEARCH_FILE} is not a search description; the run folder is corrupt"
    if not isinstance(search, dict):
        raise AutomoeError(corrupt)
    try:
        constraints = tuple(
            Constraint(str(c["metric"]), str(c["op"]), float(c["bound"]))
            for c in search.get("constraints") or []
        )
    except (KeyError, TypeError, ValueError):
        raise AutomoeError(f"{corrupt} (bad constraints)") from None
    evaluations = _read_evaluations(path / EVALUATIONS_FILE)
    references = _read_json(path / REFERENCE_FILE) if (path / REFERENCE_FILE).is_file() else {}
    if not isinstance(references, dict) or not all(
        isinstance(r, dict) for r in references.values()
    ):
        raise AutomoeError(f"{path / REFERENCE_FILE} must map names to metrics")
    return RunRecord(path, search, constraints, evaluations, references)


def _read_evaluations(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise AutomoeError(f"{path} line {number} is not valid JSON ({err})") from None
        if not (
            isinstance(row, dict)
            and {"index", "feasible"} <= row.keys()
            and ("loss" in row or "bleu" in row)
            and isinstance(row["index"], int)
        ):
            raise AutomoeError(
                f"{path} line {number} lacks an integer index, feasible, or a loss or BLEU"
            )
        rows.append(row)
    if not rows:
        raise AutomoeError(f"{path.parent} has no evaluations yet ({path.name} missing or empty)")
    return sorted(rows, key=lambda row: row["index"])


def cost_axis(cost: str) -> tuple[str, str, float]:
    """Quantity, axis unit and unit divisor of a cost metric; AutomoeError for an unknown one."""
    if cost not in COST_AXES:
        raise AutomoeError(f"unknown cost {cost!r}; choices: {', '.join(COST_AXES)}")
    return COST_AXES[cost]


def _save(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path, dpi=120)
    return paths


def plot_tradeoff(
    runs: Sequence[RunRecord], out_dir: str | Path, cost: str = "latency_ms"
) -> list[Path]:
    """Quality (loss or BLEU) against `cost` for every evaluated architecture (infeasible ones
    faded), each run's feasible Pareto front as a step line, constraints on `cost` and the
    reference sub-networks. Returns the PNG and SVG paths."""
    quantity, unit, scale = cost_axis(cost)
    metric = common_metric(runs)
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    plotted = 0
    for i, run in enumerate(runs):
        quality, spend, ok = run.column(metric), run.column(cost) / scale, run.feasible
        shown = ~np.isnan(quality) & ~np.isnan(spend)
        plotted += int(shown.sum())
        color = f"C{i}"
        ax.scatter(spend[shown & ok], quality[shown & ok], s=14, color=color, alpha=0.8)
        ax.scatter(spend[shown & ~ok], quality[shown & ~ok], s=14, color=color, alpha=0.15)
        feasible = np.flatnonzero(shown & ok)
        front = feasible[pareto_front(np.column_stack([run.score(), spend])[feasible])]
        front = front[np.argsort(spend[front])]
        ax.step(spend[front], quality[front], where="post", color=color, label=f"{run.label} front")
    if not plotted:
        raise AutomoeError(f"no evaluation has both a {metric} and {cost}; nothing to plot")
    _draw_constraints(ax, runs, cost, scale)
    _draw_references(ax, runs, cost, scale, metric)
    ax.set_xlabel(f"{quantity} ({unit})")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(
        f"{METRIC_LABELS[metric].split()[1].capitalize()} vs {quantity} (faded: infeasible)"
    )
    ax.legend(fontsize="small")
    return _save(fig, out_dir, f"tradeoff_{cost}")


def _draw_constraints(ax: Axes, runs: Sequence[RunRecord], cost: str, scale: float) -> None:
    drawn = {c for run in runs for c in run.constraints if c.metric == cost}
    for k, constraint in enumerate(sorted(drawn, key=str)):
        style = ("--", ":", "-.")[k % 3]
        ax.axvline(constraint.bound / scale, color="black", linestyle=style, label=str(constraint))


def _draw_references(
    ax: Axes, runs: Sequence[RunRecord], cost: str, scale: float, metric: str
) -> None:
    """Labelled markers for the reference sub-networks, each distinct one drawn once."""
    seen: set[tuple[str, float, float]] = set()
    for run in runs:
        for name, metrics in run.references.items():
            loss, spend = _float(metrics.get(metric)), _float(metrics.get(cost)) / scale
            if np.isnan(loss) or np.isnan(spend) or (name, loss, spend) in seen:
                continue
            first = all(name != s[0] for s in seen)
            seen.add((name, loss, spend))
            marker = _MARKERS.get(name, "D")
            label = name if first else None
            ax.scatter([spend], [loss], marker=marker, s=60, color="black", zorder=3, label=label)
            ax.annotate(name, (spend, loss), textcoords="offset points", xytext=(6, 4))


def plot_progress(
    runs: Sequence[RunRecord],
    out_dir: str | Path,
    reference_point: tuple[float, float],
    cost: str = "latency_ms",
) -> list[Path]:
    """Best feasible quality so far and the hypervolume of feasible (quality, `cost`) points
    against `reference_point` (quality as the metric reads, cost in the stored unit) after each
    evaluation. Infeasible and failed evaluations add nothing. Returns the PNG and SVG paths."""
    quantity, unit, scale = cost_axis(cost)
    metric = common_metric(runs)
    ref_quality, ref_cost = reference_point
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    best_ax, volume_ax = fig.subplots(1, 2)
    for i, run in enumerate(runs):
        ok = run.feasible
        score = np.where(ok, run.score(), np.nan)
        points = np.column_stack([score, np.where(ok, run.column(cost) / scale, np.nan)])
        steps = np.arange(1, len(score) + 1)
        curve = hypervolume_curve(points, (minimised(metric, ref_quality), ref_cost / scale))
        best = minimised(metric, best_so_far(score))
        best_ax.plot(steps, best, drawstyle="steps-post", color=f"C{i}")
        volume_ax.plot(steps, curve, drawstyle="steps-post", color=f"C{i}", label=run.label)
    short = metric if metric == "loss" else "BLEU"
    best_ax.set_xlabel("evaluations")
    best_ax.set_ylabel(f"best feasible {METRIC_LABELS[metric]}")
    best_ax.set_title(f"Best feasible {short} so far")
    volume_ax.set_xlabel("evaluations")
    volume_ax.set_ylabel(f"hypervolume ({short} × {unit})")
    volume_ax.set_title(f"Hypervolume of feasible {short} × {quantity}")
    fig.suptitle(
        f"Search progress; hypervolume reference point: {short} {ref_quality:.4g}, "
        f"{quantity} {ref_cost / scale:.4g} {unit}"
    )
    volume_ax.legend(fontsize="small")
    return _save(fig, out_dir, f"progress_{cost}")


def default_reference(runs: Sequence[RunRecord], cost: str) -> tuple[tuple[float, float], str]:
    """The first run's stored reference point, else a margin beyond the worst values seen;
    returned with where it came from, since a hypervolume means nothing without it."""
    quality = common_metric(runs)
    stored = runs[0].search.get("reference_point")
    if isinstance(stored, dict):
        point = (stored.get(quality), stored.get(cost))
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in point):
            return (float(point[0]), float(point[1])), f"from {runs[0].path / SEARCH_FILE}"
    worst = []
    for metric in (quality, cost):
        values = np.concatenate([run.column(metric) for run in runs])
        if np.isnan(values).all():
            raise AutomoeError(f"no evaluation reports {metric}; cannot choose a reference point")
        lowest_is_worst = metric == "bleu"
        worst.append(
            float(np.nanmin(values)) / MARGIN
            if lowest_is_worst
            else float(np.nanmax(values)) * MARGIN
        )
    if quality == "bleu":
        return (worst[0], worst[1]), f"the lowest BLEU / {MARGIN} and {MARGIN} x the largest {cost}"
    return (worst[0], worst[1]), f"{MARGIN} x the largest loss and {cost} evaluated"
