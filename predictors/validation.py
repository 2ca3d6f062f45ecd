"""Seeded k-fold cross-validation of registered models, and the choice of the best one.

Models are compared by MAPE because latency budgets are relative: a 1 ms error matters on a
5 ms model and not on a 500 ms one. Folds are shuffled with the seed, so the same data and
seed always give the same table and the same choice.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.model_selection import KFold, cross_validate

from automoe.predictors.errors import PredictorError
from automoe.predictors.models import build_model


def kfold(n_rows: int, folds: int, seed: int, source: str = "the data") -> KFold:
    """Shuffled folds, refusing fewer rows than folds with a message naming `source`."""
    if isinstance(folds, bool) or not isinstance(folds, Integral) or folds < 2:
        raise PredictorError(
            f"cross-validation needs an integer number of folds >= 2, got {folds!r}"
        )
    if n_rows < folds:
        raise PredictorError(
            f"{source} has {n_rows} row(s), fewer than the {folds} cross-validation folds; "
            "add rows (measure more architectures) or use fewer folds (--cv/--folds)"
        )
    return KFold(n_splits=int(folds), shuffle=True, random_state=seed)


def cv_scores(
    name: str, X: np.ndarray, y: np.ndarray, folds: int, seed: int, source: str = "the data"
) -> dict[str, float]:
    """Mean and spread over folds of MAPE (%) and RMSE of model `name`."""
    result = cross_validate(
        build_model(name, seed),
        X,
        y,
        cv=kfold(len(y), folds, seed, source),
        scoring=("neg_mean_absolute_percentage_error", "neg_root_mean_squared_error"),
    )
    mape = -100 * result["test_neg_mean_absolute_percentage_error"]
    rmse = -result["test_neg_root_mean_squared_error"]
    return {
        "mape_pct": float(mape.mean()),
        "mape_pct_std": float(mape.std()),
        "rmse": float(rmse.mean()),
        "rmse_std": float(rmse.std()),
    }


def choose_model(
    names: list[str],
    X: np.ndarray,
    y: np.ndarray,
    folds: int,
    seed: int,
    source: str = "the data",
) -> tuple[str, dict[str, dict[str, float]]]:
    """The name with the lowest CV MAPE (the first listed on a tie), and every model's scores."""
    table = {name: cv_scores(name, X, y, folds, seed, source) for name in names}
    best = min(names, key=lambda name: table[name]["mape_pct"])
    return best, table
