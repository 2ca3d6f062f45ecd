"""Training and validation losses on padded target batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass
class TokenLoss:
    """Summed losses over `tokens` real target tokens; divide for per-token figures."""

    loss: Tensor
    nll: Tensor
    tokens: int


def label_smoothed_loss(
    logits: Tensor, target: Tensor, pad_id: int, smoothing: float = 0.1
) -> TokenLoss:
    """fairseq's label-smoothed cross entropy: (1-eps)*nll + eps * mean over the vocabulary."""
    logp = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(pad_id)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(dim=-1)
    nll = nll.masked_select(keep).sum()
    smooth = smooth.masked_select(keep).sum()
    loss = (1.0 - smoothing) * nll + smoothing * smooth
    return TokenLoss(loss, nll, int(keep.sum()))


def per_token(value: Tensor, tokens: int) -> float:
    return float(value) / max(tokens, 1)


__all__ = ["TokenLoss", "label_smoothed_loss", "per_token"]
