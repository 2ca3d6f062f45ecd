"""The benchmark's two figures, drawn with matplotlib's object API (no pyplot, no display).

`Figure` renders through the Agg canvas by default, so plotting works on a headless machine
and never changes the global backend of a program that imports this module.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from automoe.predictors.benchmark import Benchmark


def scatter(result: Benchmark, path: Path) -> None:
    """Out-of-fold predicted vs measured cost, one panel per model, y = x for reference."""
    models = result.report["models"]
    target = result.report["data"]["target"]
    columns = min(3, len(models))
    rows = math.ceil(len(models) / columns)
    fig = Figure(figsize=(4 * columns, 4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    measured = result.measured
    low, high = float(measured.min()), float(measured.max())
    for ax, (name, scores) in zip(axes, models.items(), strict=False):
        ax.scatter(measured, result.out_of_fold[name], s=8, alpha=0.6)
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        best = " (best)" if name == result.report["best"] else ""
        ax.set_title(f"{name}{best}: MAPE {scores['mape_pct']:.2f}%")
        ax.set_xlabel(f"measured {target}")
        ax.set_ylabel(f"predicted {target} (out of fold)")
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=100)


def learning_curves(result: Benchmark, path: Path) -> None:
    """CV MAPE against training-set size, one line per model (error bars: std over folds)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, scores in result.report["models"].items():
        curve = scores["learning_curve"]
        mape, std = (np.array(curve[key], dtype=float) for key in ("mape_pct", "mape_pct_std"))
        ax.errorbar(curve["train_sizes"], mape, yerr=std, label=name)  # null (failed fit): gap
    ax.set_xlabel("training rows")
    ax.set_ylabel("CV MAPE (%)")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 3, 6, 10 rather than 6x10^0
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_title(f"Learning curves ({result.report['folds']}-fold CV)")
    ax.legend()
    fig.savefig(path, dpi=100)
