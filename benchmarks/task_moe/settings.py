"""Sizes of the Task-MoE benchmark (the full run or `--quick`) and where each stage writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from staged.layout import StagedLayout

# Sizes that only decide when stages start and stop, not what they compute.
SCHEDULING = ("eval_minutes", "timing_minutes", "min_start", "margin", "timing_wait_s")


@dataclass(frozen=True)
class Sizes:
    """Every size the stages use; `--quick` shrinks them all to toy sizes."""

    pairs: tuple[str, ...] = ("en-de", "en-fr", "en-cs")
    vocab_size: int = 8000
    max_len: int = 64
    max_tokens: int = 4096
    valid_size: int = 200
    train_limit: int = 0
    final_steps: int = 3000
    final_warmup: int = 400
    dropout: float = 0.2
    validate_every: int = 500
    checkpoint_every: int = 200
    seeds: tuple[int, ...] = (1, 2)
    # The routing SuperNet trains on every core (`--jobs` threads) and, with its search and
    # the timing runs, fits one session: nothing of it would outlive a new machine.
    supernet_steps: int = 2000
    supernet_warmup: int = 400
    evaluations: int = 200
    search_valid: int = 100
    search_batch: int = 25
    eval_limit: int = 0
    beam: int = 4
    batch_sizes: tuple[int, ...] = (1, 16, 64)
    timing_rounds: int = 10
    throughput_sentences: int = 64
    memory_sentences: int = 200
    # Minutes: a stage that cannot checkpoint starts only if its estimate fits in the time
    # left; one that can needs `min_start`; trainings stop `margin` before the deadline.
    eval_minutes: float = 20.0
    timing_minutes: float = 40.0
    min_start: float = 3.0
    margin: float = 2.0
    timing_wait_s: float = 10.0

    def fixed(self) -> dict[str, Any]:
        """The sizes results depend on: a work folder keeps them from its first invocation."""
        out = asdict(self)
        for key in ("pairs", "seeds", "batch_sizes"):
            out[key] = list(out[key])
        return {k: v for k, v in out.items() if k not in SCHEDULING}

    def data_flags(self) -> list[str]:
        """The data settings every training shares (balanced sampling over the pairs)."""
        return [
            f"--pairs={','.join(self.pairs)}",
            "--task-temperature=inf",
            f"--vocab-size={self.vocab_size}",
            f"--max-len={self.max_len}",
            f"--max-tokens={self.max_tokens}",
            f"--valid-size={self.valid_size}",
            f"--train-limit={self.train_limit}",
        ]


FULL = Sizes()
QUICK = Sizes(
    pairs=("en-de", "en-fr"),
    vocab_size=400,
    max_tokens=512,
    valid_size=20,
    train_limit=400,
    final_steps=12,
    final_warmup=3,
    validate_every=12,
    checkpoint_every=6,
    seeds=(1, 2),
    supernet_steps=12,
    supernet_warmup=3,
    evaluations=6,
    search_valid=10,
    search_batch=3,
    eval_limit=8,
    batch_sizes=(1, 4),
    timing_rounds=2,
    throughput_sentences=4,
    memory_sentences=4,
    eval_minutes=0.5,
    timing_minutes=1.0,
    min_start=0.2,
    margin=0.1,
    timing_wait_s=0.0,
)


def sizes_for(quick: bool, **overrides: Any) -> Sizes:
    """FULL or QUICK with the command line's overrides (None = keep)."""
    base = QUICK if quick else FULL
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Layout(StagedLayout):
    """The folders of this benchmark's stages (`StagedLayout`: the common ones)."""

    NAME = "task_moe"

    def arch(self, row: str) -> Path:
        return self.figures / f"{row}.yaml"

    def export(self, name: str, pair: str) -> Path:
        return self.work / "export" / name / f"{pair}.pt"

    def evaluation(self, name: str, pair: str | None = None) -> Path:
        return self.work / "eval" / (f"{name}.json" if pair is None else f"{name}-{pair}.json")

    @property
    def dense_latency(self) -> Path:
        return self.work / "search" / "dense_latency.json"

    @property
    def search(self) -> Path:
        return self.work / "search" / "routing"

    def shape(self, row: str) -> Path:
        """A row's architecture as an untrained model (one update), what is sized and timed."""
        return self.work / "shape" / row

    def shape_export(self, row: str, pair: str) -> Path:
        return self.work / "shape-export" / row / f"{pair}.pt"

    @property
    def deployment(self) -> Path:
        return self.work / "timing" / "deployment.json"

    @property
    def throughput(self) -> Path:
        return self.work / "timing" / "throughput.json"

    @property
    def memory(self) -> Path:
        return self.work / "timing" / "memory.json"
