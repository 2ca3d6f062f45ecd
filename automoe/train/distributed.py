"""Data-parallel training across the processes `torchrun` starts (one or several machines).

torchrun tells each process where it stands through WORLD_SIZE, RANK and LOCAL_RANK; without
them (or with WORLD_SIZE=1) training is one plain process and every method here does nothing.
With them, the processes form a group over gloo (CPU) or NCCL (CUDA, process r of a machine on
its GPU r), all train the same sub-network at each update, each on its own share of the
update's batches, and their gradients are summed before every optimiser step, so the weights,
optimiser state and data position stay identical everywhere and only rank 0 writes files.

Why not `DistributedDataParallel`: a SuperNet update leaves whole layers, experts and routers
unused (the sampled sub-network does not reach them), runs several forward passes per update
(`--update-freq`, sandwich sampling) through `forward_batch` rather than `forward`, and Adam
must skip a weight no process used exactly as it does in one process (a zero gradient would
still move it through its momentum). `reduce_gradients` does that in two collectives per
update, the same two on every rank whatever each one routed, so no rank can wait for a
gradient another never produces.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from automoe.errors import AutomoeError
from automoe.runs import pick_device

T = TypeVar("T")
ENV_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


class World:
    """Where this process stands among the training processes: rank `rank` of `size`."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0) -> None:
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.device = torch.device("cpu")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in the environment; one process when it says none."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            size, rank, local = (int(env.get(key, "0")) for key in ENV_KEYS)
        except ValueError:
            found = ", ".join(f"{k}={env.get(k)!r}" for k in ENV_KEYS)
            raise AutomoeError(
                f"cannot read the process layout from the environment ({found}); start "
                "several processes with torchrun, or unset WORLD_SIZE for one"
            ) from None
        if size < 1 or not 0 <= rank < size or local < 0:
            raise AutomoeError(
                f"WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local} is not a valid process "
                "layout; start the processes with torchrun"
            )
        if size > 1 and not all(env.get(key) for key in ("MASTER_ADDR", "MASTER_PORT")):
            raise AutomoeError(
                f"WORLD_SIZE={size} but no MASTER_ADDR/MASTER_PORT to meet the other processes "
                "at; start them with torchrun, or unset WORLD_SIZE for one process"
            )
        return cls(rank, size, local) if size > 1 else cls()

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes checkpoints."""
        return self.rank == 0

    def device_for(self, name: str) -> torch.device:
        """The device `--device name` means for this process: CUDA is GPU LOCAL_RANK."""
        device = pick_device(name)
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise AutomoeError(
                f"--device {name} under torchrun: each process takes the GPU of its LOCAL_RANK; "
                "give --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise AutomoeError(
                f"process {self.local_rank} of this machine has no GPU of its own ({count} "
                f"visible); start at most {count} processes per machine (--nproc_per_node)"
            )
        return torch.device("cuda", self.local_rank)

    @contextmanager
    def group(self, device: torch.device) -> Iterator[World]:
        """The process group for the block: gloo on CPU, NCCL on CUDA (a backend always
        matches the tensors it moves, so gloo never meets CUDA tensors)."""
        self.device = device
        if not self.distributed:
            yield self
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        options = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=self.rank, world_size=self.size, **options)
        try:
            yield self
        finally:
            dist.destroy_process_group()

    def wait_for_all(self) -> None:
        """Return once every process got here (clocks started after it do not count the
        slowest process's start-up)."""
        if self.distributed:
            dist.barrier()

    def share(self, batches: Sequence[T]) -> list[T]:
        """This process's part of an update's batches: every `size`-th from its rank on."""
        return list(batches[self.rank :: self.size])

    def seed_step(self, seed: int, step: int) -> None:
        """Seed dropout for one update from (seed, rank, step): processes draw different masks,
        and a resumed run draws the masks the uninterrupted one did without saving any RNG.
        One process keeps torch's running generator (saved in its checkpoints)."""
        if self.distributed:
            rng = random.Random(f"automoe-dropout-{seed}-{self.rank}-{step}")
            torch.manual_seed(rng.getrandbits(63))

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum every gradient over the processes. A weight that some process used gets the sum
        everywhere (the others count zeros); one that no process used keeps no gradient, so
        Adam leaves it and its state alone, as in one process."""
        if not self.distributed:
            return
        has = [p.grad is not None for p in params]
        used = torch.tensor(has, dtype=torch.uint8, device=self.device)
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
        chosen = [p for p, flag in zip(params, used.tolist(), strict=True) if flag]
        if not chosen:
            return
        flat = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in chosen]
        )
        dist.all_reduce(flat)
        for p, grad in zip(chosen, flat.split([p.numel() for p in chosen]), strict=True):
            p.grad = grad.view_as(p)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the processes (fp64, so logged sums do not drift)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a time limit hit by any rank stops
        them all at the same update, never one alone)."""
        return bool(self.sum([float(flag)])[0]) if self.distributed else flag

    def broadcast(self, value: T | None) -> T:
        """Rank 0's `value` on every process (the others pass None)."""
        if not self.distributed:
            return value  # type: ignore[return-value]
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]  # type: ignore[return-value]

    def require_same(self, what: str, value: Mapping[str, Any]) -> None:
        """Refuse to go on, on every process alike, when `value` differs between them (e.g.
        machines started with different commands or run folders)."""
        if not self.distributed:
            return
        every: list[Any] = [None] * self.size
        dist.all_gather_object(every, dict(value))
        for rank, other in enumerate(every[1:], start=1):
            keys = _differing(every[0], other)
            if keys:
                raise AutomoeError(
                    f"the training processes disagree on their {what}: rank {rank} differs from "
                    f"rank 0 in {', '.join(keys)}; start every process with the same command "
                    "and the same run folder"
                )


def _differing(a: Any, b: Any, name: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [name or "value"]
    return [
        key
        for part in sorted(set(a) | set(b), key=str)
        for key in _differing(a.get(part), b.get(part), f"{name}.{part}" if name else str(part))
    ]
