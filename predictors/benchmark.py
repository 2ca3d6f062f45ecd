"""Compare registered models on one cost table: seeded k-fold accuracy, ranking and speed.

Search uses a predictor to rank candidates under a budget, so besides RMSE and MAPE the table
has Kendall's tau (rank agreement of predicted and measured cost), and the time to fit and to
predict 1,000 architectures. Out-of-fold predictions and a learning curve (CV MAPE against
training-set size) come with it for the plots in `automoe.predictors.plots`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from sklearn.metrics import (
    mean_absolute_percentage_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import learning_curve
from threadpoolctl import threadpool_info

from automoe.predictors.data import Table
from automoe.predictors.models import build_model, check_model_names, convergence_in_one_line
from automoe.predictors.persist import file_sha256, library_versions
from automoe.predictors.validation import kfold

METRICS = ("rmse", "mape_pct", "kendall_tau", "r2", "fit_s", "predict_ms_per_1000")
CURVE_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
MIN_CURVE_ROWS = 5  # fewer rows than this say nothing about a model, and some cannot fit


@dataclass
class Benchmark:
    """The JSON-ready report and, per model, out-of-fold predictions in row order."""

    report: dict[str, Any]
    out_of_fold: dict[str, np.ndarray]
    measured: np.ndarray


def run_benchmark(table: Table, names: list[str], folds: int, seed: int) -> Benchmark:
    """Score every model in `names` on the same seeded folds of `table`."""
    check_model_names(names)
    assert table.y is not None, "benchmark tables are read with their target"
    splitter = kfold(len(table.y), folds, seed, str(table.path))
    models: dict[str, Any] = {}
    out_of_fold = {}
    with convergence_in_one_line():
        for name in names:
            models[name], out_of_fold[name] = _cross_validate(
                name, table.X, table.y, splitter, seed
            )
            models[name]["learning_curve"] = _learning_curve(name, table.X, table.y, splitter, seed)
    best = min(names, key=lambda name: models[name]["mape_pct"])
    report = {
        "data": {
            "path": str(table.path),
            "sha256": file_sha256(table.path),
            "rows": len(table.y),
            "features": len(table.columns),
            "target": table.target,
        },
        "folds": folds,
        "seed": seed,
        "best": best,
        "models": models,
        "versions": library_versions(),
        "threads": {
            f"{pool['user_api']}:{pool['internal_api']}": pool["num_threads"]
            for pool in threadpool_info()
        },
    }
    return Benchmark(report, out_of_fold, table.y)


def _cross_validate(
    name: str, X: np.ndarray, y: np.ndarray, splitter: Any, seed: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Mean and std over folds of every metric, and the out-of-fold predictions."""
    per_fold: dict[str, list[float]] = {metric: [] for metric in METRICS}
    predicted = np.empty_like(y)
    sample = X[np.random.default_rng(seed).integers(0, len(X), 1000)]
    for train, test in splitter.split(X):
        model = build_model(name, seed)
        start = time.perf_counter()
        model.fit(X[train], y[train])
        per_fold["fit_s"].append(time.perf_counter() - start)
        predicted[test] = model.predict(X[test])
        per_fold["predict_ms_per_1000"].append(_predict_ms(model, sample))
        per_fold["rmse"].append(root_mean_squared_error(y[test], predicted[test]))
        per_fold["mape_pct"].append(100 * mean_absolute_percentage_error(y[test], predicted[test]))
        per_fold["kendall_tau"].append(kendalltau(y[test], predicted[test]).statistic)
        per_fold["r2"].append(r2_score(y[test], predicted[test]))
    scores: dict[str, Any] = {}
    for metric, values in per_fold.items():
        scores[metric] = _number(np.mean(values))
        scores[f"{metric}_std"] = _number(np.std(values))
    return scores, predicted


def _predict_ms(model: Any, sample: np.ndarray, repeats: int = 3) -> float:
    """Best-of-`repeats` milliseconds to predict the 1,000-row `sample` (best: least noise)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(sample)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def _learning_curve(
    name: str, X: np.ndarray, y: np.ndarray, splitter: Any, seed: int
) -> dict[str, list[Any]]:
    """CV MAPE at growing fractions of each training split (absolute sizes, no tiny ones)."""
    largest = min(len(train) for train, _ in splitter.split(X))
    smallest = min(MIN_CURVE_ROWS, largest)
    wanted = sorted({max(smallest, round(f * largest)) for f in CURVE_FRACTIONS})
    sizes, _, test = learning_curve(
        build_model(name, seed),
        X,
        y,
        train_sizes=wanted,
        cv=splitter,
        scoring="neg_mean_absolute_percentage_error",
    )
    mape = -100 * test
    return {
        "train_sizes": [int(s) for s in sizes],
        "mape_pct": [_number(v) for v in mape.mean(axis=1)],
        "mape_pct_std": [_number(v) for v in mape.std(axis=1)],
    }


def _number(value: float) -> float | None:
    """A JSON-safe float: NaN (e.g. tau of constant predictions) becomes null."""
    return None if math.isnan(value) else float(value)


def markdown(report: dict[str, Any]) -> str:
    """The benchmark as a Markdown page: what was measured, then one row per model."""
    data = report["data"]
    lines = [
        f"# Cost predictor benchmark: {data['target']}",
        "",
        f"- data: `{data['path']}` ({data['rows']} rows, {data['features']} features, "
        f"sha256 {data['sha256'][:12]})",
        f"- {report['folds']}-fold cross-validation, shuffled with seed {report['seed']}; "
        "mean +- std over folds",
        f"- scikit-learn {report['versions']['sklearn']}, numpy {report['versions']['numpy']}, "
        f"Python {report['versions']['python']}; threads {report['threads']}",
        f"- best (lowest MAPE): **{report['best']}**",
        "",
        table_text(report),
    ]
    return "\n".join(lines) + "\n"


def table_text(report: dict[str, Any]) -> str:
    """The per-model Markdown table (also what the CLI prints)."""
    header = "| model | RMSE | MAPE (%) | Kendall tau | R2 | fit (s) | predict (ms / 1,000 rows) |"
    rows = [header, "|---|---|---|---|---|---|---|"]
    for name, scores in report["models"].items():
        cells = [f"**{name}**" if name == report["best"] else name]
        for metric, digits in zip(METRICS, (3, 2, 3, 3, 3, 2), strict=True):
            mean, std = scores[metric], scores[f"{metric}_std"]
            cells.append("n/a" if mean is None else f"{mean:.{digits}f} +- {std:.{digits}f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
