"""Sizes of the benchmark (the full run or `--quick`) and where each stage writes.

A work folder is fixed to the settings it was started with (`staged.settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from staged.layout import StagedLayout

# Sizes that only decide when stages start and stop, not what they compute.
SCHEDULING = (
    "eval_minutes",
    "measure_minutes",
    "fit_minutes",
    "timing_minutes",
    "min_start",
    "margin",
    "timing_wait_s",
)
# The latency fractions of the dense model the searches are constrained to.
FRACTIONS = {"half": (1, 2), "third": (1, 3)}


@dataclass(frozen=True)
class Sizes:
    """Every size the stages use; `--quick` shrinks them all to toy sizes."""

    supernet_steps: int = 1500
    supernet_warmup: int = 250
    supernet_validate: int = 250
    supernet_checkpoint: int = 100
    dropout: float = 0.2
    data_flags: tuple[str, ...] = ()
    latency_archs: int = 120
    latency_runs: int = 10
    latency_warmup: int = 5
    measure_runs: int = 20
    min_feasible_share: float = 0.02
    evaluations: int = 300
    search_valid: int = 200
    search_batch: int = 25
    final_steps: int = 3000
    final_warmup: int = 400
    validate_every: int = 500
    checkpoint_every: int = 200
    seeds: tuple[int, ...] = (1, 2)
    estimator_points: int = 4
    eval_limit: int = 0
    val_limit: int = 0
    beam: int = 4
    timing_runs: int = 20
    timing_warmup: int = 5
    timing_wait_s: float = 10.0
    throughput_batch: int = 64
    throughput_sentences: int = 256
    # Minutes: a stage that cannot checkpoint starts only if its estimate fits in the time
    # left; one that can needs `min_start`; trainings stop `margin` before the deadline.
    eval_minutes: float = 15.0
    measure_minutes: float = 3.0
    fit_minutes: float = 2.0
    timing_minutes: float = 30.0
    min_start: float = 3.0
    margin: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data_flags"] = list(self.data_flags)
        out["seeds"] = list(self.seeds)
        return out

    def fixed(self) -> dict[str, Any]:
        """The sizes results depend on (not the scheduling estimates): a work folder keeps
        them from its first invocation on."""
        return {k: v for k, v in self.to_dict().items() if k not in SCHEDULING}


FULL = Sizes()
QUICK = Sizes(
    supernet_steps=20,
    supernet_warmup=5,
    supernet_validate=20,
    supernet_checkpoint=10,
    data_flags=("--train-limit=400", "--vocab-size=400", "--max-tokens=512", "--valid-size=30"),
    latency_archs=8,
    latency_runs=3,
    latency_warmup=1,
    measure_runs=3,
    min_feasible_share=0.5,
    evaluations=10,
    search_valid=30,
    search_batch=5,
    final_steps=20,
    final_warmup=5,
    validate_every=20,
    checkpoint_every=10,
    seeds=(1,),
    estimator_points=2,
    eval_limit=16,
    val_limit=30,
    timing_runs=3,
    timing_warmup=1,
    timing_wait_s=0.0,
    throughput_batch=16,
    throughput_sentences=16,
    eval_minutes=0.5,
    measure_minutes=0.5,
    fit_minutes=0.5,
    timing_minutes=1.0,
    min_start=0.2,
    margin=0.1,
)


def sizes_for(quick: bool, **overrides: Any) -> Sizes:
    """FULL or QUICK with the command line's overrides (None = keep)."""
    base = QUICK if quick else FULL
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Layout(StagedLayout):
    """The folders of this benchmark's stages (`StagedLayout`: the common ones)."""

    NAME = "multi30k"

    @property
    def latency_csv(self) -> Path:
        return self.work / "latency" / "dataset.csv"

    @property
    def predictor(self) -> Path:
        return self.work / "latency" / "latency.predictor"

    @property
    def dense_latency(self) -> Path:
        return self.work / "latency" / "dense.json"

    @property
    def constraints(self) -> Path:
        return self.work / "latency" / "constraints.json"

    @property
    def predicted(self) -> Path:
        return self.work / "latency" / "predicted.json"

    def search(self, key: str) -> Path:
        return self.work / "search" / key

    def evaluation(self, name: str) -> Path:
        return self.work / "eval" / f"{name}.json"

    @property
    def estimator(self) -> Path:
        return self.work / "estimator"

    @property
    def front(self) -> Path:
        return self.estimator / "front.json"

    @property
    def latency(self) -> Path:
        return self.work / "timing" / "latency.json"

    @property
    def throughput(self) -> Path:
        return self.work / "timing" / "throughput.json"
