"""Cost constraints such as `latency_ms<=80` or `flops<=2e9`, with one sign convention.

A violation is positive when the constraint is broken and <= 0 when it holds (Optuna's
convention), so strategies and result files share one reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from automoe.errors import AutomoeError

COST_METRICS = ("latency_ms", "flops", "params")
_PATTERN = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _PATTERN.match(text)
        if match is None:
            raise AutomoeError(
                f"cannot read constraint {text!r}; write METRIC<=BOUND or METRIC>=BOUND, "
                "e.g. latency_ms<=80 or flops<=2e9"
            )
        metric, op, bound = match.groups()
        if metric not in COST_METRICS:
            raise AutomoeError(
                f"constraint {text!r}: unknown metric {metric!r}; choices: {list(COST_METRICS)}"
            )
        try:
            value = float(bound)
        except ValueError:
            raise AutomoeError(f"constraint {text!r}: {bound!r} is not a number") from None
        return cls(metric, op, value)

    def violation(self, value: float) -> float:
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "bound": self.bound}
