"""Learning-rate schedule of the paper: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, *, lr: float, warmup: int, total: int, init_lr: float = 1e-7, min_lr: float = 1e-7
) -> float:
    """Learning rate at `step` (0-based count of updates already made)."""
    if warmup > 0 and step < warmup:
        return init_lr + (lr - init_lr) * step / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
