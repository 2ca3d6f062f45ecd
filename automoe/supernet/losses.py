"""Training and validation losses on padded target batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

CHUNK_ELEMENTS = 1 << 18
"""Logits worked on at once on a CPU (1 MiB in fp32): a slice of rows that stays in cache."""


@dataclass
class TokenLoss:
    """Summed losses over `tokens` real target tokens; divide for per-token figures."""

    loss: Tensor
    nll: Tensor
    tokens: int


class _RowLosses(torch.autograd.Function):
    """Per row of (N, V) logits: the nll of its target and minus its mean log-probability.

    Autograd's log_softmax, gather and mean would each materialise an (N, V) fp32 tensor and
    a gradient of that size: at 4,096 tokens and 8,000 words, 18-28% of a bf16 CPU training
    update (benchmarks/results/train_loss.md). Here each slice of rows is read in fp32 and
    dropped, and the gradient, softmax * (g_nll + g_smooth) - g_smooth / V - g_nll at the
    target, is written once in the logits' dtype.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, rows: int) -> tuple[Tensor, Tensor]:
        dtype = torch.promote_types(logits.dtype, torch.float32)
        lse = logits.new_empty(logits.shape[0], dtype=dtype)
        mean = torch.empty_like(lse)
        for start in range(0, logits.shape[0], rows):
            part = logits[start : start + rows].to(dtype)
            lse[start : start + rows] = torch.logsumexp(part, dim=-1)
            mean[start : start + rows] = part.mean(dim=-1)
        picked = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1).to(dtype)
        ctx.save_for_backward(logits, target, lse)
        ctx.rows = rows
        return lse - picked, lse - mean

    @staticmethod
    def backward(ctx: Any, grad_nll: Tensor, grad_smooth: Tensor) -> tuple[Tensor, None, None]:
        logits, target, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        both = grad_nll + grad_smooth
        spread = grad_smooth / logits.shape[-1]
        for start in range(0, logits.shape[0], ctx.rows):
            rows = slice(start, start + ctx.rows)
            part = torch.sub(logits[rows].to(lse.dtype), lse[rows, None]).exp_()
            part.mul_(both[rows, None]).sub_(spread[rows, None])
            part.scatter_add_(-1, target[rows, None], -grad_nll[rows, None])
            grad[rows] = part
        return grad, None, None


def label_smoothed_loss(
    logits: Tensor, target: Tensor, pad_id: int, smoothing: float = 0.1
) -> TokenLoss:
    """fairseq's label-smoothed cross entropy: (1-eps)*nll + eps * mean over the vocabulary,
    in fp32 (or the logits' wider dtype) whatever the forward ran in."""
    vocab = logits.shape[-1]
    flat, gold = logits.reshape(-1, vocab), target.reshape(-1)
    # A GPU streams whole tensors; a CPU works best on slices that stay in cache.
    rows = max(1, CHUNK_ELEMENTS // vocab) if flat.device.type == "cpu" else max(1, len(flat))
    nll, smooth = _RowLosses.apply(flat, gold, rows)
    keep = gold.ne(pad_id)
    nll = nll.masked_select(keep).sum()
    smooth = smooth.masked_select(keep).sum()
    loss = (1.0 - smoothing) * nll + smoothing * smooth
    return TokenLoss(loss, nll, int(keep.sum()))


def per_token(value: Tensor, tokens: int) -> float:
    return float(value) / max(tokens, 1)


__all__ = ["TokenLoss", "label_smoothed_loss", "per_token"]
