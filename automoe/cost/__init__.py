"""Cost of a sub-network: analytical FLOPs and parameters, measured latency."""

from automoe.cost.flops import (
    ExpertFractions,
    ExpertFractionsError,
    FlopsReport,
    ParamsReport,
    count_flops,
    count_params,
    routing_fractions,
)
from automoe.cost.latency import (
    LatencyInputs,
    LatencyResult,
    LatencySettings,
    latency_inputs,
    measure_latency,
    reference_inputs,
    trimmed_mean,
)
from automoe.cost.machine import machine_info

__all__ = [
    "ExpertFractions",
    "ExpertFractionsError",
    "FlopsReport",
    "LatencyInputs",
    "LatencyResult",
    "LatencySettings",
    "ParamsReport",
    "count_flops",
    "count_params",
    "latency_inputs",
    "machine_info",
    "measure_latency",
    "reference_inputs",
    "routing_fractions",
    "trimmed_mean",
]
