"""Attention in plain matmuls must equal PyTorch's fused kernels; which one runs when."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.supernet.layers import attention, attention_in_matmuls


def _inputs(
    seed: int, b: int, heads: int, t: int, s: int, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(b, heads, n, dim, generator=g, dtype=torch.float64, requires_grad=True)
        for n in (t, s, s)
    )
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    keep = (torch.arange(s) < lengths[:, None])[:, None, None, :]  # padding on the right
    return q, k, v, keep


FUSED = F.scaled_dot_product_attention


def _fused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    return FUSED(q, k, v, attn_mask=mask, is_causal=causal)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 4),
    heads=st.integers(1, 4),
    t=st.integers(1, 9),
    s=st.integers(1, 9),
    dim=st.sampled_from([1, 4, 8]),
    kind=st.sampled_from(["padding", "causal", "none"]),
)
def test_matmuls_equal_the_fused_kernel(
    seed: int, b: int, heads: int, t: int, s: int, dim: int, kind: str
) -> None:
    if kind == "causal":
        s = t  # the model masks the future only in self-attention
    q, k, v, keep = _inputs(seed, b, heads, t, s, dim)
    mask = keep if kind == "padding" else None
    causal = kind == "causal"
    ours = attention_in_matmuls(q, k, v, mask, 0.0, causal)
    grad = torch.randn_like(ours)
    mine = torch.autograd.grad(ours, (q, k, v), grad)
    ref = _fused(q, k, v, mask, causal)
    theirs = torch.autograd.grad(ref, (q, k, v), grad)
    torch.testing.assert_close(ours, ref)
    for a, r in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, r)


def test_causal_is_top_left_aligned_like_the_fused_kernel() -> None:
    q, k, v, _ = _inputs(0, 2, 2, 3, 5, 4)
    ours = attention_in_matmuls(q, k, v, None, 0.0, True)
    torch.testing.assert_close(ours, _fused(q, k, v, None, True))


def test_dropout_is_drawn_from_the_torch_seed() -> None:
    q, k, v, keep = _inputs(1, 2, 2, 6, 6, 4)
    torch.manual_seed(0)
    dropped = attention_in_matmuls(q, k, v, keep, 0.5, False)
    plain = attention_in_matmuls(q, k, v, keep, 0.0, False)
    assert not torch.allclose(dropped, plain)
    torch.manual_seed(0)
    torch.testing.assert_close(attention_in_matmuls(q, k, v, keep, 0.5, False), dropped)


@pytest.mark.parametrize(
    ("dtype", "grad", "fused"),
    [
        (torch.bfloat16, True, False),  # bf16 training: the matmuls
        (torch.bfloat16, False, True),  # decoding
        (torch.float32, True, True),  # fp32 training: the fused kernel is as fast
        (torch.float32, False, True),
    ],
)
def test_bf16_training_takes_the_matmuls_all_else_the_fused_kernel(
    dtype: torch.dtype, grad: bool, fused: bool
) -> None:
    q, k, v, keep = _inputs(2, 2, 2, 4, 4, 4)
    q, k, v = (x.detach().to(dtype) for x in (q, k, v))
    with (
        mock.patch.object(F, "scaled_dot_product_attention", wraps=FUSED) as f,
        torch.set_grad_enabled(grad),
    ):
        out = attention(q.requires_grad_(grad), k, v, keep, 0.0, False)
    assert f.call_count == int(fused)
    assert out.requires_grad == grad
