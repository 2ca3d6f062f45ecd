"""Mixed precision: which number format a command computes in, decided once per process.

Weights, optimiser state, the loss, the router's softmax and the load-balancing statistics stay
in fp32; `torch.autocast` runs the matrix products (and what feeds them) in bf16, or in fp16
with a gradient scaler on a CUDA device without bf16. `auto` takes bf16 only where the machine
at hand computes it faster (a short timing at start), so a CPU without bf16 instructions keeps
fp32 instead of emulating it slowly. Every resolution carries a one-line reason that commands
print and record, so a result file always says how it was computed.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

CHOICES = ("fp32", "bf16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_MIN_SPEEDUP = 1.2
Module = TypeVar("Module", bound=nn.Module)


@dataclass(frozen=True)
class Precision:
    """The format chosen for one device: `name` is fp32, bf16 or fp16 (CUDA fallback)."""

    name: str
    device_type: str
    requested: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES.get(self.name, torch.float32)

    def autocast(self) -> AbstractContextManager[Any]:
        """The region in which forward passes run in this precision."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def for_inference(self, model: Module) -> Module:
        """`model` with its weight matrices in this format (in place), for commands that only
        run it: under autocast alone every weight is cast again at each decoding step, which
        at batch 1 costs more than the faster matmuls save. Norm weights, biases and buffers
        stay fp32, so norms and softmaxes still compute in fp32 as in training."""
        if self.name != "fp32":
            matrices = narrowed_parameters(model)
            for name, param in model.named_parameters():
                if name in matrices:
                    param.data = param.data.to(self.dtype)
        return model

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16's narrow exponent range needs loss scaling; bf16 and fp32 do not."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device_type)

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "requested": self.requested, "reason": self.reason}

    def line(self) -> str:
        return f"precision: {self.name} ({self.reason})"

    def notice(self) -> str | None:
        """The line to print: none for plain fp32, which every command assumes by default."""
        return None if self.requested == "fp32" else self.line()


FP32 = Precision("fp32", "cpu", "fp32", "asked for")


def narrowed_parameters(model: nn.Module) -> set[str]:
    """The parameters a low-precision model holds in bf16: the matrices (projections,
    experts, embeddings), nearly all of its bytes; not the vectors (norms, biases)."""
    return {name for name, param in model.named_parameters() if param.dim() >= 2}


def cpu_bf16_instructions() -> str | None:
    """The CPU feature that computes bf16 natively (AMX, AVX512-BF16, Arm BF16), or None."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags: set[str] = set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
        for flag in ("amx_bf16", "avx512_bf16", "bf16"):
            if flag in flags:
                return flag
        return None
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "Apple arm64 bf16"
    return None


def matmul_speedup(dtype: torch.dtype, device: torch.device, size: int = 512) -> float:
    """How many times faster a transformer-sized matmul runs in `dtype` than in fp32 here."""

    def best(dt: torch.dtype) -> float:
        a = torch.randn(2 * size, size, device=device).to(dt)
        b = torch.randn(size, size, device=device).to(dt)
        times = []
        for _ in range(7):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    best(torch.float32)
    fp32, low = best(torch.float32), best(dtype)
    return fp32 / max(low, 1e-12)


def resolve_precision(
    requested: str,
    device: torch.device | str = "cpu",
    speedup: Callable[[torch.dtype, torch.device], float] = matmul_speedup,
) -> Precision:
    """The precision to run in on `device`: a request the device cannot honour falls back."""
    if requested not in CHOICES:
        raise ValueError(f"unknown precision {requested!r}; choices: {', '.join(CHOICES)}")
    device = torch.device(device)
    kind = device.type
    if requested == "fp32":
        return Precision("fp32", kind, requested, "asked for")
    if kind == "cuda":
        return _resolve_cuda(requested, device, speedup)
    feature = cpu_bf16_instructions()
    if feature is None:
        return Precision(
            "fp32", kind, requested, "this CPU has no bf16 instructions (amx_bf16, avx512_bf16)"
        )
    if requested == "bf16":
        return Precision("bf16", kind, requested, f"asked for; the CPU has {feature}")
    ratio = speedup(torch.bfloat16, device)
    if ratio >= AUTO_MIN_SPEEDUP:
        return Precision("bf16", kind, requested, f"{feature}: bf16 matmul {ratio:.1f}x fp32 here")
    return Precision(
        "fp32", kind, requested, f"{feature}, but bf16 matmul is only {ratio:.2f}x fp32 here"
    )


def _resolve_cuda(
    requested: str, device: torch.device, speedup: Callable[[torch.dtype, torch.device], float]
) -> Precision:
    name = torch.cuda.get_device_name(device)
    if torch.cuda.is_bf16_supported():
        if requested == "bf16":
            return Precision("bf16", "cuda", requested, f"asked for; {name} has bf16")
        ratio = speedup(torch.bfloat16, device)
        if ratio >= AUTO_MIN_SPEEDUP:
            return Precision("bf16", "cuda", requested, f"{name}: bf16 matmul {ratio:.1f}x fp32")
        return Precision("fp32", "cuda", requested, f"{name}: bf16 only {ratio:.2f}x fp32")
    return Precision("fp16", "cuda", requested, f"{name} has no bf16: fp16 with loss scaling")


def add_precision_option(
    parser: argparse.ArgumentParser, what: str, default: str | None = "fp32"
) -> None:
    """The one `--precision` option every command shares (`default=None`: the parser's)."""
    extra = {} if default is None else {"default": default}
    parser.add_argument(
        "--precision",
        choices=CHOICES,
        help=f"number format {what}: fp32 (default), bf16 (fp32 where the device has no bf16) "
        "or auto (bf16 where it is measured faster here)",
        **extra,
    )


__all__ = [
    "CHOICES",
    "FP32",
    "Precision",
    "add_precision_option",
    "cpu_bf16_instructions",
    "matmul_speedup",
    "resolve_precision",
]
