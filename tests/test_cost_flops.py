"""Analytical FLOPs and parameter counts (`automoe.cost.flops`).

FLOPs are checked against `torch.utils.flop_counter.FlopCounterMode` on a real forward pass of
the extracted model. FlopCounterMode only counts attention when it sees the products: on CPU
the default SDPA kernel (`_scaled_dot_product_flash_attention_for_cpu`) is not in its registry
and counts 0, so the comparison forces the MATH backend, whose bmm calls it does count.
Parameter totals are checked against the extracted model's numel, and a tiny MoE is worked
out by hand.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from automoe.cost.flops import (
    ExpertFractionsError,
    count_flops,
    count_params,
    routing_fractions,
)
from automoe.data.batching import Batch
from automoe.space import ArchConfig
from automoe.supernet.model import ModelConfig, Transformer, extract

VOCAB = 50
QKV = 32


def make_arch(
    d_enc: int,
    d_dec: int,
    enc: list[tuple[tuple[int, ...], int, int]],
    dec: list[tuple[tuple[int, ...], int, int, int, int]],
) -> ArchConfig:
    """enc rows: (widths, heads, top_k); dec rows: (widths, self_heads, cross_heads, cross, k)."""
    return ArchConfig(
        encoder_embed_dim=d_enc,
        decoder_embed_dim=d_dec,
        encoder_ffn_dims=tuple(r[0] for r in enc),
        encoder_heads=tuple(r[1] for r in enc),
        encoder_top_k=tuple(r[2] for r in enc),
        decoder_ffn_dims=tuple(r[0] for r in dec),
        decoder_self_heads=tuple(r[1] for r in dec),
        decoder_cross_heads=tuple(r[2] for r in dec),
        decoder_cross_layers=tuple(r[3] for r in dec),
        decoder_top_k=tuple(r[4] for r in dec),
    )


def make_batch(src: torch.Tensor, prev: torch.Tensor) -> Batch:
    """A batch whose padding (id 0) is marked in the masks."""
    b = src.shape[0]
    return Batch(
        src_tokens=src,
        src_padding_mask=src.eq(0),
        prev_output_tokens=prev,
        target=prev,
        tgt_padding_mask=prev.eq(0),
        task_ids=torch.zeros(b, dtype=torch.long),
        indices=torch.arange(b),
        num_tokens=int(prev.ne(0).sum()),
    )


def measured_flops(model: Transformer, arch: ArchConfig, batch: Batch) -> dict[str, int]:
    """FlopCounterMode's counts per aten op for one eval forward pass, attention included."""
    model.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(batch.src_tokens, batch.src_padding_mask, batch.prev_output_tokens, arch)
    return {str(op): n for op, n in fc.get_flop_counts()["Global"].items()}


DENSE_ARCHS = {
    "wider-decoder": make_arch(
        24,
        32,
        [((48,), 2, 1), ((40,), 4, 1), ((64,), 2, 1)],
        [((32,), 2, 4, 3, 1), ((16,), 4, 2, 2, 1)],
    ),
    "wider-encoder-deep-decoder": make_arch(
        32,
        16,
        [((64,), 8, 1)],
        [((16,), 1, 2, 1, 1), ((48,), 4, 4, 1, 1), ((8,), 8, 1, 1, 1)],
    ),
    "equal-widths": make_arch(
        16, 16, [((32,), 4, 1), ((8,), 2, 1)], [((24,), 2, 8, 2, 1), ((40,), 4, 4, 1, 1)]
    ),
    "deep-encoder-one-decoder": make_arch(
        40,
        24,
        [((16,), 4, 1), ((80,), 1, 1), ((32,), 2, 1)],
        [((56,), 4, 2, 3, 1)],
    ),
}


@pytest.mark.parametrize("name", sorted(DENSE_ARCHS))
@pytest.mark.parametrize(("src_len", "tgt_len"), [(30, 30), (7, 11), (23, 5)])
def test_dense_flops_match_flop_counter(name: str, src_len: int, tgt_len: int) -> None:
    arch = DENSE_ARCHS[name]
    torch.manual_seed(0)
    model = extract(Transformer(ModelConfig(VOCAB, QKV, arch)), arch)
    batch = make_batch(torch.randint(1, VOCAB, (1, src_len)), torch.randint(1, VOCAB, (1, tgt_len)))
    counts = measured_flops(model, arch, batch)
    assert counts.get("aten.bmm", 0) > 0, "attention products were not counted"
    report = count_flops(arch, qkv_dim=QKV, vocab_size=VOCAB, src_len=src_len, tgt_len=tgt_len)
    measured = sum(counts.values())
    assert abs(report.total - measured) / measured < 0.02
    # Dense layers have no routing choice: the worst case is the expected case.
    assert report.worst_case_total == report.total
    assert report.output_projection == 2 * tgt_len * arch.decoder_embed_dim * VOCAB
    assert report.without_output == report.total - report.output_projection


SUPERNET_SHAPE = make_arch(
    16,
    16,
    [((32, 32, 32), 4, 2), ((32, 32, 32), 4, 2)],
    [((32, 32, 32), 4, 4, 2, 2), ((32, 32, 32), 4, 4, 2, 2)],
)
MOE_ARCH = make_arch(
    16,
    12,
    [((32, 8, 0), 2, 1), ((16, 24), 4, 2)],
    [((8, 32), 2, 4, 2, 1), ((24,), 4, 2, 1, 1)],
)


def test_moe_flops_with_measured_fractions_match_flop_counter() -> None:
    """With the fractions this very sentence produced, the expected count is what ran."""
    torch.manual_seed(1)
    model = extract(Transformer(ModelConfig(VOCAB, QKV, SUPERNET_SHAPE)), MOE_ARCH)
    batch = make_batch(torch.randint(1, VOCAB, (1, 30)), torch.randint(1, VOCAB, (1, 30)))
    with sdpa_kernel(SDPBackend.MATH):  # route exactly as the measured pass will
        fractions = routing_fractions(model, MOE_ARCH, [batch])
    report = count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB, expert_fractions=fractions)
    measured = sum(measured_flops(model, MOE_ARCH, batch).values())
    assert report.total == pytest.approx(measured, rel=1e-9)
    assert report.worst_case_total >= report.total


# --------------------------------------------------------------------------- worked by hand

# Encoder: one layer, d = 8, experts of widths 16 and 4, top-1. Decoder: one dense layer,
# d = 8, width 8, attending to the last encoder layer. qkv_dim 8, vocab 10, 2 source and
# 3 target tokens.
HAND_ARCH = make_arch(8, 8, [((16, 4), 2, 1)], [((8,), 2, 2, 1, 1)])
HAND = dict(qkv_dim=8, vocab_size=10)

# Encoder attention (S = 2): q, k, v, out projections 4 * 2*2*8*8 = 1024;
#   QK^T 2*2*2*8 = 64 and AV 64 -> 1152.
ENC_ATTENTION = 1152
# Router: 2*d*e = 2*8*2 = 32 per token. An expert of width w: 2 matmuls of 2*d*w = 4*8*w.
#   width 16: 512, width 4: 128.
# Decoder (T = 3): self-attention 4 * 2*3*8*8 = 1536 + QK^T 2*3*3*8 = 144 + AV 144 -> 1824;
#   cross-attention q and out 2 * 2*3*8*8 = 768, k and v over 2 source positions
#   2 * 2*2*8*8 = 512, QK^T 2*3*2*8 = 96 and AV 96 -> 1472; FFN 3 tokens * 4*8*8 = 768.
DECODER = 1824 + 1472 + 768
# Output projection: 2 * 3 tokens * 8 * 10 = 480.
OUTPUT = 480


def test_hand_computed_moe_flops_uniform() -> None:
    # Uniform top-1 routing sends half the tokens to each expert:
    #   per token 32 + 0.5*512 + 0.5*128 = 352, times 2 tokens = 704.
    report = count_flops(HAND_ARCH, **HAND, src_len=2, tgt_len=3)
    assert report.encoder == ENC_ATTENTION + 704
    assert report.decoder == DECODER
    assert report.output_projection == OUTPUT
    assert report.total == ENC_ATTENTION + 704 + DECODER + OUTPUT == 6400
    assert report.without_output == 5920
    # Worst case: every token takes the width-16 expert: (32 + 512) * 2 = 1088.
    assert report.worst_case_encoder == ENC_ATTENTION + 1088
    assert report.worst_case_decoder == DECODER
    assert report.worst_case_total == ENC_ATTENTION + 1088 + DECODER + OUTPUT
    assert report.worst_case_without_output == ENC_ATTENTION + 1088 + DECODER


def test_hand_computed_moe_flops_given_fractions() -> None:
    # 3/4 of the tokens to the wide expert: per token 32 + 0.75*512 + 0.25*128 = 448, x2 = 896.
    fractions = {("encoder", 0): [0.75, 0.25]}
    report = count_flops(HAND_ARCH, **HAND, src_len=2, tgt_len=3, expert_fractions=fractions)
    assert report.encoder == ENC_ATTENTION + 896
    assert report.total == ENC_ATTENTION + 896 + DECODER + OUTPUT
    assert report.worst_case_encoder == ENC_ATTENTION + 1088


def test_hand_computed_params() -> None:
    # Encoder layer: 2 LayerNorms 2*2*8 = 32; attention 4 * 8*8 weights + 3*8 + 8 biases = 288;
    #   router 2*8 + 2 = 18; expert 16: 2*8*16 + 16 + 8 = 280; expert 4: 2*8*4 + 4 + 8 = 76.
    # Decoder layer: 3 LayerNorms 48, two attentions 2*288, expert 8: 2*8*8 + 8 + 8 = 144.
    # Final encoder and decoder LayerNorms 2*16 = 32. Embeddings 10 * 8 = 80.
    shared = 32 + 288 + 18 + 48 + 2 * 288 + 32
    report = count_params(HAND_ARCH, **HAND)
    assert report.embeddings == 80
    assert report.total == 80 + shared + 280 + 76 + 144 == 1574
    assert report.without_embeddings == 1494
    assert report.active_per_token == shared + 280 + 144
    assert report.expected_active_per_token == shared + 0.5 * 280 + 0.5 * 76 + 144
    skewed = count_params(HAND_ARCH, **HAND, expert_fractions={("encoder", 0): [0.75, 0.25]})
    assert skewed.expected_active_per_token == shared + 0.75 * 280 + 0.25 * 76 + 144
    model = extract(Transformer(ModelConfig(10, 8, HAND_ARCH)), HAND_ARCH)
    assert sum(p.numel() for p in model.parameters()) == report.total


def test_identity_experts_cost_nothing() -> None:
    with_identity = make_arch(8, 8, [((16, 0), 2, 1)], [((8,), 2, 2, 1, 1)])
    to_identity = {("encoder", 0): [0.0, 1.0]}
    report = count_flops(with_identity, **HAND, src_len=2, tgt_len=3, expert_fractions=to_identity)
    # Only the router (32 per token, 2 tokens) is left of the FFN.
    assert report.encoder == ENC_ATTENTION + 2 * 32
    params = count_params(with_identity, **HAND, expert_fractions=to_identity)
    dense = count_params(make_arch(8, 8, [((16,), 2, 1)], [((8,), 2, 2, 1, 1)]), **HAND)
    # The identity expert adds no weights; the router (2*8 + 2) is the only difference.
    assert params.total == dense.total + 18
    assert params.expected_active_per_token == params.active_per_token - 280


# --------------------------------------------------------------------------- properties


@st.composite
def archs(draw: st.DrawFn) -> ArchConfig:
    """Small random architectures mixing dense, MoE, identity and top-2 layers."""

    def layer() -> tuple[tuple[int, ...], int]:
        widths = [draw(st.sampled_from([4, 8, 20]))]
        widths += draw(st.lists(st.sampled_from([0, 4, 12, 24]), max_size=2))
        return tuple(draw(st.permutations(widths))), draw(st.integers(1, len(widths)))

    heads = st.sampled_from([1, 2, 4, 8])
    enc = [(w, draw(heads), k) for w, k in (layer() for _ in range(draw(st.integers(1, 3))))]
    dec = []
    for _ in range(draw(st.integers(1, 3))):
        w, k = layer()
        dec.append((w, draw(heads), draw(heads), draw(st.integers(1, len(enc))), k))
    dims = st.sampled_from([8, 12, 16])
    return make_arch(draw(dims), draw(dims), enc, dec)


def random_fractions(arch: ArchConfig, data: st.DataObject) -> dict[tuple[str, int], list[float]]:
    """Valid fractions (each in [0, 1], summing to top_k): a blend of uniform routing and every
    token taking the same k experts, from fully uniform (t = 0) to fully skewed (t = 1)."""
    out = {}
    for side in ("encoder", "decoder"):
        for i, (widths, k) in enumerate(
            zip(getattr(arch, f"{side}_ffn_dims"), getattr(arch, f"{side}_top_k"), strict=True)
        ):
            e = len(widths)
            chosen = data.draw(st.permutations(range(e)))[:k]
            t = data.draw(st.floats(0, 1))
            out[(side, i)] = [(1 - t) * k / e + t * (j in chosen) for j in range(e)]
    return out


@settings(max_examples=40, deadline=None)
@given(arch=archs(), data=st.data())
def test_params_total_equals_extracted_numel_and_worst_case_bounds(
    arch: ArchConfig, data: st.DataObject
) -> None:
    shape = make_arch(16, 16, [((24, 24, 24), 8, 3)] * 3, [((24, 24, 24), 8, 8, 3, 3)] * 3)
    model = Transformer(ModelConfig(VOCAB, 16, shape))
    sub = extract(model, arch)
    fractions = random_fractions(arch, data)
    params = count_params(arch, qkv_dim=16, vocab_size=VOCAB, expert_fractions=fractions)
    assert params.total == sum(p.numel() for p in sub.parameters())
    assert params.embeddings == sub.embed.weight.numel()
    assert params.expected_active_per_token <= params.active_per_token + 1e-9
    assert params.active_per_token <= params.without_embeddings
    flops = count_flops(arch, qkv_dim=16, vocab_size=VOCAB, expert_fractions=fractions)
    assert flops.worst_case_encoder >= flops.encoder - 1e-6
    assert flops.worst_case_decoder >= flops.decoder - 1e-6
    assert flops.worst_case_total >= flops.total - 1e-6
    uniform = count_flops(arch, qkv_dim=16, vocab_size=VOCAB)
    assert uniform.worst_case_total >= uniform.total


def test_flops_grow_with_sentence_lengths() -> None:
    arch = MOE_ARCH
    by_src = [count_flops(arch, qkv_dim=QKV, vocab_size=VOCAB, src_len=n) for n in range(1, 40)]
    by_tgt = [count_flops(arch, qkv_dim=QKV, vocab_size=VOCAB, tgt_len=n) for n in range(1, 40)]
    for seq in (by_src, by_tgt):
        for a, b in pairwise(seq):
            assert b.total > a.total and b.worst_case_total > a.worst_case_total
    for a, b in pairwise(by_src):
        assert b.encoder > a.encoder and b.decoder > a.decoder  # cross-attention grows too
        assert b.output_projection == a.output_projection
    for a, b in pairwise(by_tgt):
        assert b.encoder == a.encoder and b.decoder > a.decoder
        assert b.output_projection > a.output_projection


def test_reports_to_dict() -> None:
    flops = count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB).to_dict()
    assert flops["total"] == flops["encoder"] + flops["decoder"] + flops["output_projection"]
    assert flops["without_output"] == flops["encoder"] + flops["decoder"]
    assert flops["worst_case_without_output"] == (
        flops["worst_case_encoder"] + flops["worst_case_decoder"]
    )
    assert (flops["src_len"], flops["tgt_len"]) == (30, 30)
    params = count_params(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB).to_dict()
    assert params["without_embeddings"] == params["total"] - params["embeddings"]
    assert set(params) == {
        "total",
        "embeddings",
        "without_embeddings",
        "active_per_token",
        "expected_active_per_token",
    }


@pytest.mark.parametrize(
    ("fractions", "problem"),
    [
        ({("encoder", 0): [1, 0, 0]}, "missing"),  # ("encoder", 1) and ("decoder", 0) absent
        ({("encoder", 5): [1.0]}, "does not have"),
        (
            {("encoder", 0): [0.5, 0.5], ("encoder", 1): [1.0, 1.0], ("decoder", 0): [1.0]},
            "entries",
        ),
        ({("encoder", 0): [0.5, 0.5, 0.5], ("encoder", 1): [1, 1], ("decoder", 0): [1, 0]}, "sum"),
        (
            {("encoder", 0): [1.5, -0.5, 0], ("encoder", 1): [1, 1], ("decoder", 0): [1, 0]},
            "[0, 1]",
        ),
    ],
)
def test_bad_fractions_are_rejected(fractions: dict, problem: str) -> None:
    with pytest.raises(ExpertFractionsError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB, expert_fractions=fractions)


def test_dense_layers_may_be_left_out_of_fractions() -> None:
    given_all = {("encoder", 0): [1, 0, 0], ("encoder", 1): [1, 1], ("decoder", 0): [0, 1]}
    full = {**given_all, ("decoder", 1): [1.0]}
    a = count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB, expert_fractions=given_all)
    b = count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB, expert_fractions=full)
    assert a == b


# --------------------------------------------------------------------------- routing fractions


def padded_batches() -> list[Batch]:
    """Two batches of different sizes with padding on both sides."""
    g = torch.Generator().manual_seed(3)
    out = []
    for b, s, t in ((2, 6, 5), (3, 4, 7)):
        src = torch.randint(1, VOCAB, (b, s), generator=g)
        prev = torch.randint(1, VOCAB, (b, t), generator=g)
        src[0, -2:] = 0
        prev[-1, -3:] = 0
        out.append(make_batch(src, prev))
    return out


def test_routing_fractions_match_hand_counts() -> None:
    """Count each router's top-k choices from its logits, then compare."""
    torch.manual_seed(2)
    model = Transformer(ModelConfig(VOCAB, QKV, SUPERNET_SHAPE)).train()
    hand: dict[tuple[str, int], torch.Tensor] = {}
    hooks = []
    for side, layers, depth in (
        ("encoder", model.encoder_layers, MOE_ARCH.encoder_layers),
        ("decoder", model.decoder_layers, MOE_ARCH.decoder_layers),
    ):
        for i in range(depth):
            e = len(getattr(MOE_ARCH, f"{side}_ffn_dims")[i])
            k = getattr(MOE_ARCH, f"{side}_top_k")[i]
            if e == 1:
                continue
            hand[(side, i)] = torch.zeros(e, dtype=torch.long)

            def count(_mod, _inp, logits, key=(side, i), k=k, e=e):
                chosen = logits.softmax(-1).topk(k, dim=-1).indices.reshape(-1)
                hand[key] += torch.bincount(chosen, minlength=e)

            hooks.append(layers[i].ffn.routers["token"].register_forward_hook(count))
    fractions = routing_fractions(model, MOE_ARCH, padded_batches())
    for h in hooks:
        h.remove()
    assert model.training, "routing_fractions must restore the training mode"
    # Only real tokens are routed: 2*6-2 + 3*4-2 source and 2*5-3 + 3*7-3 target tokens.
    assert int(hand[("encoder", 0)].sum()) == 20
    assert int(hand[("decoder", 0)].sum()) == 25
    assert set(fractions) == {("encoder", 0), ("encoder", 1), ("decoder", 0), ("decoder", 1)}
    assert fractions[("decoder", 1)] == [1.0]
    for key, counts in hand.items():
        k = getattr(MOE_ARCH, f"{key[0]}_top_k")[key[1]]
        expected = [c * k / int(counts.sum()) for c in counts.tolist()]
        assert fractions[key] == pytest.approx(expected)
        assert sum(fractions[key]) == pytest.approx(k)
    # The measured fractions are accepted as they are.
    count_flops(MOE_ARCH, qkv_dim=QKV, vocab_size=VOCAB, expert_fractions=fractions)


def test_routing_fractions_follow_a_forced_router() -> None:
    """A router whose bias dominates sends every token to the same experts."""
    model = Transformer(ModelConfig(VOCAB, QKV, SUPERNET_SHAPE))
    arch = make_arch(16, 16, [((32, 8), 4, 1)], [((8, 16, 32), 4, 4, 1, 2)])
    with torch.no_grad():
        for router, bias in (
            (model.encoder_layers[0].ffn.routers["token"], [0.0, 50.0, 0.0]),
            (model.decoder_layers[0].ffn.routers["token"], [50.0, 0.0, 50.0]),
        ):
            router.weight.zero_()
            router.bias.copy_(torch.tensor(bias))
    fractions = routing_fractions(model, arch, padded_batches())
    assert fractions == {("encoder", 0): [0.0, 1.0], ("decoder", 0): [1.0, 0.0, 1.0]}


def test_routing_fractions_need_tokens() -> None:
    model = Transformer(ModelConfig(VOCAB, QKV, SUPERNET_SHAPE))
    with pytest.raises(ExpertFractionsError, match="empty"):
        routing_fractions(model, MOE_ARCH, [])
