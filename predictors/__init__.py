"""Cost predictors over architectures (installed as `automoe.predictors`).

A search asks "how slow is this candidate?" thousands of times; measuring is too slow, so a
regressor fitted on a measured table answers instead:

    features = ArchFeatures.from_space(space)
    predictor = CostPredictor().fit_archs(archs, latencies_ms, features)
    predictor.predict_archs(candidates)   # 10,000 candidates: well under a second

or from a CSV: `python -m automoe.predictors fit --data lat.csv --out lat.model`, then
`CostPredictor.load("lat.model").check_fits(space, precision="fp32")`, which refuses a
predictor fitted on another search space or on latencies measured in another number format.
A new regressor is one entry in `MODELS` (and its types in `TRUSTED_TYPES`, the only ones a
saved predictor may hold).
"""

from automoe.predictors.data import NON_FEATURE_COLUMNS, NON_FEATURE_SUFFIXES, Table, read_table
from automoe.predictors.errors import PredictorError
from automoe.predictors.features import (
    DECODER_LAYER_COLUMNS,
    ENCODER_LAYER_COLUMNS,
    FEATURES_VERSION,
    SUMMARY_COLUMNS,
    ArchFeatures,
    feature_columns,
)
from automoe.predictors.models import AUTO, MODELS, ModelSpec, build_model
from automoe.predictors.predictor import CostPredictor

__all__ = [
    "AUTO",
    "DECODER_LAYER_COLUMNS",
    "ENCODER_LAYER_COLUMNS",
    "FEATURES_VERSION",
    "MODELS",
    "NON_FEATURE_COLUMNS",
    "NON_FEATURE_SUFFIXES",
    "SUMMARY_COLUMNS",
    "ArchFeatures",
    "CostPredictor",
    "ModelSpec",
    "PredictorError",
    "Table",
    "build_model",
    "feature_columns",
    "read_table",
]
