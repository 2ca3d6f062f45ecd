"""argparse types that refuse impossible numbers when the command line is parsed.

A zero or negative count, step or size would otherwise run on and fail later (a division by
zero after the first step) or silently do nothing; argparse turns the ValueError raised here
into one usage line naming the option.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _checked(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _checked(int, lambda v: v > 0, "a whole number above 0")
nonnegative_int = _checked(int, lambda v: v >= 0, "a whole number of 0 or more")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a number above 0")
nonnegative_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a number of 0 or more")
probability = _checked(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
positive_float_or_inf = _checked(float, lambda v: v > 0, "a number above 0 (or inf)")
