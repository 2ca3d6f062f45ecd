"""Mixture-of-Experts feed-forward layer with elastic experts and replaceable routers.

Every expert owns private weights of its largest width; a sub-network uses the first `e`
experts, each sliced to its own width (top-left corner), so experts of one layer may differ in
size. Tokens are grouped by expert with one sort and each expert runs one matmul over its
group: there is no Python loop over tokens.

Routers differ only in what they look at (Task-MoE's routing granularity): the token's hidden
state, a pooled representation of its source sentence, or its task id. A layer holds one
router per granularity its architectures may choose and uses the one the sub-network names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automoe.errors import AutomoeError


class RoutingError(AutomoeError, ValueError):
    """A routing mode the model lacks, or inputs a router needs and did not get."""


@dataclass
class RoutingContext:
    """What a router may look at besides a token's hidden state.

    `token_rows` maps each routed token to its sentence (row of the batch), so sentence- and
    task-level routers can look up per-sentence inputs: `task_ids` [B] and `sentence_states`
    [B, d], a pooled source representation (None lets the layer pool its own input).
    """

    token_rows: Tensor
    task_ids: Tensor | None = None
    sentence_states: Tensor | None = None


@dataclass
class RoutingStats:
    """Per-layer routing outcome: the balance loss and how many tokens each expert got."""

    balance_loss: Tensor
    expert_counts: Tensor


class _LinearRouter(nn.Module):
    """A linear map to one logit per expert, sliced to the active input width and experts."""

    def __init__(self, in_dim: int, num_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, in_dim))
        self.bias = nn.Parameter(torch.zeros(num_experts))
        nn.init.normal_(self.weight, std=in_dim**-0.5)

    def _logits(self, h: Tensor, num_experts: int) -> Tensor:
        d = h.shape[-1]
        return F.linear(h, self.weight[:num_experts, :d], self.bias[:num_experts])


class TokenRouter(_LinearRouter):
    """Switch routing on the token's own hidden state."""

    def __init__(self, embed_dim: int, num_experts: int, sentence_dim: int, num_tasks: int) -> None:
        super().__init__(embed_dim, num_experts)

    def forward(self, x: Tensor, num_experts: int, context: RoutingContext) -> Tensor:
        return self._logits(x, num_experts)


class SentenceRouter(_LinearRouter):
    """Routing on the pooled source sentence: every token of a sentence gets its logits."""

    needs_sentence_states = True

    def __init__(self, embed_dim: int, num_experts: int, sentence_dim: int, num_tasks: int) -> None:
        super().__init__(sentence_dim, num_experts)

    def forward(self, x: Tensor, num_experts: int, context: RoutingContext) -> Tensor:
        if context.sentence_states is None:
            raise RoutingError("sentence routing needs the pooled source sentence states")
        per_sentence = self._logits(context.sentence_states, num_experts)
        return per_sentence.index_select(0, context.token_rows)


class TaskRouter(nn.Module):
    """Routing on the task id alone: one learned logit row per task (language pair)."""

    def __init__(self, embed_dim: int, num_experts: int, sentence_dim: int, num_tasks: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_tasks, num_experts).normal_(std=0.1))

    def forward(self, x: Tensor, num_experts: int, context: RoutingContext) -> Tensor:
        if context.task_ids is None:
            raise RoutingError(
                "task routing needs a task id per sentence; pass task_ids (the pair's index)"
            )
        rows = context.task_ids.index_select(0, context.token_rows)
        if len(rows) and int(rows.max()) >= self.logits.shape[0]:
            raise RoutingError(
                f"task id {int(rows.max())} is out of range: the model was built for "
                f"{self.logits.shape[0]} task(s)"
            )
        return self.logits[:, :num_experts].index_select(0, rows).to(x.dtype)


ROUTERS: dict[str, type[nn.Module]] = {
    "token": TokenRouter,
    "sentence": SentenceRouter,
    "task": TaskRouter,
}


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
        routers: Sequence[str] = ("token",),
        activation_dropout: float = 0.0,
        capacity_factor: float | None = None,
        sentence_dim: int | None = None,
        num_tasks: int = 1,
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Expert(embed_dim, f) for f in expert_dims)
        self.routers = nn.ModuleDict()
        if len(expert_dims) > 1:
            for mode in routers:
                if mode not in ROUTERS:
                    raise RoutingError(f"unknown routing mode {mode!r}; choices: {list(ROUTERS)}")
                self.routers[mode] = ROUTERS[mode](
                    embed_dim, len(expert_dims), sentence_dim or embed_dim, num_tasks
                )
        self.activation_dropout = activation_dropout
        self.capacity_factor = capacity_factor

    def needs_sentence_states(self, routing: str, num_experts: int) -> bool:
        """Whether routing this layer needs `RoutingContext.sentence_states`."""
        return num_experts > 1 and getattr(self.routers[routing], "needs_sentence_states", False)

    def forward(
        self,
        x: Tensor,
        widths: Sequence[int],
        top_k: int,
        context: RoutingContext,
        routing: str = "token",
    ) -> tuple[Tensor, RoutingStats | None]:
        """Apply the sub-network's experts to tokens `x` of shape [N, d], routed by `routing`."""
        num_experts = len(widths)
        if num_experts == 1:
            return self.experts[0](x, widths[0], self.activation_dropout), None
        if routing not in self.routers:
            raise RoutingError(
                f"this layer cannot route by {routing!r}; it holds routers {list(self.routers)}"
            )
        logits = self.routers[routing](x, num_experts, context)
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
