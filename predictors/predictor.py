"""`CostPredictor`: a scikit-learn regressor of an architecture's cost (e.g. latency in ms).

It wraps one registered model (`automoe.predictors.models.MODELS`), chosen by cross-validated
MAPE when `model="auto"`, remembers the feature columns, the search space and the number format
of the latencies it was fitted on (`automoe.predictors.scope`), and saves to a file whose JSON
manifest is enough to refit it when the stored model no longer loads. It knows architectures
only through `ArchFeatures`, never a search strategy or the SuperNet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from automoe.predictors.data import (
    align,
    column_difference,
    read_sidecar,
    read_table,
    recorded_precision,
)
from automoe.predictors.errors import PredictorError
from automoe.predictors.features import FEATURES_VERSION, ArchFeatures, columns_hash
from automoe.predictors.models import AUTO, MODELS, build_model, convergence_in_one_line
from automoe.predictors.persist import (
    REFIT_COMMAND,
    ModelUnreadable,
    file_sha256,
    library_versions,
    read_manifest,
    read_model,
    write_bundle,
)
from automoe.predictors.scope import (
    check_precision,
    check_serves,
    recorded_space,
    space_record,
    table_space,
)
from automoe.predictors.validation import choose_model
from automoe.space import ArchConfig, SearchSpace

log = logging.getLogger(__name__)


class CostPredictor(RegressorMixin, BaseEstimator):
    """Predicts a cost column from numeric features.

    Parameters: `model` is a name in `MODELS` or "auto" (lowest `cv`-fold MAPE on the
    training data); `target` names the cost (the CSV column and the prediction column);
    `cv` folds score the candidates (None skips scoring, allowed for a named model only);
    `random_state` seeds folds and models.

    Fitted attributes: `estimator_` (the fitted regressor), `model_` (its name),
    `cv_results_` (name -> MAPE %/RMSE scores, or None), `n_features_in_`,
    `feature_names_in_` (when fitted with column names), `features_` (the `ArchFeatures`
    when the columns are architecture features, so `predict_archs` works), `space_` (the
    `SearchSpace` of the training architectures, or None when not known), `precision_` (the
    number format its latencies were measured in: fp32, bf16 or fp16; fp32 unless the training
    table's sidecar or `fit_archs` says otherwise, and for predictors saved before it was
    recorded), and `training_data_` (CSV path, sha256, rows and dropped columns, when fitted
    by `fit_csv`).
    """

    def __init__(
        self,
        model: str = AUTO,
        target: str = "latency_ms",
        cv: int | None = 5,
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.target = target
        self.cv = cv
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any) -> CostPredictor:
        """Fit on a numeric matrix; a DataFrame-like `X` also fixes the feature names."""
        return self._fit(*_matrix_and_target(X, y), _column_names(X), "the training data")

    def fit_archs(
        self,
        archs: Sequence[ArchConfig],
        y: Any,
        features: ArchFeatures,
        space: SearchSpace | None = None,
        precision: str = "fp32",
    ) -> CostPredictor:
        """Fit on architectures featurised by `features` (kept for `predict_archs`), drawn
        from `space` if given (recorded, so a search over another space refuses it), their
        costs measured in `precision` (recorded, so a search in another refuses it)."""
        if space is not None:
            for arch in archs:
                space.validate(arch)
            if features != ArchFeatures.from_space(space):
                raise PredictorError(
                    f"features {features} are not those of space {space.name!r}; use "
                    "ArchFeatures.from_space(space)"
                )
        X, y = _matrix_and_target(features.transform(archs), y)
        return self._fit(
            X, y, features.columns, "the architectures", space=space, precision=precision
        )

    def fit_csv(
        self, path: str | Path, drop: Sequence[str] = (), space: SearchSpace | None = None
    ) -> CostPredictor:
        """Fit on a cost CSV (feature rule: `automoe.predictors.data`), recording its sha256
        so a saved predictor can be refitted from it, the search space its architectures
        come from: the one in its sidecar (`automoe.predictors.scope`), else `space`, and the
        number format its latencies were measured in (the sidecar's, else fp32)."""
        table = read_table(path, self.target, drop)
        measured = table_space(table.path, table.columns, space)
        precision = recorded_precision(read_sidecar(table.path))
        source = {
            "path": str(table.path.resolve()),
            "sha256": file_sha256(table.path),
            "rows": len(table.X),
            "drop": list(drop),
        }
        return self._fit(
            table.X,
            table.y,
            table.columns,
            str(path),
            source,
            space=measured,
            precision=precision,
        )

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        names: list[str] | None,
        source: str,
        training_data: dict[str, Any] | None = None,
        choice: tuple[str, dict[str, Any] | None] | None = None,
        space: SearchSpace | None = None,
        precision: str = "fp32",
    ) -> CostPredictor:
        """Fit the chosen model on all rows; `choice` (name, CV table) skips the choice."""
        self._check_params()
        if choice is None and self.cv is None:
            choice = (self.model, None)
        if choice is None:
            zeros = np.flatnonzero(y == 0)
            if zeros.size:
                raise PredictorError(
                    f"{source}: the {self.target} target is 0 in row {zeros[0]}; cross-validation "
                    "scores relative errors (MAPE), which need non-zero costs"
                )
        with convergence_in_one_line():
            if choice is None:
                candidates = list(MODELS) if self.model == AUTO else [self.model]
                choice = choose_model(candidates, X, y, self.cv, self.random_state, source)
            self.model_, self.cv_results_ = choice
            self.estimator_ = build_model(self.model_, self.random_state).fit(X, y)
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.features_ = ArchFeatures.from_columns(names) if names is not None else None
        self.space_ = space
        self.precision_ = precision
        self.training_data_ = training_data
        return self

    def _check_params(self) -> None:
        if self.model != AUTO and self.model not in MODELS:
            raise PredictorError(
                f"unknown model {self.model!r}; choose from {', '.join(MODELS)} or {AUTO!r}"
            )
        if self.cv is None and self.model == AUTO:
            raise PredictorError("model='auto' chooses by cross-validation: cv cannot be None")
        if not isinstance(self.target, str) or not self.target:
            raise PredictorError(f"target must be a column name, got {self.target!r}")
        seed = self.random_state
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            # an int (or None) is what the manifest can record and a refit can reuse
            raise PredictorError(f"random_state must be an integer or None, got {seed!r}")

    # ------------------------------------------------------------------ predicting

    def predict(self, X: Any) -> np.ndarray:
        """Predicted costs; DataFrame-like columns are matched to the fitted ones by name."""
        check_is_fitted(self, "estimator_")
        names = _column_names(X)
        matrix = _matrix(X)
        if names is not None and hasattr(self, "feature_names_in_"):
            fitted = list(self.feature_names_in_)
            difference = column_difference(sorted(names), sorted(fitted))
            if difference:
                raise PredictorError(f"X does not have the fitted feature columns: {difference}")
            matrix = matrix[:, [names.index(name) for name in fitted]]
        if matrix.shape[1] != self.n_features_in_:
            raise PredictorError(
                f"X has {matrix.shape[1]} features, but CostPredictor is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self.estimator_.predict(matrix)

    def predict_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted costs of architectures, for a predictor fitted on `ArchFeatures` columns."""
        check_is_fitted(self, "estimator_")
        if self.features_ is None:
            raise PredictorError(
                "this predictor was not fitted on architecture features (ArchFeatures "
                "columns), so it cannot featurise architectures; use predict on its own columns"
            )
        return self.estimator_.predict(self.features_.transform(archs))

    def predict_csv(self, path: str | Path, drop: Sequence[str] = ()) -> np.ndarray:
        """Predicted costs of every row of a CSV, in file order (the target may be absent)."""
        check_is_fitted(self, "estimator_")
        if not hasattr(self, "feature_names_in_"):
            raise PredictorError("this predictor was fitted without column names; use predict")
        recorded = (self.training_data_ or {}).get("drop", [])
        table = read_table(path, self.target, drop, need_target=False, also_drop=recorded)
        return self.estimator_.predict(align(table, list(self.feature_names_in_)))

    def check_fits(
        self,
        space: SearchSpace,
        name: str = "this predictor",
        *,
        precision: str = "fp32",
        allow_other_precision: bool = False,
    ) -> None:
        """Refuse to answer a search over `space` in `precision` unless fitted on all its
        architectures, timed in that precision (the rules: `automoe.predictors.scope`);
        `allow_other_precision` turns the latter into a warning. `name` (e.g. its file) goes
        in the message."""
        check_is_fitted(self, "estimator_")
        check_serves(self.space_, self.features_, space, name)
        check_precision(self.precision_, precision, name, allow_other_precision)

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> None:
        """Write the fitted predictor and its manifest (see `automoe.predictors.persist`)."""
        check_is_fitted(self, "estimator_")
        columns = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        manifest = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "params": self.get_params(),
            "model": self.model_,
            "cv_scores": self.cv_results_,
            "features": {
                "columns": columns,
                "n_features": self.n_features_in_,
                "columns_hash": columns_hash(columns) if columns is not None else None,
                "arch_features": None
                if self.features_ is None
                else {
                    "version": FEATURES_VERSION,
                    "schema": self.features_.schema,
                    "max_encoder_layers": self.features_.max_encoder_layers,
                    "max_decoder_layers": self.features_.max_decoder_layers,
                },
            },
            "space": None if self.space_ is None else space_record(self.space_),
            "precision": self.precision_,
            "target": self.target,
            "training_data": self.training_data_,
            "versions": library_versions(),
        }
        write_bundle(Path(path), manifest, self.estimator_)

    @classmethod
    def load(
        cls,
        path: str | Path,
        expected_columns: Sequence[str] | None = None,
        data: str | Path | None = None,
    ) -> CostPredictor:
        """A saved predictor, refitted from its training CSV if its model cannot be used here
        (a format-1 pickle, another scikit-learn version); one naming an untrusted type is
        refused (`automoe.predictors.persist`).

        `expected_columns`: the feature columns the caller will pass (e.g.
        `ArchFeatures.from_space(space).columns`); a predictor fitted on others is refused
        with the difference. `data`: where the training CSV is now, if it moved.
        """
        path = Path(path)
        manifest = read_manifest(path)
        columns = manifest["features"]["columns"]
        if expected_columns is not None:
            _check_schema(path, columns, list(expected_columns))
        arch = manifest["features"]["arch_features"]
        if arch is not None and arch["version"] != FEATURES_VERSION:
            raise PredictorError(
                f"{path} uses architecture features version {arch['version']}; this automoe "
                f"computes version {FEATURES_VERSION}: refit it on a freshly measured dataset"
            )
        predictor = cls(**manifest["params"])
        try:
            estimator = read_model(path, manifest["versions"]["sklearn"])
        except ModelUnreadable as err:
            return predictor._refit(path, manifest, data, err)
        predictor.estimator_ = estimator
        predictor.model_ = manifest["model"]
        predictor.cv_results_ = manifest["cv_scores"]
        predictor.n_features_in_ = manifest["features"]["n_features"]
        if columns is not None:
            predictor.feature_names_in_ = np.asarray(columns, dtype=object)
        predictor.features_ = ArchFeatures.from_columns(columns) if columns is not None else None
        predictor.space_ = recorded_space(manifest["space"], f"{path} (manifest)")
        predictor.precision_ = manifest["precision"]
        predictor.training_data_ = manifest["training_data"]
        return predictor

    def _refit(
        self, path: Path, manifest: dict[str, Any], data: str | Path | None, err: ModelUnreadable
    ) -> CostPredictor:
        """Rebuild the saved model from its training CSV, after checking it is the same file."""
        problem = f"cannot load the model in {path} ({err})"
        fit_new = f"fit a new one with `{REFIT_COMMAND} {path}`"
        source = manifest["training_data"]
        if source is None:
            raise PredictorError(
                f"{problem}, and it records no training CSV to refit from: "
                f"{_either(err.remedy, fit_new)}"
            )
        csv = Path(data) if data is not None else Path(source["path"])
        if not csv.is_file():
            restore = "restore it (or pass its new location: data=/--train-data)"
            raise PredictorError(
                f"{problem}, and its training data {csv} is not there to refit from: "
                f"{_either(restore, err.remedy, fit_new)}"
            )
        if file_sha256(csv) != source["sha256"]:
            raise PredictorError(
                f"{problem}, and its training data {csv} has changed since (sha256 differs), so "
                f"a refit would be another model: "
                f"{_either('restore the original file', err.remedy, fit_new)}"
            )
        table = read_table(csv, self.target, source["drop"])
        difference = column_difference(table.columns, manifest["features"]["columns"])
        if difference:
            raise PredictorError(f"{problem}; its training data {csv} reads as {difference}")
        space = recorded_space(manifest["space"], f"{path} (manifest)")
        self._fit(
            table.X,
            table.y,
            table.columns,
            str(csv),
            source,
            choice=(manifest["model"], manifest["cv_scores"]),
            space=space or table_space(csv, table.columns, None),
            precision=manifest["precision"],
        )
        log.warning(
            "%s: refitted the %s model from %s (%s); save it again to skip this next time",
            path,
            self.model_,
            csv,
            err,
        )
        return self


def _either(*options: str | None) -> str:
    """'a, b or c' of the options given (None ones left out)."""
    given = [option for option in options if option]
    return ", ".join(given[:-1]) + f" or {given[-1]}" if len(given) > 1 else given[0]


def _check_schema(path: Path, columns: list[str] | None, expected: list[str]) -> None:
    if columns is None:
        raise PredictorError(
            f"{path} was fitted without feature names, so its columns cannot be checked "
            "against the expected ones: refit it on a CSV or DataFrame"
        )
    difference = column_difference(columns, expected)
    if difference:
        raise PredictorError(
            f"{path} was fitted on other features than expected (its schema "
            f"{columns_hash(columns)}, {len(columns)} columns; expected {columns_hash(expected)}, "
            f"{len(expected)} columns): {difference}; refit it on data with the expected columns"
        )


def _column_names(X: Any) -> list[str] | None:
    """Column names of a DataFrame-like `X` (all strings), else None, as scikit-learn does."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    return names if names and all(isinstance(n, str) for n in names) else None


def _matrix(X: Any) -> np.ndarray:
    """`X` as a float matrix: scikit-learn's checks (sparse, complex, empty, 1-D), then ours."""
    try:
        matrix = check_array(X, dtype=np.float64, ensure_all_finite=False)
    except ValueError as err:  # a TypeError (sparse input, objects in cells) is a coding bug
        raise PredictorError(str(err)) from None
    _check_finite("X", matrix)
    return matrix


def _matrix_and_target(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        X, y = check_X_y(X, y, dtype=np.float64, ensure_all_finite=False, y_numeric=True)
    except ValueError as err:
        raise PredictorError(str(err)) from None
    _check_finite("X", X)
    _check_finite("y", y)
    return X, y


def _check_finite(name: str, values: np.ndarray) -> None:
    """Refuse NaN and infinity, naming the first bad cell (scikit-learn names none)."""
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        where = ", column ".join(str(i) for i in bad[0])
        raise PredictorError(f"{name} has a missing or infinite value (NaN or inf) in row {where}")
