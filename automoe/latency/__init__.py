"""Measured latency: the papers' timing protocol, latency datasets for the predictors, and the
`python -m automoe.latency` command."""

from automoe.latency.measure import (
    LatencyInputs,
    LatencyResult,
    LatencySettings,
    latency_inputs,
    measure_latency,
    reference_inputs,
    trimmed_mean,
)

__all__ = [
    "LatencyInputs",
    "LatencyResult",
    "LatencySettings",
    "latency_inputs",
    "measure_latency",
    "reference_inputs",
    "trimmed_mean",
]
