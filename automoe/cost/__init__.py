"""Analytical cost of a sub-network (FLOPs, parameters) and the machine a cost was measured on.

Measured latency is a stage of its own: `automoe.latency`."""

from automoe.cost.flops import (
    ExpertFractions,
    ExpertFractionsError,
    FlopsReport,
    ParamsReport,
    count_flops,
    count_params,
    routing_fractions,
)
from automoe.cost.machine import machine_info

__all__ = [
    "ExpertFractions",
    "ExpertFractionsError",
    "FlopsReport",
    "ParamsReport",
    "count_flops",
    "count_params",
    "machine_info",
    "routing_fractions",
]
