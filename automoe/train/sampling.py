"""Which sub-networks a SuperNet training step trains, derived from the seed and the step.

Deriving the choice from (seed, step) rather than from a running generator makes every
process agree without communication and makes a resumed run pick the same networks.
"""

from __future__ import annotations

import random

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace

SAMPLING_RULES = ("uniform", "sandwich")


def step_archs(space: SearchSpace, seed: int, step: int, rule: str = "uniform") -> list[ArchConfig]:
    """`uniform`: one random arch (the paper); `sandwich`: largest, smallest and one random."""
    if rule not in SAMPLING_RULES:
        raise AutomoeError(f"unknown sampling rule {rule!r}; choices: {list(SAMPLING_RULES)}")
    rng = random.Random(f"automoe-step-{seed}-{step}")
    sampled = space.sample(rng)
    if rule == "uniform":
        return [sampled]
    return [space.largest(), space.smallest(), sampled]
