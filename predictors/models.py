"""The regressors a cost predictor can use, by name: adding a model is one `MODELS` entry.

Every factory takes a seed, so a fit (and the cross-validated choice among models) is
reproducible. Sizes are chosen for tables of hundreds to a few thousand measured
architectures: a fit takes seconds on 2 cores and predicting 10,000 rows milliseconds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

from automoe.predictors.errors import PredictorError

AUTO = "auto"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named regressor, and what it is for (shown in `--help`)."""

    build: Callable[[int], BaseEstimator]
    summary: str


def _linear(seed: int) -> BaseEstimator:
    del seed  # deterministic without one
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15)))


def _gbm(seed: int) -> BaseEstimator:
    # Not HistGradientBoosting: its OpenMP threads crawl on a busy machine, and binning buys
    # nothing at a few thousand rows.
    return GradientBoostingRegressor(
        n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=seed
    )


def _forest(seed: int) -> BaseEstimator:
    return RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed)


def _extra_trees(seed: int) -> BaseEstimator:
    return ExtraTreesRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed)


def _mlp(seed: int) -> BaseEstimator:
    network = MLPRegressor(
        hidden_layer_sizes=(64, 64),
        solver="lbfgs",  # full-batch: converges reliably on small tables, no learning rate
        alpha=1.0,  # strong at hundreds of rows, fading as rows grow (scaled by 1/n)
        max_iter=2000,
        random_state=seed,
    )
    return TransformedTargetRegressor(
        regressor=make_pipeline(StandardScaler(), network), transformer=StandardScaler()
    )


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(_linear, "standardised ridge regression (baseline)"),
    "gbm": ModelSpec(_gbm, "gradient boosting, 300 depth-3 trees"),
    "forest": ModelSpec(_forest, "random forest, 100 trees"),
    "extra_trees": ModelSpec(_extra_trees, "extremely randomised trees, 100 trees"),
    "mlp": ModelSpec(_mlp, "2x64 ReLU MLP on standardised features and target (HAT-like)"),
}


def _type_name(cls: type) -> str:
    """A type's name as skops writes and trusts it."""
    return f"{cls.__module__}.{cls.__name__}"


# Every type a fitted `MODELS` regressor is made of (their pipelines, scalers, target
# transformer, trees, the boosting's initial estimator and loss): the only types, besides
# skops's own safe set, that loading a saved predictor builds. A new model adds its types here;
# until it does, its save/load round-trip test fails with the missing type's name.
TRUSTED_TYPES: tuple[str, ...] = (
    *map(
        _type_name,
        (
            Pipeline,
            StandardScaler,
            RidgeCV,
            TransformedTargetRegressor,
            MLPRegressor,
            GradientBoostingRegressor,
            DummyRegressor,
            DecisionTreeRegressor,
            RandomForestRegressor,
            ExtraTreesRegressor,
            ExtraTreeRegressor,
            np.random.RandomState,
        ),
    ),
    # scikit-learn internals of fitted trees and of the boosting loss (no public import)
    "sklearn.tree._tree.Tree",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
)


def check_model_names(names: list[str]) -> list[str]:
    """`names` if every one is registered; otherwise one error listing the known names."""
    if not names:
        raise PredictorError(f"no model named; choose from {', '.join(MODELS)}")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise PredictorError(
            f"unknown model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(MODELS)}"
        )
    return names


def build_model(name: str, seed: int) -> BaseEstimator:
    """A fresh, unfitted regressor registered as `name`."""
    check_model_names([name])
    return MODELS[name].build(seed)


@contextmanager
def convergence_in_one_line() -> Iterator[None]:
    """Fit models inside; scikit-learn's ConvergenceWarnings come out as one logged line.

    scikit-learn warns once per fit, in seven lines, so a cross-validated choice among models
    floods the terminal; the count and the first warning's gist say as much. Other warnings
    pass through unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    stopped = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if stopped:
        gist = str(stopped[0].message).splitlines()[0].rstrip(":")
        log.warning(
            "%d model fit(s) stopped at their iteration limit before converging "
            "(scikit-learn: %s); they are scored and used as they are",
            len(stopped),
            gist,
        )
