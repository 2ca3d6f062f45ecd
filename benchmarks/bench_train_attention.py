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
from typing import Any
from unittest import mock

import common
import torch
import torch.nn.functional as F
from bench_elastic import QKV, SHAPE, VOCAB, TrainStep, make_batches, n_params
from torch import Tensor

from automoe.precision import resolve_precision
from automoe.supernet.layers import attention_in_matmuls
from automoe.supernet.model import ModelConfig, Transformer

NAME = "train_attention"
PRECISIONS = ("fp32", "bf16")
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


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Per model and precision: both variants' step times and the ratio fused / matmuls."""
    rows: dict[str, Any] = {}
    for name in MODELS:
        for precision in PRECISIONS:
            pair = {k: run["variants"][f"{name} {precision} {k}"] for k in KERNELS}
            stats = common.analyse({"variants": pair, "other_cores": run["other_cores"]}, "matmuls")
            rows[f"{name} {precision}"] = stats
    return rows


def markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    table = []
    for key, stats in payload["results"].items():
        v = stats["variants"]
        q = {k: v[k]["quiet"]["wall"] for k in KERNELS}
        table.append(
            [
                key,
                f"{payload['params'][key.split()[0]]:,}",
                f"{q['matmuls']['median_s'] * 1e3:.0f} ({q['matmuls']['q1_s'] * 1e3:.0f}-"
                f"{q['matmuls']['q3_s'] * 1e3:.0f})",
                f"{q['fused']['median_s'] * 1e3:.0f} ({q['fused']['q1_s'] * 1e3:.0f}-"
                f"{q['fused']['q3_s'] * 1e3:.0f})",
                f"{v['fused']['quiet']['paired_ratio']:.3f}",
                f"{v['fused']['all']['paired_ratio']:.3f}",
                f"{stats['quiet_rounds_found']} of {stats['rounds']}",
            ]
        )
    warning = (
        ["**WARNING: fewer than 3 quiet rounds; these numbers measure CPU contention.**"]
        if payload["contended"]
        else []
    )
    return "\n\n".join(
        [
            "# Training steps: attention in plain matmuls vs PyTorch's fused SDPA kernels",
            *warning,
            common.machine_markdown(payload["machine"]),
            f"- models: vocab {VOCAB}, embed 256, QKV {QKV}, 4 heads, 4+4 layers, FFN 1024 "
            "(dense: one expert; moe: 4 top-1 experts in every layer), dropout 0.1",
            "- precision asked for -> run in: "
            + "; ".join(
                f"{k} -> {v['precision']} ({v['reason']})" for k, v in s["precisions"].items()
            )
            + "; under autocast, loss, weights and Adam in fp32",
            f"- batches: {s['batch_sizes']} sentences, {s['target_tokens']} target tokens, "
            f"lengths {s['lengths'][0]}-{s['lengths'][1]} drawn uniformly; Adam lr {s['lr']}",
            f"- {s['rounds']} rounds interleaved in rotating order after {s['warmup']} warm-up "
            "round(s); quiet rounds: other processes used less than "
            f"{s['quiet_cores']:.1f} cores",
            common.markdown_table(
                [
                    "model, precision",
                    "params",
                    "matmuls: step ms (IQR)",
                    "fused: step ms (IQR)",
                    "fused / matmuls, quiet rounds",
                    "all rounds",
                    "quiet rounds",
                ],
                table,
            ),
            "A ratio above 1: with the fused kernels a training step takes that many times as "
            "long. automoe takes the matmuls for bf16 training on the CPU and the fused kernels "
            "everywhere else. Both variants train the same weights on the same batches and "
            "dropout draws; `tests/test_attention.py` checks that their outputs and gradients "
            "agree.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument("--target-tokens", type=int, default=4000, help="target tokens per batch")
    p.add_argument("--batches", type=int, default=3, help="distinct batches, cycled")
    p.add_argument("--min-len", type=int, default=6)
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--wait-quiet", type=float, default=60.0, help="max s to wait for quiet CPUs")
    args = p.parse_args(argv)
    repeats = args.repeats or 8
    warmup = 1 if args.warmup is None else args.warmup
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    batches = make_batches(args.batches, args.target_tokens, args.seed, args.min_len, args.max_len)
    steps, params = variants(batches, args.lr, args.seed)
    quiet = common.wait_for_quiet(args.wait_quiet)
    run = common.interleaved(steps, repeats, warmup, args.max_rounds, args.wait_quiet)
    results = summarise(run)
    found = sum(x < common.QUIET_CORES for x in run["other_cores"])
    payload = {
        "benchmark": NAME,
        "machine": info,
        "quiet_wait_before_run": quiet,
        "contended": found < 3,
        "settings": {
            "target_tokens": [int(b[3].ne(0).sum()) for b in batches],
            "batch_sizes": [int(b[0].shape[0]) for b in batches],
            "lengths": [args.min_len, args.max_len],
            "lr": args.lr,
            "precisions": {p: resolve_precision(p).record() for p in PRECISIONS},
            "rounds": len(run["other_cores"]),
            "repeats": repeats,
            "warmup": warmup,
            "quiet_cores": common.QUIET_CORES,
            "seed": args.seed,
        },
        "params": params,
        "results": results,
    }
    md = markdown(payload)
    print(md)
    if not args.no_write:
        name = NAME + (".contended" if payload["contended"] else "")
        common.write_results(args.out, name, payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
