"""`Result`: one told evaluation, and the JSON helpers every strategy's saved state shares."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

from automoe.errors import AutomoeError
from automoe.space import ArchConfig


@dataclass(frozen=True)
class Result:
    """What a strategy was told about one architecture.

    `values` holds one float per objective (all minimised) or is None when the evaluation
    failed. `violations` follows Optuna's convention: the arch is feasible when every entry is
    <= 0; None means no constraint was reported.
    """

    arch: ArchConfig
    values: tuple[float, ...] | None
    violations: tuple[float, ...] | None = None

    @property
    def failed(self) -> bool:
        return self.values is None

    @property
    def violation(self) -> float:
        """Total positive violation: how far outside the constraints, 0 when inside."""
        return sum(max(v, 0.0) for v in self.violations or ())

    @property
    def feasible(self) -> bool:
        """Evaluated and within every constraint."""
        return not self.failed and self.violation == 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "values": None if self.values is None else list(self.values),
            "violations": None if self.violations is None else list(self.violations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        values, violations = data["values"], data["violations"]
        return cls(
            ArchConfig.from_dict(data["arch"]),
            None if values is None else tuple(float(v) for v in values),
            None if violations is None else tuple(float(v) for v in violations),
        )


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise AutomoeError(f"{what} must be a number, got {value!r}")
    return float(value)


def parse_values(entry: Any, objectives: int) -> tuple[float, ...] | None:
    """One told entry as a tuple of `objectives` floats, or None for a failed evaluation
    (None, NaN, or a tuple holding either)."""
    if entry is None:
        return None
    if isinstance(entry, Real) and not isinstance(entry, bool) and objectives == 1:
        entry = (entry,)
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
        raise AutomoeError(
            f"objective values must be a sequence of {objectives} number(s), got {entry!r}"
        )
    if len(entry) != objectives:
        raise AutomoeError(
            f"expected {objectives} objective value(s) per architecture, got {list(entry)!r}"
        )
    if any(v is None for v in entry):
        return None
    values = tuple(_number("an objective value", v) for v in entry)
    return None if any(math.isnan(v) for v in values) else values


def parse_violations(entry: Any) -> tuple[float, ...] | None:
    """One told constraint entry as a tuple of floats (feasible when all <= 0), or None."""
    if entry is None:
        return None
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
        raise AutomoeError(f"constraint violations must be a sequence of numbers, got {entry!r}")
    out = tuple(_number("a constraint violation", v) for v in entry)
    if any(math.isnan(v) for v in out):
        raise AutomoeError(f"constraint violations must not be NaN, got {list(entry)!r}")
    return out


def rng_to_json(rng: random.Random) -> list[Any]:
    """`random.Random` state as plain lists, so a saved strategy stays JSON."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(data: Sequence[Any]) -> random.Random:
    version, internal, gauss = data
    rng = random.Random()
    rng.setstate((version, tuple(internal), gauss))
    return rng
