"""Training steps with attention in plain matmuls vs PyTorch's fused SDPA kernels, on the CPU.

`automoe.supernet.layers.attention` picks, per call, between softmax(QK^T / sqrt(d)) V in
autograd's matmuls (`attention_in_matmuls`) and `F.scaled_dot_product_attention`; it takes the
matmuls for bf16 training on the CPU. This benchmark is the measurement behind that choice:
whole training steps (forward, label-smoothed loss, backward, Adam: bench_elastic's
`TrainStep`) of a dense and a 4-expert model of the multi30k space's largest shape (embed 256,
4+4 layers, FFN 1024), in fp32 and bf16, on batches of about 4,000 target tokens with
Multi30k-like sentence lengths.

Every model runs twice from the same initial weights on the same batches, once with each
attention patched in (`matmuls`, `fused`), the variants interleaved round by round in
rotating order. The headline per model and precision is the median over quiet rounds of the
per-round ratio fused / matmuls (above 1: the matmuls are faster).

Usage: python benchmarks/bench_train_attention.py [--threads 1] [--repeats 8]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from unittest import mock

import paired_steps
import torch
import torch.nn.functional as F
from bench_elastic import QKV, SHAPE, VOCAB, TrainStep, n_params
from paired_steps import PRECISIONS
from torch import Tensor

from automoe.precision import resolve_precision
from automoe.supernet.layers import attention_in_matmuls
from automoe.supernet.model import ModelConfig, Transformer

MODELS = {
    "dense": replace(SHAPE, encoder_ffn_dims=[[1024]] * 4, decoder_ffn_dims=[[1024]] * 4),
    "moe": SHAPE,
}


def fused_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, causal: bool
) -> Tensor:
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal
    )


KERNELS = {"matmuls": attention_in_matmuls, "fused": fused_attention}


def with_attention(kind: str, step: Callable[[], None]) -> Callable[[], None]:
    """`step` with every attention of the model computed by `KERNELS[kind]`."""

    def run() -> None:
        with mock.patch("automoe.supernet.layers.attention", KERNELS[kind]):
            step()

    return run


def variants(
    batches: list, lr: float, seed: int
) -> tuple[dict[str, Callable[[], None]], dict[str, int]]:
    """Two training steps per model and precision, each over a model of its own."""
    steps: dict[str, Callable[[], None]] = {}
    params: dict[str, int] = {}
    for name, arch in MODELS.items():
        for precision in PRECISIONS:  # named as asked: a CPU without bf16 runs fp32 twice
            for kind in KERNELS:
                torch.manual_seed(seed)
                model = Transformer(ModelConfig(VOCAB, QKV, arch))
                params[name] = n_params(model)
                step = TrainStep(model, None, batches, lr, resolve_precision(precision))
                key = f"{name} {precision} {kind}"
                steps[key] = with_attention(kind, step)
    return steps, params


COMPARISON = paired_steps.Comparison(
    name="train_attention",
    title="Training steps: attention in plain matmuls vs PyTorch's fused SDPA kernels",
    ways=("matmuls", "fused"),
    cases=[f"{name} {precision}" for name in MODELS for precision in PRECISIONS],
    describe=[
        f"- models: vocab {VOCAB}, embed 256, QKV {QKV}, 4 heads, 4+4 layers, FFN 1024 "
        "(dense: one expert; moe: 4 top-1 experts in every layer), dropout 0.1"
    ],
    precision_note="under autocast, loss, weights and Adam in fp32",
    closing="A ratio above 1: with the fused kernels a training step takes that many times as "
    "long. automoe takes the matmuls for bf16 training on the CPU and the fused kernels "
    "everywhere else. Both variants train the same weights on the same batches and "
    "dropout draws; `tests/test_attention.py` checks that their outputs and gradients "
    "agree.",
)


def main(argv: list[str] | None = None) -> int:
    return paired_steps.main(COMPARISON, variants, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
