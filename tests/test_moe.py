"""`MoEFeedForward`: the vectorised dispatch against a naive per-token reference.

The reference loops over tokens, routes each one on its own (softmax over the active experts'
router logits, top-k, renormalised gates for k > 1), applies each chosen expert's sliced
weights and sums the gated results; with a capacity factor it walks the assignments in token
order and drops those beyond an expert's capacity. In fp32 everything runs in float64 so
forward outputs and gradients can be compared tightly (the layer's router softmax runs in
float32, which sets the 1e-5 tolerance). In bf16 layer and reference run under the same
autocast over float32 weights and round at the same points, so their outputs are identical.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from automoe.precision import FP32, Precision
from automoe.space import ArchConfig
from automoe.supernet.model import ModelConfig, Transformer
from automoe.supernet.moe import MoEFeedForward, RoutingContext

# --------------------------------------------------------------------------- reference


def expert_ref(layer: MoEFeedForward, i: int, width: int, x: torch.Tensor) -> torch.Tensor:
    """Expert i at `width` on one token x of shape [d], straight from the sliced weights."""
    if width == 0:
        return x
    d = x.shape[0]
    fc1, fc2 = layer.experts[i].fc1, layer.experts[i].fc2
    # F.linear, not `W @ x + b`: under autocast the bias joins before the one bf16 rounding
    h = torch.relu(F.linear(x, fc1.weight[:width, :d], fc1.bias[:width]))
    return F.linear(h, fc2.weight[:d, :width], fc2.bias[:d])


def route_ref(layer: MoEFeedForward, x: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Router probabilities of one token over the first `num_experts` experts."""
    d = x.shape[0]
    w, b = (
        layer.routers["token"].weight[:num_experts, :d],
        layer.routers["token"].bias[:num_experts],
    )
    return torch.softmax(F.linear(x, w, b).to(x.dtype), dim=0)  # bf16 logits: fp32 softmax


def moe_ref(
    layer: MoEFeedForward,
    x: torch.Tensor,
    widths: list[int],
    top_k: int,
    capacity: int | None = None,
) -> torch.Tensor:
    """Token-by-token MoE; assignments past an expert's `capacity` (in token order) give 0."""
    if len(widths) == 1:
        return torch.stack([expert_ref(layer, 0, widths[0], x[t]) for t in range(x.shape[0])])
    used = [0] * len(widths)
    rows = []
    for t in range(x.shape[0]):
        probs = route_ref(layer, x[t], len(widths))
        gate, chosen = probs.topk(top_k)
        if top_k > 1:
            gate = gate / gate.sum()
        y = torch.zeros_like(x[t])
        for g, e in zip(gate, chosen.tolist(), strict=True):
            used[e] += 1
            if capacity is not None and used[e] > capacity:
                continue  # dropped: this assignment contributes nothing
            # gated in the token's dtype: a 0-dim fp32 gate alone would keep bf16 outputs bf16
            y = y + g * expert_ref(layer, e, widths[e], x[t]).to(x.dtype)
        rows.append(y)
    return torch.stack(rows)


def routing_margin(layer: MoEFeedForward, x: torch.Tensor, num_experts: int, top_k: int) -> float:
    """Smallest gap between the k-th and (k+1)-th probability over tokens (ties are ambiguous)."""
    if num_experts <= top_k:
        return float("inf")
    with torch.no_grad():
        gaps = []
        for t in range(x.shape[0]):
            p = route_ref(layer, x[t], num_experts).sort(descending=True).values
            gaps.append(float(p[top_k - 1] - p[top_k]))
    return min(gaps)


def context_for(n: int) -> RoutingContext:
    return RoutingContext(token_rows=torch.zeros(n, dtype=torch.long))


def dtype_for(precision: Precision) -> torch.dtype:
    """Weights and inputs: float64 in fp32 (tight checks), float32 in bf16 (autocast lowers it)."""
    return torch.float64 if precision.name == "fp32" else torch.float32


def make_layer(
    embed_dim: int,
    max_widths: list[int],
    seed: int,
    capacity_factor: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> MoEFeedForward:
    torch.manual_seed(seed)
    layer = MoEFeedForward(embed_dim, max_widths, capacity_factor=capacity_factor).to(dtype)
    with torch.no_grad():  # non-zero biases so that bias slicing is exercised too
        for p in layer.parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.1)
    return layer


def grads_of(layer: MoEFeedForward, x: torch.Tensor) -> list[torch.Tensor]:
    out = [x.grad.clone()]
    for p in layer.parameters():
        out.append(torch.zeros_like(p) if p.grad is None else p.grad.clone())
    return out


def compare_with_reference(
    layer: MoEFeedForward,
    x: torch.Tensor,
    widths: list[int],
    top_k: int,
    capacity: int | None = None,
    precision: Precision = FP32,
) -> None:
    """Forward and every gradient (input, expert weights, router) agree with the reference
    computed in the same precision."""
    weights = torch.randn(x.shape, dtype=x.dtype)  # a generic loss, not a symmetric sum
    layer.zero_grad(set_to_none=True)

    x1 = x.clone().requires_grad_(True)
    with precision.autocast():
        out, _ = layer(x1, widths, top_k, context_for(x.shape[0]))
    (out * weights).sum().backward()
    got = grads_of(layer, x1)
    layer.zero_grad(set_to_none=True)

    x2 = x.clone().requires_grad_(True)
    with precision.autocast():
        expected = moe_ref(layer, x2, widths, top_k, capacity)
    (expected * weights).sum().backward()
    want = grads_of(layer, x2)
    layer.zero_grad(set_to_none=True)

    if precision.name == "fp32":
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
        return
    assert out.dtype == expected.dtype
    assert torch.equal(out, expected)
    for g, w in zip(got, want, strict=True):
        # A weight's gradient sums over tokens: the layer's one bf16 matmul rounds the sum once,
        # the reference rounds each token's term, so where terms cancel (router weights) they
        # differ by a few bf16 ulps (up to 2**-6 of the largest entry over 300 random layers).
        # 2**-4 of it still fails a gradient path lost (expert, gate, router); unused get 0.
        torch.testing.assert_close(g, w, rtol=0, atol=2**-4 * float(w.abs().max()))


# --------------------------------------------------------------------------- fixed cases


@pytest.mark.parametrize("top_k", [1, 2])
def test_mixed_widths_and_identity_match_reference(top_k: int, precision: Precision) -> None:
    # 5 experts held, 4 used at widths below their maximum, one of them an identity expert;
    # the layer is built at embed 12 and run at 10 to exercise column slicing.
    dtype = dtype_for(precision)
    layer = make_layer(12, [16, 8, 24, 8, 16], seed=top_k, dtype=dtype)
    widths = [12, 0, 20, 3]
    x = torch.randn(64, 10, dtype=torch.float64).to(dtype)  # one draw for both
    with precision.autocast():
        assert routing_margin(layer, x, len(widths), top_k) > 1e-6
        _, stats = layer(x, widths, top_k, context_for(64))
    assert stats is not None
    # every expert, the identity one included, received tokens, so all paths are exercised
    assert stats.expert_counts.tolist() and min(stats.expert_counts.tolist()) > 0
    assert int(stats.expert_counts.sum()) == 64 * top_k
    compare_with_reference(layer, x, widths, top_k, precision=precision)


def test_unused_experts_and_slices_get_no_gradient(precision: Precision) -> None:
    dtype = dtype_for(precision)
    layer = make_layer(8, [16, 16, 16], seed=3, dtype=dtype)
    x = torch.randn(32, 6, dtype=torch.float64).to(dtype).requires_grad_(True)
    with precision.autocast():
        out, _ = layer(x, [10, 4], 1, context_for(32))
    out.sum().backward()
    assert layer.experts[2].fc1.weight.grad is None
    e0 = layer.experts[0]
    assert e0.fc1.weight.grad[10:].abs().sum() == 0
    assert e0.fc1.weight.grad[:, 6:].abs().sum() == 0
    assert e0.fc2.weight.grad[:, 10:].abs().sum() == 0
    assert e0.fc2.weight.grad[6:].abs().sum() == 0
    assert e0.fc1.weight.grad[:10, :6].abs().sum() > 0
    assert layer.routers["token"].weight.grad[2:].abs().sum() == 0
    assert layer.routers["token"].weight.grad[:, 6:].abs().sum() == 0


def test_one_expert_is_a_dense_ffn_without_router(precision: Precision) -> None:
    # the same two matmuls in the same precision: bf16 rounds at the same points, hence exact
    tol = {} if precision.name == "fp32" else {"rtol": 0.0, "atol": 0.0}
    torch.manual_seed(0)
    layer = MoEFeedForward(8, [16])
    assert len(layer.routers) == 0
    x = torch.randn(20, 8, requires_grad=True)
    fc1, fc2 = layer.experts[0].fc1, layer.experts[0].fc2
    with precision.autocast():
        out, stats = layer(x, [16], 1, context_for(20))
        dense = fc2(torch.relu(fc1(x)))
    assert stats is None
    torch.testing.assert_close(out, dense, **tol)
    # an elastic layer run with a single expert is dense too (no gate, no routing)
    big = MoEFeedForward(8, [16, 16, 16])
    e = big.experts[0]
    with precision.autocast():
        out, stats = big(x, [12], 1, context_for(20))
        expected = F.linear(
            torch.relu(F.linear(x, e.fc1.weight[:12], e.fc1.bias[:12])),
            e.fc2.weight[:, :12],
            e.fc2.bias,
        )
    assert stats is None
    torch.testing.assert_close(out, expected, **tol)


# --------------------------------------------------------------------------- capacity


def two_way_layer(
    capacity_factor: float, to_expert0: list[bool], dtype: torch.dtype = torch.float64
) -> tuple[MoEFeedForward, torch.Tensor]:
    """Routing decided by the sign of feature 0: positive -> expert 0, negative -> expert 1."""
    layer = make_layer(4, [8, 8], seed=0, capacity_factor=capacity_factor, dtype=dtype)
    with torch.no_grad():
        layer.routers["token"].weight.zero_()
        layer.routers["token"].bias.zero_()
        layer.routers["token"].weight[0, 0] = 5.0
        layer.routers["token"].weight[1, 0] = -5.0
    x = torch.randn(len(to_expert0), 4, dtype=torch.float64).to(dtype)
    sign = torch.tensor([1.0 if e0 else -1.0 for e0 in to_expert0], dtype=dtype)
    x[:, 0] = sign * (1.0 + x[:, 0].abs())
    return layer, x


def test_capacity_drops_overflow_in_token_order(precision: Precision) -> None:
    to_expert0 = [True, False, True, True, False, True, True, True, False, True]
    dtype = dtype_for(precision)
    layer, x = two_way_layer(1.0, to_expert0, dtype)  # capacity = int(1.0 * 10 / 2) = 5
    x.requires_grad_(True)
    with precision.autocast():
        out, stats = layer(x, [8, 8], 1, context_for(10))
    assert stats.expert_counts.tolist() == [7, 3]  # counts are routing decisions, pre-drop
    expert0 = [t for t, e in enumerate(to_expert0) if e]
    kept, dropped = expert0[:5], expert0[5:]
    assert dropped == [7, 9]
    assert torch.equal(out[dropped], torch.zeros(2, 4, dtype=dtype))
    assert out[kept].abs().sum(dim=1).min() > 0
    assert out[[1, 4, 8]].abs().sum(dim=1).min() > 0
    out.sum().backward()
    assert torch.equal(x.grad[dropped], torch.zeros(2, 4, dtype=dtype))
    x.grad = None
    compare_with_reference(layer, x.detach(), [8, 8], 1, capacity=5, precision=precision)


def test_capacity_large_enough_drops_nothing(precision: Precision) -> None:
    layer, x = two_way_layer(2.0, [True] * 6 + [False] * 4, dtype_for(precision))
    with precision.autocast():  # capacity 10 >= every group
        out, _ = layer(x, [8, 8], 1, context_for(10))
        layer.capacity_factor = None
        free, _ = layer(x, [8, 8], 1, context_for(10))
    torch.testing.assert_close(out, free, rtol=0, atol=0)


# --------------------------------------------------------------------------- balance loss


def test_balance_loss_is_one_when_balanced_and_larger_when_collapsed() -> None:
    e, n = 4, 32
    layer = MoEFeedForward(e, [8] * e)
    with torch.no_grad():
        layer.routers["token"].weight.copy_(torch.eye(e))
        layer.routers["token"].bias.zero_()
    # token t is a one-hot on expert t % e: each expert gets exactly n / e tokens and the
    # mean router probabilities are uniform by symmetry
    x = torch.eye(e).repeat(n // e, 1) * 3.0
    _, stats = layer(x, [8] * e, 1, context_for(n))
    assert stats.expert_counts.tolist() == [n // e] * e
    torch.testing.assert_close(stats.balance_loss, torch.tensor(1.0))

    with torch.no_grad():  # uniform probabilities: 1 whatever the tie-breaking
        layer.routers["token"].weight.zero_()
    _, stats = layer(x, [8] * e, 1, context_for(n))
    torch.testing.assert_close(stats.balance_loss, torch.tensor(1.0))

    with torch.no_grad():  # collapse: every token to expert 0 with probability ~1
        layer.routers["token"].bias.copy_(torch.tensor([20.0, 0.0, 0.0, 0.0]))
    _, stats = layer(x, [8] * e, 1, context_for(n))
    assert stats.expert_counts.tolist() == [n, 0, 0, 0]
    assert stats.balance_loss > 3.9  # -> e as the collapse becomes total
    assert stats.balance_loss <= e + 1e-6


def test_balance_loss_gradient_reaches_router() -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(8, [16, 16, 16])
    x = torch.randn(40, 8)
    _, stats = layer(x, [16, 16, 16], 1, context_for(40))
    stats.balance_loss.backward()
    assert layer.routers["token"].weight.grad.abs().sum() > 0
    assert layer.experts[0].fc1.weight.grad is None  # only the router sees the balance loss


TINY = ArchConfig(
    encoder_embed_dim=16,
    decoder_embed_dim=16,
    encoder_ffn_dims=[[32, 32, 32]] * 2,
    encoder_heads=[2] * 2,
    encoder_top_k=[1] * 2,
    decoder_ffn_dims=[[32, 32, 32]] * 2,
    decoder_self_heads=[2] * 2,
    decoder_cross_heads=[2] * 2,
    decoder_cross_layers=[1] * 2,
    decoder_top_k=[2] * 2,
)


def test_model_routes_and_balances_real_tokens_only() -> None:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(40, 16, TINY)).eval()
    src = torch.randint(4, 40, (3, 7))
    src[0, 5:] = 0
    src[2, 3:] = 0
    tgt = torch.randint(4, 40, (3, 6))
    tgt[1, 2:] = 0
    seen: list[int] = []
    hooks = [
        layer.ffn.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
        for layer in [*model.encoder_layers, *model.decoder_layers]
    ]
    out = model(src, src.eq(0), tgt)
    real_src, real_tgt = int(src.ne(0).sum()), int(tgt.ne(0).sum())
    assert seen == [real_src] * 2 + [real_tgt] * 2
    assert [int(s.expert_counts.sum()) for s in out.encoder_stats] == [real_src] * 2
    assert [int(s.expert_counts.sum()) for s in out.decoder_stats] == [2 * real_tgt] * 2

    # more padding changes neither the routed tokens nor the balance loss
    seen.clear()
    src2 = torch.cat([src, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    tgt2 = torch.cat([tgt, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    out2 = model(src2, src2.eq(0), tgt2)
    assert seen == [real_src] * 2 + [real_tgt] * 2
    torch.testing.assert_close(out2.balance_loss, out.balance_loss, rtol=1e-6, atol=1e-6)
    for h in hooks:
        h.remove()

    # and it equals the mean over layers of each layer's loss on its real tokens alone
    want = torch.stack([s.balance_loss for s in out.encoder_stats + out.decoder_stats]).mean()
    torch.testing.assert_close(out.balance_loss, want)


# --------------------------------------------------------------------------- property-based


@st.composite
def moe_cases(draw: st.DrawFn) -> dict:
    num_experts = draw(st.integers(1, 5))
    widths = draw(
        st.lists(st.sampled_from([0, 1, 3, 8, 13]), min_size=num_experts, max_size=num_experts)
    )
    if widths == [0]:
        widths = [5]  # a lone identity expert is not a layer (ArchConfig rejects it)
    max_widths = [w + draw(st.integers(0, 4)) for w in widths]
    max_widths += draw(st.lists(st.sampled_from([0, 6]), max_size=2))  # held but unused
    embed = draw(st.integers(2, 9))
    return dict(
        widths=widths,
        max_widths=max_widths,
        top_k=draw(st.integers(1, min(2, num_experts))),
        embed=embed,
        max_embed=embed + draw(st.integers(0, 3)),
        tokens=draw(st.integers(1, 40)),
        capacity_factor=draw(st.one_of(st.none(), st.sampled_from([0.25, 0.5, 1.0, 1.5]))),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=moe_cases())
def test_dispatch_matches_reference_property(case: dict, precision: Precision) -> None:
    dtype = dtype_for(precision)
    layer = make_layer(
        case["max_embed"], case["max_widths"], case["seed"], case["capacity_factor"], dtype
    )
    widths, top_k, n = case["widths"], case["top_k"], case["tokens"]
    x = torch.randn(n, case["embed"], dtype=torch.float64).to(dtype)
    if len(widths) > 1:
        with precision.autocast():  # bf16 router logits tie more often: the margin is theirs
            assume(routing_margin(layer, x, len(widths), top_k) > 1e-6)
    capacity = None
    if case["capacity_factor"] is not None and len(widths) > 1:
        capacity = max(1, int(case["capacity_factor"] * n * top_k / len(widths)))
    compare_with_reference(layer, x, widths, top_k, capacity, precision)
