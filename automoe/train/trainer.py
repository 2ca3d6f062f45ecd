"""Training: a SuperNet (one sampled sub-network per update) or one fixed architecture (a
searched winner or a baseline), checkpointed so a kill loses nothing.

Every random choice is either derived from (seed, step) — the sub-network, the batch order of
an epoch — or drawn from torch's generator, whose state the checkpoint saves (with several
processes: seeded from (seed, rank, step) at every update). A run resumed from a checkpoint
therefore continues exactly as if it had never stopped. Checkpoints are
written atomically and the one they replace is kept as `checkpoint.pt.prev`, so one damaged
file costs only the steps since the previous checkpoint, never the run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from automoe.data import Batch
from automoe.errors import AutomoeError
from automoe.evaluate.quality import validation_loss
from automoe.files import atomic_path, previous_path
from automoe.precision import Precision, resolve_precision
from automoe.records import RecordLog
from automoe.space import ArchConfig
from automoe.supernet.losses import label_smoothed_loss
from automoe.supernet.model import Transformer, load_checkpoint_file
from automoe.supernet.supernet import SuperNet
from automoe.train.distributed import World
from automoe.train.sampling import step_archs
from automoe.train.schedule import warmup_cosine

TRAINER_FORMAT = "automoe-trainer/1"
STATE_KEYS = (
    "model",
    "optimizer",
    "settings",
    "step",
    "epoch",
    "batch_index",
    "elapsed",
    "torch_rng",
)


@dataclass
class TrainSettings:
    """Optimisation settings; defaults follow the paper except the step count."""

    max_steps: int = 3000
    lr: float = 1e-3
    warmup_steps: int = 400
    init_lr: float = 1e-7
    min_lr: float = 1e-7
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    balance_coef: float = 0.01
    update_freq: int = 1
    sampling: str = "uniform"
    seed: int = 1
    precision: str = "fp32"
    checkpoint_every: int = 200
    validate_every: int = 500
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


METRIC_FIELDS = [
    "step",
    "epoch",
    "lr",
    "loss",
    "nll",
    "balance",
    "tokens",
    "tokens_per_s",
    "elapsed_s",
    "arch",
    "valid_loss",
    "valid_largest_loss",
    "valid_smallest_loss",
]


class Trainer:
    """Owns the optimiser, the data position and the run folder of one training: of a SuperNet,
    or of a plain `Transformer`, which trains its own architecture at every step.

    In a `World` of several processes every one holds a Trainer; they walk the same batch
    order and apply the same summed gradients, and only rank 0 validates and writes files.
    `precision` overrides resolving `settings.precision` here (the other ranks take rank 0's).
    """

    def __init__(
        self,
        model: Transformer,
        epoch_batches: Callable[[int], Sequence[Batch]],
        valid_batches: Sequence[Batch],
        settings: TrainSettings,
        run_dir: str | Path,
        device: torch.device | str = "cpu",
        world: World | None = None,
        precision: Precision | None = None,
    ) -> None:
        self.net = model.to(device)
        self.device = torch.device(device)
        self.epoch_batches = epoch_batches
        self.valid_batches = valid_batches
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.world = world or World()
        self.optimizer = torch.optim.Adam(
            self.net.parameters(),
            lr=settings.lr,
            betas=settings.betas,
            weight_decay=settings.weight_decay,
        )
        self.precision = precision or resolve_precision(settings.precision, self.device)
        self.scaler = self.precision.grad_scaler()
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.elapsed = 0.0
        self._batches: Sequence[Batch] | None = None
        # False after resuming past a damaged checkpoint.pt: the next save replaces it
        # instead of keeping it as .prev over the good copy.
        self._keep_newest = True

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _lr(self, step: int) -> float:
        s = self.settings
        return warmup_cosine(
            step,
            lr=s.lr,
            warmup=s.warmup_steps,
            total=s.max_steps,
            init_lr=s.init_lr,
            min_lr=s.min_lr,
        )

    def _next_batch(self) -> Batch:
        if self._batches is None:
            self._batches = self.epoch_batches(self.epoch)
            if not self._batches:
                raise AutomoeError("the training data produced no batches; check the corpus")
        if self.batch_index >= len(self._batches):
            self.epoch += 1
            self.batch_index = 0
            self._batches = self.epoch_batches(self.epoch)
        batch = self._batches[self.batch_index]
        self.batch_index += 1
        return batch

    def train_step(self) -> dict[str, Any]:
        """One update: every micro-batch of it trains the step's sub-network(s).

        An update is `update_freq` x (number of processes) consecutive batches of the one
        batch order; process r trains batches r, r + N, r + 2N, ... of them. The objective is
        the sum of the token losses of all of them divided by their total target tokens (not
        a mean of per-batch or per-process means), plus the load-balancing loss of each batch
        weighted by its share of those tokens; gradients are summed over the processes. So N
        processes with `update_freq` M train exactly as one process with `update_freq` N*M,
        up to float rounding.
        """
        s, world = self.settings, self.world
        archs = self._step_archs()
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        world.seed_step(s.seed, self.step)
        batches = [self._next_batch() for _ in range(s.update_freq * world.size)]
        tokens = sum(b.num_tokens for b in batches)
        mine = [batch.to(self.device) for batch in world.share(batches)]
        loss_sum = nll_sum = balance_sum = 0.0
        for arch in archs:
            for batch in mine:
                with self.precision.autocast():
                    out = self.net.forward_batch(batch, arch)
                part = label_smoothed_loss(
                    out.logits, batch.target, self.net.config.pad_id, s.label_smoothing
                )
                share = part.tokens / tokens
                objective = part.loss / tokens + s.balance_coef * out.balance_loss * share
                objective = objective / len(archs)
                (self.scaler.scale(objective) if self.scaler else objective).backward()
                loss_sum += float(part.loss.detach())
                nll_sum += float(part.nll.detach())
                balance_sum += float(out.balance_loss.detach()) * share
        world.reduce_gradients(list(self.net.parameters()))
        loss_sum, nll_sum, balance_sum = world.sum([loss_sum, nll_sum, balance_sum])
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if s.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), s.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        n = len(archs)
        return {
            "step": self.step,
            "epoch": self.epoch,
            "lr": lr,
            "loss": loss_sum / tokens / n,
            "nll": nll_sum / tokens / n,
            "balance": balance_sum / n,
            "tokens": tokens * n,
            "arch": archs[-1].key(),
        }

    def _step_archs(self) -> list[ArchConfig]:
        if isinstance(self.net, SuperNet):
            s = self.settings
            return step_archs(self.net.space, s.seed, self.step, s.sampling)
        return [self.net.default_arch]

    def validate(self) -> dict[str, float]:
        """A SuperNet's largest and smallest sub-networks, or a fixed model's own loss."""
        with self.precision.autocast():
            if not isinstance(self.net, SuperNet):
                return {"valid_loss": validation_loss(self.net, self.valid_batches).loss}
            space = self.net.space
            largest = validation_loss(self.net, self.valid_batches, space.largest())
            smallest = validation_loss(self.net, self.valid_batches, space.smallest())
        return {"valid_largest_loss": largest.loss, "valid_smallest_loss": smallest.loss}

    def train(
        self, progress: bool = True, stop_at: int | None = None, time_limit: float | None = None
    ) -> dict[str, Any]:
        """Run to `max_steps`, logging, validating and checkpointing on the way.

        `stop_at` (a step), `time_limit` (seconds) and a SIGTERM (a scheduler's preemption, a
        `kill`) pause early with a checkpoint at the end of the current update, keeping the
        schedule of the full run, so a run can be split across sessions and a stopped one loses
        nothing. With several processes all stop at the same update (the first to reach its
        time limit or get the signal stops them all); only rank 0 validates (the others wait for
        it at the next update), shows progress, logs and checkpoints, and only its return value
        carries the metrics.
        """
        s, main = self.settings, self.world.is_main
        end = min(s.max_steps, stop_at or s.max_steps)
        deadline = time.monotonic() + time_limit if time_limit else math.inf
        log = metrics_log(self.run_dir)
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            log.rewrite([row for row in log.read() if row["step"] <= self.step])
        last: dict[str, Any] = {}
        bar = tqdm(
            total=s.max_steps,
            initial=self.step,
            disable=not (progress and main),
            unit="step",
            dynamic_ncols=True,
        )
        self.world.wait_for_all()
        window_tokens, window_start = 0, time.perf_counter()
        with _terminate_request() as terminated, bar:
            while self.step < end and not self.world.any(
                time.monotonic() >= deadline or terminated.is_set()
            ):
                started = time.perf_counter()
                row = self.train_step()
                self.elapsed += time.perf_counter() - started
                window_tokens += row["tokens"]
                if not math.isfinite(row["loss"]):
                    raise AutomoeError(
                        f"training diverged at step {self.step} (loss {row['loss']}); "
                        "lower --lr or raise --warmup-steps and resume from the last checkpoint"
                    )
                if not main:
                    continue
                if self.step % s.validate_every == 0 or self.step == s.max_steps:
                    row.update(self.validate())
                if self.step % s.log_every == 0 or any(k.startswith("valid_") for k in row):
                    now = time.perf_counter()
                    row["tokens_per_s"] = window_tokens / max(now - window_start, 1e-9)
                    row["elapsed_s"] = self.elapsed
                    window_tokens, window_start = 0, now
                    log.append(row)
                    bar.set_postfix(
                        loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}", refresh=False
                    )
                if self.step % s.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
                bar.update(1)
                last = row
            if main and self.step < end:
                self.save_checkpoint()
        return last

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": TRAINER_FORMAT,
            "model": self.net.checkpoint(),
            "optimizer": self.optimizer.state_dict(),
            "settings": self.settings.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "elapsed": self.elapsed,
            "torch_rng": torch.get_rng_state(),
            "world_size": self.world.size,
            "precision": self.precision.record(),
        }
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save_checkpoint(self) -> Path:
        path = self.checkpoint_path
        with atomic_path(path, keep_previous=self._keep_newest) as tmp:
            torch.save(self.state_dict(), tmp)
        self._keep_newest = True
        return path

    def load_checkpoint(self) -> str | None:
        """Restore model, optimiser, data position and RNG from the run's newest checkpoint.

        A missing or damaged `checkpoint.pt` falls back to `checkpoint.pt.prev`; the returned
        line then says so (None when the newest one was used). With neither (the run stopped
        before its first checkpoint, or only its settings were kept) the fresh state stands:
        the run starts over exactly as it first did, and the line says so.
        """
        newest, previous = self.checkpoint_path, previous_path(self.checkpoint_path)
        if not newest.exists() and not previous.exists():
            return f"{self.run_dir} holds no checkpoint yet: training from the first update"
        notice = None
        try:
            state = _read_state(newest)
        except _Unreadable as damaged:
            if not previous.exists():
                raise AutomoeError(
                    f"cannot resume: {damaged} and there is no {previous.name} to fall back "
                    "on; start a new --run"
                ) from None
            try:
                state = _read_state(previous)
            except _Unreadable as also:
                raise AutomoeError(
                    f"cannot resume: {damaged} and {also}; start a new --run"
                ) from None
            notice = f"{damaged}; resuming from {previous}"
        changed = self._restore(state, newest if notice is None else previous)
        if notice is not None:
            self._keep_newest = False
            notice = f"{notice} at step {self.step} (the steps after it are trained again)"
        return "; ".join(line for line in (notice, changed) if line) or None

    def _restore(self, state: dict[str, Any], path: Path) -> str | None:
        """Load `state`; a line when it was trained in another precision than this run's."""
        _require_world_size(state.get("world_size", 1), self.world.size, path)
        saved = {k: v for k, v in state["settings"].items() if k != "max_steps"}
        mine = {k: v for k, v in self.settings.to_dict().items() if k != "max_steps"}
        changed = sorted(k for k in saved if _plain(saved[k]) != _plain(mine.get(k)))
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]} -> {mine.get(k)}" for k in changed)
            raise AutomoeError(
                f"cannot resume {path}: settings differ from the checkpoint's ({diffs}); "
                "rerun with the original settings or start a new run folder"
            )
        restored = type(self.net).from_checkpoint(state["model"], str(path))
        if restored.config != self.net.config:
            raise AutomoeError(f"cannot resume {path}: it holds a model of another shape")
        self.net.load_state_dict(restored.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.batch_index = state["batch_index"]
        self.elapsed = state["elapsed"]
        self._batches = None
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        before = state.get("precision", {}).get("precision", "fp32")
        if before == self.precision.name:
            return None
        return (
            f"steps up to {self.step} were trained in {before}; the rest run in "
            f"{self.precision.name} ({self.precision.reason})"
        )


class _Unreadable(Exception):
    """A checkpoint file that is missing, damaged or not a training checkpoint."""


def _read_state(path: Path) -> dict[str, Any]:
    """The state a training checkpoint holds; `_Unreadable` when the file cannot give one."""
    if not path.is_file():
        raise _Unreadable(f"{path} is missing")
    try:
        state = load_checkpoint_file(path)
    except AutomoeError:
        state = None
    if not (
        isinstance(state, dict)
        and state.get("format") == TRAINER_FORMAT
        and all(k in state for k in STATE_KEYS)
    ):
        raise _Unreadable(f"{path} is corrupt or not an automoe training checkpoint")
    return state


def _require_world_size(saved: int, now: int, path: Path) -> None:
    """Refuse a resume by another number of processes: an update's batches and dropout masks
    depend on it, so the run would not continue as it would have without the stop."""
    if saved == now:
        return
    how = (
        "plain `python -m automoe.train` (no torchrun)"
        if saved == 1
        else f"torchrun starting {saved} processes in all (--nnodes x --nproc_per_node)"
    )
    trained = "1 process" if saved == 1 else f"{saved} processes"
    raise AutomoeError(
        f"cannot resume {path}: it was trained by {trained} and this run has {now}; "
        f"resume it with {how}, or start a new --run"
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def metrics_log(run_dir: Path) -> RecordLog:
    return RecordLog(run_dir, "metrics", METRIC_FIELDS)


@contextlib.contextmanager
def _terminate_request() -> Iterator[threading.Event]:
    """An event set by SIGTERM while training runs, so the loop can end at an update boundary
    with a checkpoint instead of dying mid-update; the previous handler comes back after. Off
    the main thread (where Python cannot take signals) the event is simply never set."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)
