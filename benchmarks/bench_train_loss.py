"""Training updates with the label-smoothed loss fused per slice of rows vs autograd's ops.

`automoe.supernet.losses.label_smoothed_loss` computes each target's nll and the smoothing
term a slice of rows at a time and writes the logits' gradient once (`_RowLosses`). Before,
autograd's log_softmax, gather and mean each materialised an fp32 tensor of every target
token times the vocabulary, and as many gradients. This benchmark is the measurement behind
the change: the loss alone (forward and backward on bf16 logits of one batch) and whole
training updates (forward under autocast, loss, backward, Adam) of two models of the
headline table, the dense model and AutoMoE@1/2's winner (benchmarks/results/multi30k/),
in fp32 and bf16, on batches of about 4,000 target tokens with Multi30k-like lengths.

The variants (`autograd`, `fused`) start from the same weights and see the same batches and
dropout draws, interleaved round by round in rotating order. The headline is the median over
quiet rounds of the per-round ratio fused / autograd (below 1: the fused loss is faster).

Usage: python benchmarks/bench_train_loss.py [--threads 1] [--repeats 8]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import torch
import torch.nn.functional as F
from bench_elastic import make_batches, n_params
from torch import Tensor

from automoe.precision import Precision, resolve_precision
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.losses import TokenLoss, label_smoothed_loss
from automoe.supernet.model import ModelConfig, Transformer

NAME = "train_loss"
VOCAB, PAD, SMOOTHING, BALANCE = 8000, 0, 0.1, 0.01
PRECISIONS = ("fp32", "bf16")
ARCHS = Path(__file__).parent / "results" / "multi30k"
MODELS = {"dense": ARCHS / "dense.yaml", "AutoMoE@1/2": ARCHS / "automoe-half.yaml"}
LossFn = Callable[[Tensor, Tensor, int, float], TokenLoss]


def autograd_loss(logits: Tensor, target: Tensor, pad_id: int, smoothing: float) -> TokenLoss:
    """The loss as automoe computed it before: autograd over full-size fp32 tensors."""
    logp = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(pad_id)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_select(keep).sum()
    smooth = -logp.mean(dim=-1).masked_select(keep).sum()
    return TokenLoss((1.0 - smoothing) * nll + smoothing * smooth, nll, int(keep.sum()))


LOSSES: dict[str, LossFn] = {"autograd": autograd_loss, "fused": label_smoothed_loss}


class Update:
    """One training update of `model` on the next batch with `loss_fn`, as the trainer does
    it: the loss per target token plus the load-balancing loss, then Adam."""

    def __init__(self, model: Transformer, batches: list, precision: Precision, loss_fn: LossFn):
        self.model, self.batches, self.precision, self.loss_fn = (
            model.train(),
            batches,
            precision,
            loss_fn,
        )
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.98))
        self.i = 0

    def __call__(self) -> None:
        src, pm, prev, gold = self.batches[self.i % len(self.batches)]
        torch.manual_seed(1000 + self.i)  # update i draws the same dropout masks in every variant
        self.i += 1
        with self.precision.autocast():
            out = self.model(src, pm, prev)
        part = self.loss_fn(out.logits, gold, PAD, SMOOTHING)
        self.opt.zero_grad(set_to_none=True)
        (part.loss / part.tokens + BALANCE * out.balance_loss).backward()
        self.opt.step()


class LossOnly:
    """Forward and backward of the loss alone on fixed bf16 logits of one batch."""

    def __init__(self, gold: Tensor, loss_fn: LossFn, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.logits = torch.randn(*gold.shape, VOCAB, generator=gen).bfloat16()
        self.gold, self.loss_fn = gold, loss_fn

    def __call__(self) -> None:
        logits = self.logits.clone().requires_grad_()
        part = self.loss_fn(logits, self.gold, PAD, SMOOTHING)
        (part.loss / part.tokens).backward()


def variants(batches: list, seed: int) -> tuple[dict[str, Callable[[], None]], dict[str, int]]:
    """Every (case, loss) pair; a case is the loss alone or a model in a precision."""
    qkv = SearchSpace.load("multi30k").qkv_dim
    steps: dict[str, Callable[[], None]] = {}
    for kind, fn in LOSSES.items():
        steps[f"loss bf16 {kind}"] = LossOnly(batches[0][3], fn, seed)
    params: dict[str, int] = {}
    for name, path in MODELS.items():
        for precision in PRECISIONS:  # named as asked: a CPU without bf16 runs fp32 twice
            for kind, fn in LOSSES.items():
                torch.manual_seed(seed)
                model = Transformer(ModelConfig(VOCAB, qkv, ArchConfig.load(path)))
                params[name] = n_params(model)
                steps[f"{name} {precision} {kind}"] = Update(
                    model, batches, resolve_precision(precision), fn
                )
    return steps, params


def cases() -> list[str]:
    return ["loss bf16", *(f"{m} {p}" for m in MODELS for p in PRECISIONS)]


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Per case: both losses' times and the ratio fused / autograd."""
    rows: dict[str, Any] = {}
    for case in cases():
        pair = {k: run["variants"][f"{case} {k}"] for k in LOSSES}
        rows[case] = common.analyse(
            {"variants": pair, "other_cores": run["other_cores"]}, "autograd"
        )
    return rows


def _ms(stats: dict[str, Any]) -> str:
    w = stats["quiet"]["wall"]
    return f"{w['median_s'] * 1e3:.0f} ({w['q1_s'] * 1e3:.0f}-{w['q3_s'] * 1e3:.0f})"


def markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    table = []
    for case, stats in payload["results"].items():
        v = stats["variants"]
        model = case.rsplit(" ", 1)[0]
        table.append(
            [
                case,
                f"{payload['params'][model]:,}" if model in payload["params"] else "",
                _ms(v["autograd"]),
                _ms(v["fused"]),
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
            "# Training updates: the label-smoothed loss fused per slice of rows vs autograd's ops",
            *warning,
            common.machine_markdown(payload["machine"]),
            f"- models: the headline table's dense model and AutoMoE@1/2 winner "
            f"(benchmarks/results/multi30k/), vocab {VOCAB}, dropout 0.1, label smoothing "
            f"{SMOOTHING}; 'loss bf16': the loss alone on random bf16 logits of the first batch",
            "- precision asked for -> run in: "
            + "; ".join(
                f"{k} -> {v['precision']} ({v['reason']})" for k, v in s["precisions"].items()
            )
            + "; the loss in fp32 either way",
            f"- batches: {s['batch_sizes']} sentences, {s['target_tokens']} target tokens, "
            f"lengths {s['lengths'][0]}-{s['lengths'][1]} drawn uniformly; Adam lr 1e-05",
            f"- {s['rounds']} rounds interleaved in rotating order after {s['warmup']} warm-up "
            "round(s); quiet rounds: other processes used less than "
            f"{s['quiet_cores']:.1f} cores",
            common.markdown_table(
                [
                    "case",
                    "params",
                    "autograd: ms (IQR)",
                    "fused: ms (IQR)",
                    "fused / autograd, quiet rounds",
                    "all rounds",
                    "quiet rounds",
                ],
                table,
            ),
            "A ratio below 1: with the fused loss an update takes that fraction of the time. "
            "Both variants compute the same loss and gradient up to float rounding: "
            "`tests/test_losses.py` checks the fused one against the definition.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument("--target-tokens", type=int, default=4000, help="target tokens per batch")
    p.add_argument("--batches", type=int, default=3, help="distinct batches, cycled")
    p.add_argument("--min-len", type=int, default=6)
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--wait-quiet", type=float, default=60.0, help="max s to wait for quiet CPUs")
    args = p.parse_args(argv)
    repeats = args.repeats or 8
    warmup = 1 if args.warmup is None else args.warmup
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    batches = make_batches(args.batches, args.target_tokens, args.seed, args.min_len, args.max_len)
    steps, params = variants(batches, args.seed)
    quiet = common.wait_for_quiet(args.wait_quiet)
    run = common.interleaved(steps, repeats, warmup, args.max_rounds, args.wait_quiet)
    found = sum(x < common.QUIET_CORES for x in run["other_cores"])
    payload = {
        "benchmark": NAME,
        "machine": info,
        "quiet_wait_before_run": quiet,
        "contended": found < 3,
        "settings": {
            "target_tokens": [int(b[3].ne(PAD).sum()) for b in batches],
            "batch_sizes": [int(b[0].shape[0]) for b in batches],
            "lengths": [args.min_len, args.max_len],
            "precisions": {p: resolve_precision(p).record() for p in PRECISIONS},
            "rounds": len(run["other_cores"]),
            "repeats": repeats,
            "warmup": warmup,
            "quiet_cores": common.QUIET_CORES,
            "seed": args.seed,
        },
        "params": params,
        "results": summarise(run),
    }
    md = markdown(payload)
    print(md)
    if not args.no_write:
        name = NAME + (".contended" if payload["contended"] else "")
        common.write_results(args.out, name, payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
