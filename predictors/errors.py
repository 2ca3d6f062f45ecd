"""The one error type of cost predictors."""

from __future__ import annotations

from automoe.errors import AutomoeError


class PredictorError(AutomoeError, ValueError):
    """Bad input to a predictor: an AutomoeError for the CLI, a ValueError for scikit-learn."""
