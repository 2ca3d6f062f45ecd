"""The elastic Transformer: extraction, checkpoints, decoding, padding, gradients, seeds."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from automoe.errors import AutomoeError
from automoe.precision import Precision
from automoe.space import ArchConfig, ArchError
from automoe.supernet.model import CHECKPOINT_FORMAT, ModelConfig, Transformer, extract

VOCAB, QKV = 60, 16
SHAPE = ArchConfig(
    encoder_embed_dim=24,
    decoder_embed_dim=24,
    encoder_ffn_dims=[[32, 32, 32, 32]] * 3,
    encoder_heads=[4] * 3,
    encoder_top_k=[2] * 3,
    decoder_ffn_dims=[[32, 32, 32, 32]] * 3,
    decoder_self_heads=[4] * 3,
    decoder_cross_heads=[4] * 3,
    decoder_cross_layers=[3] * 3,
    decoder_top_k=[2] * 3,
)

# one hand-written arch that hits every elastic dimension at once
MIXED = ArchConfig(
    encoder_embed_dim=16,
    decoder_embed_dim=12,
    encoder_ffn_dims=[[32, 8], [16], [0, 24, 8]],
    encoder_heads=[2, 4, 1],
    encoder_top_k=[1, 1, 2],
    decoder_ffn_dims=[[8, 16, 0, 32], [24]],
    decoder_self_heads=[1, 2],
    decoder_cross_heads=[4, 2],
    decoder_cross_layers=[3, 2],
    decoder_top_k=[2, 1],
)


def random_arch(rng: random.Random, shape: ArchConfig = SHAPE) -> ArchConfig:
    """A random arch inside `shape`: widths, depths, mixed expert sizes, heads, cross layers."""

    def experts(max_dims: tuple[int, ...]) -> list[int]:
        n = rng.randint(1, len(max_dims))
        while True:
            dims = [rng.choice([0, 8, 16, m]) for m in max_dims[:n]]
            if any(dims):  # a layer needs at least one real (non-identity) expert
                return dims

    enc_layers = rng.randint(1, shape.encoder_layers)
    dec_layers = rng.randint(1, shape.decoder_layers)
    enc = [experts(shape.encoder_ffn_dims[i]) for i in range(enc_layers)]
    dec = [experts(shape.decoder_ffn_dims[i]) for i in range(dec_layers)]
    heads = [h for h in (1, 2, 4) if h <= max(shape.encoder_heads)]
    return ArchConfig(
        encoder_embed_dim=rng.choice([8, 12, 16, shape.encoder_embed_dim]),
        decoder_embed_dim=rng.choice([8, 12, 16, shape.decoder_embed_dim]),
        encoder_ffn_dims=enc,
        encoder_heads=[rng.choice(heads) for _ in enc],
        encoder_top_k=[rng.randint(1, min(2, len(e))) for e in enc],
        decoder_ffn_dims=dec,
        decoder_self_heads=[rng.choice(heads) for _ in dec],
        decoder_cross_heads=[rng.choice(heads) for _ in dec],
        decoder_cross_layers=[rng.randint(1, enc_layers) for _ in dec],
        decoder_top_k=[rng.randint(1, min(2, len(d))) for d in dec],
    )


def active_params(arch: ArchConfig, vocab: int = VOCAB, qkv: int = QKV) -> int:
    """Parameters an arch uses, counted from first principles."""

    def ffn(d: int, dims: tuple[int, ...]) -> int:
        experts = sum(2 * d * w + w + d for w in dims if w > 0)
        router = len(dims) * d + len(dims) if len(dims) > 1 else 0
        return experts + router

    def attn(d: int, kv_in: int) -> int:
        return (qkv * d + qkv) + 2 * (qkv * kv_in + qkv) + (d * qkv + d)

    de, dd = arch.encoder_embed_dim, arch.decoder_embed_dim
    total = vocab * max(de, dd)
    total += sum(2 * 2 * de + attn(de, de) + ffn(de, dims) for dims in arch.encoder_ffn_dims)
    total += 2 * de
    total += sum(
        3 * 2 * dd + attn(dd, dd) + attn(dd, de) + ffn(dd, dims) for dims in arch.decoder_ffn_dims
    )
    total += 2 * dd
    return total


def batch(seed: int = 0, b: int = 3, s: int = 7, t: int = 6) -> tuple[torch.Tensor, ...]:
    """Right-padded source and target tokens; the first row of each is full length."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    tgt = torch.randint(4, VOCAB, (b, t), generator=g)
    for i in range(1, b):
        src[i, torch.randint(2, s, (1,), generator=g).item() :] = 0
        tgt[i, torch.randint(2, t, (1,), generator=g).item() :] = 0
    return src, src.eq(0), tgt


@pytest.fixture(scope="module")
def supernet() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(VOCAB, QKV, SHAPE))
    with torch.no_grad():  # non-zero biases and norms, so their slicing matters
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- extraction


ARCHS = [SHAPE, MIXED, *(random_arch(random.Random(i)) for i in range(30))]


@pytest.mark.parametrize("arch", ARCHS, ids=[f"arch{i}" for i in range(len(ARCHS))])
def test_extract_matches_supernet(
    supernet: Transformer, arch: ArchConfig, precision: Precision
) -> None:
    src, pm, tgt = batch(ARCHS.index(arch))
    sub = extract(supernet, arch).eval()
    with torch.no_grad(), precision.autocast():
        want = supernet(src, pm, tgt, arch)
        got = sub(src, pm, tgt)
    if precision.name == "fp32":  # a sliced weight is a strided view: matmul kernels may differ
        torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.balance_loss, want.balance_loss, rtol=0, atol=1e-5)
    else:  # autocast copies a slice into a contiguous bf16 weight: the very same kernels run
        assert got.logits.dtype == torch.bfloat16
        assert torch.equal(got.logits, want.logits)
        assert torch.equal(got.balance_loss, want.balance_loss)
    pairs = zip(
        got.encoder_stats + got.decoder_stats, want.encoder_stats + want.decoder_stats, strict=True
    )
    for a, b in pairs:
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a.expert_counts, b.expert_counts)
    assert n_params(sub) == active_params(arch)
    if arch != SHAPE:
        assert n_params(sub) < n_params(supernet)


def test_random_archs_cover_the_space() -> None:
    """The helper really produces the cases the extraction test is meant to cover."""
    archs = ARCHS[2:]
    assert {a.encoder_embed_dim != a.decoder_embed_dim for a in archs} == {True, False}
    assert any(a.encoder_layers < SHAPE.encoder_layers for a in archs)
    assert any(a.decoder_layers < SHAPE.decoder_layers for a in archs)
    assert any(max(a.decoder_cross_layers) > 1 for a in archs)
    assert any(len(set(dims)) > 1 for a in archs for dims in a.encoder_ffn_dims)
    assert any(0 in dims for a in archs for dims in a.decoder_ffn_dims)
    assert any(2 in a.encoder_top_k + a.decoder_top_k for a in archs)
    assert any(len(set(a.encoder_heads + a.decoder_self_heads)) > 1 for a in archs)


def test_full_shape_extract_has_every_parameter(supernet: Transformer) -> None:
    assert n_params(extract(supernet, SHAPE)) == n_params(supernet) == active_params(SHAPE)


def test_extracted_model_saves_and_loads_alone(supernet: Transformer, tmp_path: Path) -> None:
    sub = extract(supernet, MIXED).eval()
    path = tmp_path / "sub" / "model.pt"
    sub.save(path)
    loaded = Transformer.load(path).eval()
    assert loaded.config == sub.config
    assert loaded.config.shape == MIXED
    src, pm, tgt = batch(1)
    with torch.no_grad():
        a, b = sub(src, pm, tgt), loaded(src, pm, tgt)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.balance_loss, b.balance_loss)
    assert n_params(loaded) == active_params(MIXED)


def test_extract_keeps_training_mode(supernet: Transformer) -> None:
    assert not extract(supernet, MIXED).training
    supernet.train()
    try:
        assert extract(supernet, MIXED).training
    finally:
        supernet.eval()


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("arch", [SHAPE, MIXED, random_arch(random.Random(100))])
@pytest.mark.parametrize("standalone", [False, True])
def test_incremental_decoding_equals_teacher_forcing(
    supernet: Transformer,
    arch: ArchConfig,
    standalone: bool,
    precision: Precision,
    assert_same: Callable[..., None],
) -> None:
    model = extract(supernet, arch).eval() if standalone else supernet
    use = None if standalone else arch
    src, pm, tgt = batch(2, t=8)
    with torch.no_grad(), precision.autocast():
        enc = model.encode(src, pm, use)
        full, _ = model.decode(tgt, enc, use)
        cache: list = []
        steps = [
            model.decode(tgt[:, i : i + 1], enc, use, cache=cache, start=i)[0]
            for i in range(tgt.shape[1])
        ]
    inc = torch.cat(steps, dim=1)
    real = tgt.ne(0)
    assert_same(inc[real], full[real], rtol=0, atol=1e-5)


def test_reorder_cache_follows_beams(
    supernet: Transformer, precision: Precision, assert_same: Callable[..., None]
) -> None:
    src, pm, tgt = batch(3, t=5)
    index = torch.tensor([2, 2, 0])
    with torch.no_grad(), precision.autocast():
        enc = supernet.encode(src, pm, MIXED)
        cache: list = []
        for i in range(3):
            supernet.decode(tgt[:, i : i + 1], enc, MIXED, cache=cache, start=i)
        Transformer.reorder_cache(cache, index)
        enc2 = enc.index_select(index)
        got, _ = supernet.decode(tgt[index, 3:4], enc2, MIXED, cache=cache, start=3)
        full, _ = supernet.decode(tgt[index, :4], enc2, MIXED)
    real = tgt[index, 3].ne(0)
    assert_same(got[:, 0][real], full[:, 3][real], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- arch errors


def _with(arch: ArchConfig, **changes) -> ArchConfig:
    return ArchConfig.from_dict({**arch.to_dict(), **changes})


TOO_BIG = {
    "wider embedding": (_with(MIXED, encoder_embed_dim=32), "encoder_embed_dim = 32"),
    "deeper": (
        _with(
            SHAPE,
            decoder_ffn_dims=[[32]] * 4,
            decoder_self_heads=[4] * 4,
            decoder_cross_heads=[4] * 4,
            decoder_cross_layers=[1] * 4,
            decoder_top_k=[1] * 4,
        ),
        "decoder layers = 4",
    ),
    "more experts": (
        _with(MIXED, encoder_ffn_dims=[[8] * 5, [16], [0, 24, 8]]),
        "encoder layer 0 has 5 experts",
    ),
    "wider expert": (
        _with(MIXED, decoder_ffn_dims=[[8, 16, 0, 64], [24]]),
        "decoder layer 0 expert 3 width 64",
    ),
}


@pytest.mark.parametrize("case", list(TOO_BIG), ids=list(TOO_BIG))
def test_arch_that_does_not_fit_raises(supernet: Transformer, case: str) -> None:
    arch, message = TOO_BIG[case]
    with pytest.raises(ArchError, match=message):
        extract(supernet, arch)
    with pytest.raises(ArchError, match="does not fit"):
        supernet.check_arch(arch)
    assert isinstance(ArchError("x"), AutomoeError)


@pytest.mark.parametrize("case", ["wider embedding", "wider expert"])
def test_forward_rejects_arch_that_does_not_fit(supernet: Transformer, case: str) -> None:
    arch, _ = TOO_BIG[case]
    src, pm, tgt = batch(0)
    with pytest.raises(ArchError):
        supernet(src, pm, tgt, arch)


# --------------------------------------------------------------------------- checkpoints


def test_missing_corrupt_or_truncated_checkpoint_raises(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(VOCAB, QKV, MIXED))
    good = tmp_path / "good.pt"
    model.save(good)
    data = good.read_bytes()
    cases = {
        "missing": None,
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "garbage": b"not a checkpoint" * 64,
        "header": bytes(64) + data[64:],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.pt"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(AutomoeError, match=str(path)):
            Transformer.load(path)
    with pytest.raises(AutomoeError):
        Transformer.load(tmp_path)  # a directory

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(AutomoeError, match="not an automoe model"):
        Transformer.load(foreign)

    wrong = tmp_path / "wrong.pt"
    ckpt = model.checkpoint()
    ckpt["state_dict"] = {k: v[..., :1] for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, wrong)
    with pytest.raises(AutomoeError, match="do not match"):
        Transformer.load(wrong)


@pytest.mark.parametrize("drop", ["config", "state_dict", "shape", "state_list"])
def test_incomplete_checkpoint_raises_automoe_error(tmp_path: Path, drop: str) -> None:
    torch.manual_seed(0)
    ckpt = Transformer(ModelConfig(VOCAB, QKV, MIXED)).checkpoint()
    assert ckpt["format"] == CHECKPOINT_FORMAT
    if drop == "shape":
        del ckpt["config"]["shape"]
    elif drop == "state_list":
        ckpt["state_dict"] = list(ckpt["state_dict"].values())
    else:
        del ckpt[drop]
    path = tmp_path / "incomplete.pt"
    torch.save(ckpt, path)
    with pytest.raises(AutomoeError):
        Transformer.load(path)


# --------------------------------------------------------------------------- gradients


def test_gradients_reach_only_the_active_slice(supernet: Transformer, precision: Precision) -> None:
    """SuperNet gradients are the extracted model's gradients padded with zeros (or None)."""
    arch = MIXED
    sub = extract(supernet, arch).eval()
    src, pm, tgt = batch(4)
    supernet.zero_grad(set_to_none=True)
    for model, use in ((supernet, arch), (sub, None)):
        with precision.autocast():
            out = model(src, pm, tgt, use)
        weights = torch.randn(out.logits.shape, generator=torch.Generator().manual_seed(0))
        ((out.logits * weights).sum() + out.balance_loss).backward()
    sub_grads = {n: p.grad for n, p in sub.named_parameters()}
    try:
        for name, p in supernet.named_parameters():
            if name not in sub_grads:  # unused layer, expert or router
                assert p.grad is None or not p.grad.any(), name
                continue
            corner = tuple(slice(0, n) for n in sub_grads[name].shape)
            if precision.name == "fp32":
                torch.testing.assert_close(p.grad[corner], sub_grads[name], rtol=1e-4, atol=1e-5)
            else:  # the same bf16 kernels run forward and backward (see test_extract_...)
                assert torch.equal(p.grad[corner], sub_grads[name]), name
            rest = p.grad.clone()
            rest[corner] = 0
            assert not rest.any(), f"{name} has gradient outside the active slice"
        # spot checks written out by hand
        enc0 = supernet.encoder_layers[0].ffn
        assert enc0.experts[2].fc1.weight.grad is None  # layer 0 uses 2 of 4 experts
        assert not enc0.experts[1].fc1.weight.grad[8:].any()  # expert 1 runs at width 8
        assert supernet.decoder_layers[2].ffn.experts[0].fc1.weight.grad is None  # depth 2 < 3
        assert not supernet.embed.weight.grad[:, 16:].any()  # widest active embedding is 16
    finally:
        supernet.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- padding, seeds


@pytest.mark.parametrize("arch", [SHAPE, MIXED])
def test_extra_padding_leaves_real_tokens_unchanged(supernet: Transformer, arch) -> None:
    src, pm, tgt = batch(5)
    src2 = torch.cat([src, torch.zeros(3, 6, dtype=torch.long)], dim=1)
    tgt2 = torch.cat([tgt, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = supernet(src, pm, tgt, arch)
        b = supernet(src2, src2.eq(0), tgt2, arch)
    real = tgt.ne(0)
    assert real.sum() < real.numel()  # the batch itself has padding too
    torch.testing.assert_close(b.logits[:, : tgt.shape[1]][real], a.logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(b.balance_loss, a.balance_loss, atol=1e-6, rtol=0)


def test_padding_token_values_do_not_matter(supernet: Transformer) -> None:
    """Real positions ignore what sits under the source padding mask."""
    src, pm, tgt = batch(6)
    noisy = src.clone()
    noisy[pm] = 7  # a real token id, but masked out
    with torch.no_grad():
        a = supernet(src, pm, tgt, MIXED)
        b = supernet(noisy, pm, tgt, MIXED)
    real = tgt.ne(0)
    torch.testing.assert_close(a.logits[real], b.logits[real], atol=1e-5, rtol=0)


def _train_steps(seed: int, steps: int = 2) -> tuple[dict, torch.Tensor]:
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(VOCAB, QKV, SHAPE, dropout=0.3)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src, pm, tgt = batch(7)
    for _ in range(steps):
        out = model(src, pm, tgt, MIXED)
        loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        (loss + 0.01 * out.balance_loss).backward()
        opt.step()
    return model.state_dict(), out.logits.detach()


def test_training_is_deterministic_under_a_seed() -> None:
    state_a, logits_a = _train_steps(11)
    state_b, logits_b = _train_steps(11)
    assert torch.equal(logits_a, logits_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    _, logits_c = _train_steps(12)
    assert not torch.equal(logits_a, logits_c)


def test_dropout_is_active_in_training_and_off_in_eval(supernet: Transformer) -> None:
    src, pm, tgt = batch(8)
    torch.manual_seed(0)
    sub = extract(supernet, MIXED)
    assert sub.config.dropout_ref_dim == supernet.config.dropout_ref_dim
    with torch.no_grad():
        e1, e2 = sub(src, pm, tgt).logits, sub(src, pm, tgt).logits
        sub.train()
        t1, t2 = sub(src, pm, tgt).logits, sub(src, pm, tgt).logits
    assert torch.equal(e1, e2)
    assert not torch.equal(t1, t2)
