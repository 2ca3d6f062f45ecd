"""The costs a search constrains or trades off: latency, FLOPs and parameters of an arch.

FLOPs and parameters are analytical (uniform routing, the papers' conventions: FLOPs without
the output projection, parameters without embeddings; task routers hold one row per task, so
the parameters need the SuperNet's number of tasks). Latency comes from a fitted cost
predictor, or is measured on this machine when no predictor is wanted ("gold" latency).
"""

from __future__ import annotations

from collections.abc import Callable

from automoe.cost import count_flops, count_params
from automoe.errors import AutomoeError
from automoe.predictors import CostPredictor
from automoe.space import ArchConfig

LatencyFn = Callable[[ArchConfig], float]


class CostModel:
    """Cached costs per architecture; a search asks for the same arch many times."""

    def __init__(
        self,
        qkv_dim: int,
        vocab_size: int,
        predictor: CostPredictor | None = None,
        measure: LatencyFn | None = None,
        *,
        num_tasks: int,
    ) -> None:
        self.qkv_dim = qkv_dim
        self.vocab_size = vocab_size
        self.num_tasks = num_tasks
        self.predictor = predictor
        self.measure = measure
        self._cache: dict[str, dict[str, float]] = {}

    @property
    def has_latency(self) -> bool:
        return self.predictor is not None or self.measure is not None

    def costs(self, arch: ArchConfig) -> dict[str, float]:
        key = arch.key()
        if key not in self._cache:
            kw = {"qkv_dim": self.qkv_dim, "vocab_size": self.vocab_size}
            out = {
                "flops": float(count_flops(arch, **kw).without_output),
                "params": float(
                    count_params(arch, **kw, num_tasks=self.num_tasks).without_embeddings
                ),
            }
            if self.measure is not None:
                out["latency_ms"] = float(self.measure(arch))
            elif self.predictor is not None:
                out["latency_ms"] = float(self.predictor.predict_archs([arch])[0])
            self._cache[key] = out
        return self._cache[key]

    def cost(self, arch: ArchConfig, metric: str) -> float:
        costs = self.costs(arch)
        if metric not in costs:
            raise AutomoeError(
                f"no {metric} for architectures: give a latency predictor (--predictor) "
                "or measure latency (--latency measured)"
            )
        return costs[metric]
