"""`SearchRequest`: everything one search is asked to do, checked when it is built, before
any file is read or stage runs; the defaults the command shows in its help."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automoe.constraints import COST_METRICS, Constraint
from automoe.errors import AutomoeError
from automoe.precision import CHOICES as PRECISIONS
from automoe.search.scoring import METRICS
from automoe.strategies import get_strategy

DEFAULT_EVALUATIONS = 300
DEFAULT_FRONT = "loss,latency_ms"
DEFAULT_BATCH = 25
DEFAULT_HEARTBEAT = 10
LATENCY_SOURCES = ("predicted", "measured")
# Options of the Optuna strategies that place their own study: a shared search is its own study.
STUDY_OPTIONS = ("storage_url", "journal_path", "study_name", "worker_index", "heartbeat_interval")


@dataclass(frozen=True)
class SearchRequest:
    """Everything one search is asked to do; checked when built, before anything runs.

    `constraints` are texts such as `latency_ms<=80` (or `Constraint`s); `objectives` is
    `loss` (best under the constraints) or `loss` followed by costs for a Pareto front, default:
    `loss` with a constraint, else `loss,latency_ms`. `evaluations` is the budget (a resumed
    search keeps its own unless given). `options` go to the strategy's constructor. With
    `storage` (an Optuna storage URL) and `study`, the search is shared by every worker naming
    them (`automoe.search.shared`); `run` then defaults to runs/search-STUDY/WORKER.
    """

    strategy: str
    run: Path | None = None
    resume: bool = False
    supernet: str | None = None
    predictor: str | None = None
    space: str | None = None
    data_dir: str | None = None
    workdir: Path = Path("runs/pipeline")
    constraints: tuple[str, ...] = ()
    objectives: str | None = None
    metric: str = "loss"
    latency: str = "predicted"
    evaluations: int | None = None
    time_limit_s: float | None = None
    batch: int | None = None
    jobs: int = 1
    valid_size: int = 200
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    allow_precision_mismatch: bool = False
    threads: int = 2
    progress: bool = True
    storage: str | None = None
    study: str | None = None
    worker: str | None = None
    heartbeat: int | None = None

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        for name in ("jobs", "valid_size", "threads"):
            _check_count(name, getattr(self, name))
        for name in ("evaluations", "batch", "heartbeat"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise AutomoeError(f"seed = {self.seed!r} must be a non-negative integer")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise AutomoeError(f"time limit = {self.time_limit_s!r} s must be positive")
        for name, value, allowed in (
            ("metric", self.metric, METRICS),
            ("latency", self.latency, LATENCY_SOURCES),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise AutomoeError(f"{name} = {value!r}; choices: {', '.join(allowed)}")
        for text in self.constraints:
            Constraint.parse(text)
        parse_objectives(self.objective_text(), self.metric)
        if self.storage is not None:
            self._check_shared()
            worker = self.worker or f"{socket.gethostname()}-{os.getpid()}"
            object.__setattr__(self, "worker", worker)
        if self.run is None:
            shared = f"runs/search-{self.study}/{self.worker}"
            object.__setattr__(
                self,
                "run",
                Path(shared if self.storage else f"runs/search-{self.strategy}-s{self.seed}"),
            )
        object.__setattr__(self, "run", Path(self.run))

    @property
    def folder(self) -> Path:
        """The run folder (set by the time the request is built)."""
        assert self.run is not None
        return self.run

    def _check_shared(self) -> None:
        """Refuse, before the storage is opened, what would make the workers of one shared
        search record different things."""
        if not self.study:
            raise AutomoeError("--storage needs --study NAME, the search's name in the storage")
        if self.latency == "measured":
            raise AutomoeError(
                "--storage with --latency measured: each worker would time architectures on its "
                "own machine, beside the others' scoring; fit a latency predictor and pass "
                "--predictor"
            )
        if self.supernet is None:
            raise AutomoeError(
                "--storage needs --supernet (and --predictor): every worker must score with the "
                "same files, and workers started together would each train the default pipeline; "
                "build it once with a search without --storage, then pass --supernet "
                "runs/pipeline/supernet --predictor runs/pipeline/latency.predictor"
            )
        objectives = parse_objectives(self.objective_text(), self.metric)
        constraints = [Constraint.parse(c) for c in self.constraints]
        wants_latency = "latency_ms" in objectives or any(
            c.metric == "latency_ms" for c in constraints
        )
        if wants_latency and self.predictor is None:
            raise AutomoeError("--storage with latency objectives or constraints needs --predictor")
        placed = sorted(set(self.options) & set(STUDY_OPTIONS))
        if placed:
            raise AutomoeError(
                f"--option {placed[0]}: with --storage the search's study is the shared record and "
                "every worker rebuilds the strategy from it; drop the option"
            )

    def objective_text(self) -> str:
        """The objectives asked for; else the loss under the constraints; else, with no
        constraint, the loss and latency together: the single lowest loss is then simply one of
        the largest sub-networks, while a front answers "the best model for each budget"."""
        if self.objectives is not None:
            return self.objectives
        return "loss" if self.constraints else DEFAULT_FRONT


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AutomoeError(f"{name} = {value!r} must be a positive integer")


def parse_objectives(text: str, metric: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names[0] not in ("loss", "bleu"):
        raise AutomoeError(f"objectives {text!r}: start with loss (e.g. loss,latency_ms)")
    names[0] = metric
    for extra in names[1:]:
        if extra not in COST_METRICS:
            raise AutomoeError(f"objectives: unknown {extra!r}; choices: {list(COST_METRICS)}")
    return names
