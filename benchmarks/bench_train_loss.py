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

import paired_steps
import torch
import torch.nn.functional as F
from bench_elastic import n_params
from paired_steps import PRECISIONS
from torch import Tensor

from automoe.precision import Precision, resolve_precision
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.losses import TokenLoss, label_smoothed_loss
from automoe.supernet.model import ModelConfig, Transformer

VOCAB, PAD, SMOOTHING, BALANCE = 8000, 0, 0.1, 0.01
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

    def __init__(
        self, model: Transformer, batches: list, lr: float, precision: Precision, loss_fn: LossFn
    ):
        self.model, self.batches, self.precision, self.loss_fn = (
            model.train(),
            batches,
            precision,
            loss_fn,
        )
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
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


def variants(batches: list, lr: float, seed: int) -> tuple[paired_steps.Steps, dict[str, int]]:
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
                    model, batches, lr, resolve_precision(precision), fn
                )
    return steps, params


COMPARISON = paired_steps.Comparison(
    name="train_loss",
    title="Training updates: the label-smoothed loss fused per slice of rows vs autograd's ops",
    ways=("autograd", "fused"),
    cases=["loss bf16", *(f"{m} {p}" for m in MODELS for p in PRECISIONS)],
    describe=[
        "- models: the headline table's dense model and AutoMoE@1/2 winner "
        f"(benchmarks/results/multi30k/), vocab {VOCAB}, dropout 0.1, label smoothing "
        f"{SMOOTHING}; 'loss bf16': the loss alone on random bf16 logits of the first batch"
    ],
    precision_note="the loss in fp32 either way",
    closing="A ratio below 1: with the fused loss an update takes that fraction of the time. "
    "Both variants compute the same loss and gradient up to float rounding: "
    "`tests/test_losses.py` checks the fused one against the definition.",
)


def main(argv: list[str] | None = None) -> int:
    return paired_steps.main(COMPARISON, variants, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
