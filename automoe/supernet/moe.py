"""Mixture-of-Experts feed-forward layer with elastic experts and replaceable routers.

Every expert owns private weights of its largest width; a sub-network uses the first `e`
experts, each sliced to its own width (top-left corner), so experts of one layer may differ in
size. Tokens are grouped by expert with one sort and each expert runs one matmul over its
group: there is no Python loop over tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class RoutingContext:
    """What a router may look at besides a token's hidden state.

    `token_rows` maps each routed token to its sentence (row of the batch), so sentence- and
    task-level routers can look up per-sentence inputs such as `task_ids`.
    """

    token_rows: Tensor
    task_ids: Tensor | None = None


@dataclass
class RoutingStats:
    """Per-layer routing outcome: the balance loss and how many tokens each expert got."""

    balance_loss: Tensor
    expert_counts: Tensor


class TokenRouter(nn.Module):
    """Switch routing on the token's own hidden state: a linear map to one logit per expert."""

    def __init__(self, embed_dim: int, num_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, embed_dim))
        self.bias = nn.Parameter(torch.zeros(num_experts))
        nn.init.normal_(self.weight, std=embed_dim**-0.5)

    def forward(self, x: Tensor, num_experts: int, context: RoutingContext) -> Tensor:
        d = x.shape[-1]
        return F.linear(x, self.weight[:num_experts, :d], self.bias[:num_experts])


ROUTERS: dict[str, type[nn.Module]] = {"token": TokenRouter}


class Expert(nn.Module):
    """Two-layer ReLU FFN whose active width is a prefix of its full width (0 = identity)."""

    def __init__(self, embed_dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.ffn_dim = ffn_dim
        if ffn_dim > 0:
            self.fc1 = nn.Linear(embed_dim, ffn_dim)
            self.fc2 = nn.Linear(ffn_dim, embed_dim)
            for fc in (self.fc1, self.fc2):
                nn.init.xavier_uniform_(fc.weight)
                nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor, width: int, activation_dropout: float = 0.0) -> Tensor:
        if width == 0:
            return x
        d = x.shape[-1]
        h = F.relu(F.linear(x, self.fc1.weight[:width, :d], self.fc1.bias[:width]))
        if activation_dropout > 0.0:
            h = F.dropout(h, activation_dropout, self.training)
        return F.linear(h, self.fc2.weight[:d, :width], self.fc2.bias[:d])


class MoEFeedForward(nn.Module):
    """A layer of up to `len(expert_dims)` experts; one expert and no router = a dense FFN."""

    def __init__(
        self,
        embed_dim: int,
        expert_dims: Sequence[int],
        router: str = "token",
        activation_dropout: float = 0.0,
        capacity_factor: float | None = None,
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Expert(embed_dim, f) for f in expert_dims)
        self.router = ROUTERS[router](embed_dim, len(expert_dims)) if len(expert_dims) > 1 else None
        self.activation_dropout = activation_dropout
        self.capacity_factor = capacity_factor

    def forward(
        self, x: Tensor, widths: Sequence[int], top_k: int, context: RoutingContext
    ) -> tuple[Tensor, RoutingStats | None]:
        """Apply the sub-network's experts to tokens `x` of shape [N, d]."""
        num_experts = len(widths)
        if num_experts == 1:
            return self.experts[0](x, widths[0], self.activation_dropout), None
        assert self.router is not None
        logits = self.router(x, num_experts, context)
        probs = torch.softmax(logits.float(), dim=-1)
        gate, chosen = probs.topk(top_k, dim=-1)
        if top_k > 1:
            gate = gate / gate.sum(dim=-1, keepdim=True)
        gate = gate.to(x.dtype)

        n = x.shape[0]
        flat_expert = chosen.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=num_experts)
        token_of = order // top_k if top_k > 1 else order
        grouped = x.index_select(0, token_of)
        sizes = counts.tolist()
        capacity = self._capacity(n * top_k, num_experts)
        outputs = []
        for i, chunk in enumerate(grouped.split(sizes)):
            if capacity is not None and sizes[i] > capacity:
                kept = self.experts[i](chunk[:capacity], widths[i], self.activation_dropout)
                chunk = torch.cat([kept, chunk.new_zeros(sizes[i] - capacity, chunk.shape[1])])
            else:
                chunk = self.experts[i](chunk, widths[i], self.activation_dropout)
            outputs.append(chunk)
        mixed = torch.cat(outputs) * gate.reshape(-1, 1).index_select(0, order)
        if top_k == 1:
            out = torch.empty_like(x).index_copy_(0, order, mixed)
        else:
            out = torch.zeros_like(x).index_add_(0, token_of, mixed)

        first_choice = chosen[:, 0]
        fraction = torch.bincount(first_choice, minlength=num_experts).to(probs.dtype) / n
        balance = num_experts * torch.sum(fraction * probs.mean(dim=0))
        return out, RoutingStats(balance, counts)

    def _capacity(self, assignments: int, num_experts: int) -> int | None:
        if self.capacity_factor is None:
            return None
        return max(1, int(self.capacity_factor * assignments / num_experts))
