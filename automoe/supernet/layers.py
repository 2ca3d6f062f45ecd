"""Elastic Transformer building blocks: every weight is used through a top-left slice.

A block is built with its largest shape and run with the active sizes of one sub-network, so
the same code serves the SuperNet (sliced views of shared weights) and an extracted model
(whose weights already have the active shape, making each slice a no-op).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automoe.supernet.moe import MoEFeedForward, RoutingContext, RoutingStats

KVCache = dict[str, Tensor]


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, causal: bool
) -> Tensor:
    """Scaled dot-product attention over [B, heads, T, head_dim] tensors.

    bf16 training on the CPU takes plain matmuls: there PyTorch's fused CPU kernels make a
    whole training step 1.13-1.15x as long at translation lengths, while in fp32 they save
    6-9% (benchmarks/results/train_attention.md). Decoding and CUDA keep the fused kernels.
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.requires_grad:
        return attention_in_matmuls(q, k, v, mask, dropout, causal)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal
    )


def attention_in_matmuls(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, causal: bool
) -> Tensor:
    """softmax(QK^T / sqrt(head_dim)) V, as the fused kernels define it, in autograd's ops."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if causal:  # top-left aligned, as the fused kernels read is_causal
        t, s = scores.shape[-2:]
        future = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return (F.dropout(weights, dropout) if dropout else weights) @ v


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """fairseq's layout [sin half | cos half], built once at the widest dim and sliced."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    return table


class ElasticLayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        d = x.shape[-1]
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], self.eps)


class ElasticAttention(nn.Module):
    """Multi-head attention with a fixed Q/K/V width; the head count re-partitions it."""

    def __init__(self, query_dim: int, key_dim: int, qkv_dim: int, dropout: float) -> None:
        super().__init__()
        self.q_proj = nn.Linear(query_dim, qkv_dim)
        self.k_proj = nn.Linear(key_dim, qkv_dim)
        self.v_proj = nn.Linear(key_dim, qkv_dim)
        self.out_proj = nn.Linear(qkv_dim, query_dim)
        self.dropout = dropout
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _project(self, proj: nn.Linear, x: Tensor, heads: int) -> Tensor:
        b, t, d = x.shape
        y = F.linear(x, proj.weight[:, :d], proj.bias)
        return y.view(b, t, heads, -1).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        memory: Tensor | None,
        heads: int,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Self-attention when `memory` is None; `cache` holds keys/values for decoding.

        `mask` is boolean, broadcastable to [B, heads, T, S], True where attention is allowed.
        """
        b, t, d = query.shape
        q = self._project(self.q_proj, query, heads)
        if memory is None:
            k = self._project(self.k_proj, query, heads)
            v = self._project(self.v_proj, query, heads)
            if cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        elif cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k = self._project(self.k_proj, memory, heads)
            v = self._project(self.v_proj, memory, heads)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask, p, causal)
        out = out.transpose(1, 2).reshape(b, t, -1)
        return F.linear(out, self.out_proj.weight[:d, :], self.out_proj.bias[:d])


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + MoE FFN block."""

    def __init__(
        self,
        embed_dim: int,
        qkv_dim: int,
        expert_dims: tuple[int, ...],
        routers: tuple[str, ...],
        attention_dropout: float,
        activation_dropout: float,
        capacity_factor: float | None,
        num_tasks: int,
    ) -> None:
        super().__init__()
        self.attn_norm = ElasticLayerNorm(embed_dim)
        self.attn = ElasticAttention(embed_dim, embed_dim, qkv_dim, attention_dropout)
        self.ffn_norm = ElasticLayerNorm(embed_dim)
        self.ffn = MoEFeedForward(
            embed_dim,
            expert_dims,
            routers,
            activation_dropout,
            capacity_factor,
            sentence_dim=embed_dim,
            num_tasks=num_tasks,
        )

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        keep: Tensor | None,
        heads: int,
        widths: tuple[int, ...],
        top_k: int,
        context: RoutingContext,
        dropout: float,
        routing: str = "token",
    ) -> tuple[Tensor, RoutingStats | None]:
        h = self.attn(self.attn_norm(x), None, heads, mask=mask)
        x = x + F.dropout(h, dropout, self.training)
        y, stats = apply_ffn(self.ffn, self.ffn_norm(x), keep, widths, top_k, context, routing)
        return x + F.dropout(y, dropout, self.training), stats


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention, encoder-decoder attention and MoE FFN block."""

    def __init__(
        self,
        embed_dim: int,
        encoder_dim: int,
        qkv_dim: int,
        expert_dims: tuple[int, ...],
        routers: tuple[str, ...],
        attention_dropout: float,
        activation_dropout: float,
        capacity_factor: float | None,
        num_tasks: int,
    ) -> None:
        super().__init__()
        self.self_norm = ElasticLayerNorm(embed_dim)
        self.self_attn = ElasticAttention(embed_dim, embed_dim, qkv_dim, attention_dropout)
        self.cross_norm = ElasticLayerNorm(embed_dim)
        self.cross_attn = ElasticAttention(embed_dim, encoder_dim, qkv_dim, attention_dropout)
        self.ffn_norm = ElasticLayerNorm(embed_dim)
        self.ffn = MoEFeedForward(
            embed_dim,
            expert_dims,
            routers,
            activation_dropout,
            capacity_factor,
            sentence_dim=encoder_dim,
            num_tasks=num_tasks,
        )

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        keep: Tensor | None,
        self_heads: int,
        cross_heads: int,
        widths: tuple[int, ...],
        top_k: int,
        context: RoutingContext,
        dropout: float,
        cache: dict[str, KVCache] | None = None,
        routing: str = "token",
    ) -> tuple[Tensor, RoutingStats | None]:
        causal = cache is None and x.shape[1] > 1
        self_cache = None if cache is None else cache.setdefault("self", {})
        cross_cache = None if cache is None else cache.setdefault("cross", {})
        h = self.self_attn(self.self_norm(x), None, self_heads, causal=causal, cache=self_cache)
        x = x + F.dropout(h, dropout, self.training)
        h = self.cross_attn(
            self.cross_norm(x), memory, cross_heads, mask=memory_mask, cache=cross_cache
        )
        x = x + F.dropout(h, dropout, self.training)
        y, stats = apply_ffn(self.ffn, self.ffn_norm(x), keep, widths, top_k, context, routing)
        return x + F.dropout(y, dropout, self.training), stats


def pooled_states(flat: Tensor, keep: Tensor | None, batch: int, length: int) -> Tensor:
    """Mean over each sentence's real tokens of `flat` ([B*T, d]; `keep` = real token rows)."""
    if keep is None:
        return flat.view(batch, length, -1).mean(dim=1)
    rows = keep // length
    sums = flat.new_zeros(batch, flat.shape[1]).index_add_(0, rows, flat.index_select(0, keep))
    counts = torch.bincount(rows, minlength=batch).clamp_min(1).to(flat.dtype)
    return sums / counts[:, None]


def apply_ffn(
    ffn: MoEFeedForward,
    x: Tensor,
    keep: Tensor | None,
    widths: tuple[int, ...],
    top_k: int,
    context: RoutingContext,
    routing: str = "token",
) -> tuple[Tensor, RoutingStats | None]:
    """Route only real tokens: padding must not sway the router or the balance loss.

    `keep` holds the flat indices of non-padding tokens of x viewed as [B*T, d] (None = all).
    A sentence router without given sentence states (the encoder's case) pools this input.
    """
    b, t, d = x.shape
    flat = x.reshape(b * t, d)
    if context.sentence_states is None and ffn.needs_sentence_states(routing, len(widths)):
        context = replace(context, sentence_states=pooled_states(flat, keep, b, t))
    if keep is None or len(widths) == 1:
        y, stats = ffn(flat, widths, top_k, context, routing)
        return y.view(b, t, d), stats
    y_kept, stats = ffn(flat.index_select(0, keep), widths, top_k, context, routing)
    y = flat.new_zeros(b * t, d).index_copy_(0, keep, y_kept)
    return y.view(b, t, d), stats
