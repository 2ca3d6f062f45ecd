"""Routing granularity (Task-MoE): token, sentence and task routers, per layer, in the model,
the architecture and the search space."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest
import torch

from automoe.cost.flops import count_flops, count_params
from automoe.errors import AutomoeError
from automoe.precision import FP32, Precision
from automoe.space import ArchConfig, ArchError, SearchSpace, SpaceError
from automoe.strategies.genome import decode, genes
from automoe.supernet.model import ModelConfig, Transformer, extract
from automoe.supernet.moe import MoEFeedForward, RoutingContext, RoutingError
from automoe.supernet.task_export import export_task

VOCAB, QKV, TASKS = 50, 16, 3
SHAPE = ArchConfig(
    encoder_embed_dim=16,
    decoder_embed_dim=16,
    encoder_ffn_dims=[[16, 16, 16]] * 2,
    encoder_heads=[2] * 2,
    encoder_top_k=[1] * 2,
    decoder_ffn_dims=[[16, 16, 16]] * 2,
    decoder_self_heads=[2] * 2,
    decoder_cross_heads=[2] * 2,
    decoder_cross_layers=[2] * 2,
    decoder_top_k=[1] * 2,
)


def arch(enc: str, dec: str, top_k: int = 1) -> ArchConfig:
    return dataclasses.replace(
        SHAPE,
        encoder_routing=(enc, enc),
        decoder_routing=(dec, dec),
        encoder_top_k=(top_k, top_k),
        decoder_top_k=(top_k, top_k),
    )


def model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        VOCAB,
        QKV,
        SHAPE,
        dropout=0.0,
        routers=("token", "sentence", "task"),
        num_tasks=TASKS,
    )
    net = Transformer(config).eval()
    with torch.no_grad():  # spread the task logits so tasks prefer different experts
        for layer in [*net.encoder_layers, *net.decoder_layers]:
            layer.ffn.routers["task"].logits.normal_(std=3.0)
    return net


def batch(seed: int = 1, b: int = 6, s: int = 7, t: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    lengths = torch.randint(2, s + 1, (b,), generator=g)
    lengths[0] = s
    padding = torch.arange(s)[None, :] >= lengths[:, None]
    src = src.masked_fill(padding, 0)
    prev = torch.randint(4, VOCAB, (b, t), generator=g)
    tasks = torch.arange(b) % TASKS
    return src, padding, prev, tasks


def chosen_experts(net: Transformer, a: ArchConfig, inputs: tuple) -> list[torch.Tensor]:
    """Each MoE layer's first-choice expert per routed token, with the tokens' sentence rows."""
    seen: list[torch.Tensor] = []
    hooks = []
    for layer in [*net.encoder_layers, *net.decoder_layers]:
        for router in layer.ffn.routers.values():

            def record(module, args, out) -> None:
                context = args[2]
                seen.append(torch.stack([context.token_rows, out.argmax(-1)]))

            hooks.append(router.register_forward_hook(record))
    with torch.no_grad():
        net(*inputs[:3], a, inputs[3])
    for h in hooks:
        h.remove()
    return seen


def test_sentence_routing_sends_a_sentences_tokens_together() -> None:
    net, inputs = model(), batch()
    layers = chosen_experts(net, arch("sentence", "sentence"), inputs)
    assert len(layers) == 4
    spread = False
    for rows, experts in layers:
        for row in rows.unique():
            assert experts[rows == row].unique().numel() == 1
        spread |= experts.unique().numel() > 1
    assert spread, "all sentences went to one expert: the test cannot tell sentences apart"


def test_token_routing_splits_sentences() -> None:
    net, inputs = model(), batch()
    layers = chosen_experts(net, arch("token", "token"), inputs)
    assert any(
        experts[rows == row].unique().numel() > 1
        for rows, experts in layers
        for row in rows.unique()
    )


def test_task_routing_sends_a_tasks_sentences_together() -> None:
    net, inputs = model(), batch()
    tasks = inputs[3]
    for rows, experts in chosen_experts(net, arch("task", "task"), inputs):
        per_task = {}
        for row, expert in zip(rows.tolist(), experts.tolist(), strict=True):
            per_task.setdefault(int(tasks[row]), set()).add(expert)
        assert all(len(e) == 1 for e in per_task.values())


def test_routing_modes_change_outputs_only_of_moe_layers() -> None:
    net, (src, padding, prev, tasks) = model(), batch()
    with torch.no_grad():
        logits = {
            mode: net(src, padding, prev, arch(mode, mode), tasks).logits
            for mode in ("token", "sentence", "task")
        }
    assert not torch.allclose(logits["token"], logits["sentence"])
    assert not torch.allclose(logits["token"], logits["task"])
    assert not torch.allclose(logits["sentence"], logits["task"])
    dense = dataclasses.replace(SHAPE, encoder_ffn_dims=[[16]] * 2, decoder_ffn_dims=[[16]] * 2)
    assert dataclasses.replace(dense, encoder_routing=("task", "task")) == dense


def test_task_routing_depends_on_the_task_not_the_sentence() -> None:
    net, (src, padding, prev, _) = model(), batch()
    with torch.no_grad():
        same = net(src, padding, prev, arch("task", "task"), torch.zeros(6, dtype=torch.long))
        mixed = net(src, padding, prev, arch("task", "task"), torch.arange(6) % TASKS)
    assert torch.allclose(same.logits[0], mixed.logits[0])  # row 0 is task 0 in both
    assert not torch.allclose(same.logits[1:], mixed.logits[1:])


def test_sentence_routing_ignores_padding_and_batch_mates() -> None:
    net, (src, padding, prev, tasks) = model(), batch()
    a = arch("sentence", "sentence")
    with torch.no_grad():
        full = net(src, padding, prev, a, tasks).logits
        for row in range(len(src)):
            n = int((~padding[row]).sum())
            alone = net(src[row : row + 1, :n], padding[row : row + 1, :n], prev[row : row + 1], a)
            torch.testing.assert_close(alone.logits[0], full[row], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modes", [("sentence", "sentence"), ("task", "token"), ("token", "task")])
def test_incremental_decoding_matches_full_decoding(
    modes: tuple[str, str], precision: Precision, assert_same: Callable[..., None]
) -> None:
    net, (src, padding, prev, tasks) = model(), batch()
    a = arch(*modes)
    with torch.no_grad(), precision.autocast():
        full = net(src, padding, prev, a, tasks).logits
        enc = net.encode(src, padding, a, tasks)
        cache: list = []
        steps = [
            net.decode(prev[:, i : i + 1], enc, a, tasks, cache=cache, start=i)[0]
            for i in range(prev.shape[1])
        ]
    assert_same(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modes", [("sentence", "task"), ("task", "sentence")])
def test_extraction_is_exact_for_every_routing_mode(
    modes: tuple[str, str], precision: Precision
) -> None:
    net, (src, padding, prev, tasks) = model(), batch()
    a = dataclasses.replace(
        arch(*modes),
        encoder_embed_dim=12,
        encoder_ffn_dims=[[8, 16], [16, 8, 8]],
        decoder_ffn_dims=[[16, 8, 16]],
        decoder_self_heads=[2],
        decoder_cross_heads=[2],
        decoder_cross_layers=[1],
        decoder_top_k=[1],
        decoder_routing=[modes[1]],
    )
    sub = extract(net, a)
    with torch.no_grad(), precision.autocast():
        got = sub(src, padding, prev, task_ids=tasks).logits
        want = net(src, padding, prev, a, tasks).logits
    if precision.name == "fp32":
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    else:  # bf16 copies every weight slice into a contiguous tensor: the same kernels run
        assert torch.equal(got, want)


def training_step(mode: str, precision: Precision) -> tuple[Transformer, ArchConfig, list]:
    """One backward pass with top-2 routing by `mode` and a capacity that drops tokens; the
    forward runs in `precision`, the loss in fp32 (as the trainer does). Returns the net, the
    arch (fewer experts and layers than held) and each MoE layer's routing stats."""
    torch.manual_seed(0)
    config = ModelConfig(
        VOCAB,
        QKV,
        SHAPE,
        dropout=0.0,
        routers=("token", "sentence", "task"),
        num_tasks=TASKS,
        capacity_factor=0.75,
    )
    net = Transformer(config).train()
    a = dataclasses.replace(
        arch(mode, mode, top_k=2),
        encoder_ffn_dims=[[16, 8, 16], [16, 16]],
        decoder_ffn_dims=[[8, 16, 16]],
        decoder_self_heads=[2],
        decoder_cross_heads=[2],
        decoder_cross_layers=[2],
        decoder_top_k=[2],
        decoder_routing=[mode],
    )
    src, padding, prev, tasks = batch()
    with precision.autocast():
        out = net(src, padding, prev, a, tasks)
    loss = torch.nn.functional.cross_entropy(out.logits.float().transpose(1, 2), prev)
    (loss + 0.01 * out.balance_loss).backward()
    assert loss.isfinite()
    return net, a, out.encoder_stats + out.decoder_stats


@pytest.mark.parametrize("mode", ["token", "sentence", "task"])
def test_training_step_reaches_exactly_the_used_experts(mode: str, precision: Precision) -> None:
    net, a, stats = training_step(mode, precision)
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g.isfinite().all() for g in grads.values() if g is not None)
    layers = [*net.encoder_layers[: a.encoder_layers], *net.decoder_layers[: a.decoder_layers]]
    dims = [*a.encoder_ffn_dims, *a.decoder_ffn_dims]
    capacities = [int(0.75 * int(st.expert_counts.sum()) / len(st.expert_counts)) for st in stats]
    assert any(  # some expert got more tokens than it may keep
        int(st.expert_counts.max()) > c for st, c in zip(stats, capacities, strict=True)
    )
    for layer, widths, st in zip(layers, dims, stats, strict=True):
        counts = st.expert_counts.tolist()
        for e, expert in enumerate(layer.ffn.experts):
            grad = expert.fc1.weight.grad
            if e < len(widths) and counts[e] > 0:
                assert grad is not None and grad.any()
            else:
                assert grad is None or not grad.any()
        for name, router in layer.ffn.routers.items():
            used = any(p.grad is not None and p.grad.any() for p in router.parameters())
            assert used == (name == mode)
    assert all(p.grad is None for p in net.decoder_layers[1].parameters())  # layer not in arch
    if precision.name != "fp32":  # the same step in fp32 points the same way
        reference, _, _ = training_step(mode, FP32)
        ours = torch.cat([g.flatten() for g in grads.values() if g is not None])
        theirs = torch.cat([p.grad.flatten() for p in reference.parameters() if p.grad is not None])
        assert torch.nn.functional.cosine_similarity(ours, theirs, dim=0) > 0.99


def test_task_routing_without_task_ids_is_a_clear_error() -> None:
    net, (src, padding, prev, _) = model(), batch()
    with pytest.raises(RoutingError, match="task id per sentence"):
        net(src, padding, prev, arch("task", "token"))
    with pytest.raises(RoutingError, match="out of range"):
        net(src, padding, prev, arch("task", "token"), torch.full((6,), TASKS))


def test_model_refuses_routing_it_has_no_router_for() -> None:
    torch.manual_seed(0)
    plain = Transformer(ModelConfig(VOCAB, QKV, SHAPE))
    with pytest.raises(ArchError, match=r"routes by \['task'\].*holds routers \['token'\]"):
        plain.check_arch(arch("task", "token"))


def test_layer_refuses_an_unknown_mode() -> None:
    with pytest.raises(RoutingError, match="unknown routing mode 'expert'"):
        MoEFeedForward(8, [8, 8], routers=("expert",))
    layer = MoEFeedForward(8, [8, 8], routers=("token",))
    context = RoutingContext(token_rows=torch.zeros(3, dtype=torch.long))
    with pytest.raises(RoutingError, match="cannot route by 'task'"):
        layer(torch.randn(3, 8), [8, 8], 1, context, "task")


# ----------------------------------------------------------------- architecture fields


def test_routing_round_trips_and_token_only_archs_keep_their_files() -> None:
    routed = arch("sentence", "task")
    assert ArchConfig.from_json(routed.to_json()) == routed
    assert routed.to_dict()["decoder_routing"] == ["task", "task"]
    plain = arch("token", "token")
    assert "encoder_routing" not in plain.to_dict()
    assert ArchConfig.from_dict(plain.to_dict()) == plain
    assert plain.key() == SHAPE.key()
    assert routed.key() != plain.key()


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (["expert", "token"], r"encoder_routing\[0\] = 'expert' is not a routing mode"),
        (["task"], "encoder_routing has 1 entries but the encoder has 2 layers"),
        ("task", "must be a list of routing modes"),
    ],
)
def test_bad_routing_fields_are_named(routing: object, message: str) -> None:
    with pytest.raises(ArchError, match=message):
        dataclasses.replace(SHAPE, encoder_routing=routing)


# ----------------------------------------------------------------- search-space dimension

ROUTED_SPACE = {
    "name": "routed",
    "qkv_dim": 16,
    "max_experts": 3,
    "fractional_experts": True,
    "identity_experts": False,
    "encoder": {
        "embed_dim": [16],
        "layers": [2],
        "ffn_dim": [8, 16],
        "heads": [2],
        "experts": [1, 3],
        "top_k": [1],
        "routing": ["token", "sentence"],
    },
    "decoder": {
        "embed_dim": [16],
        "layers": [1, 2],
        "ffn_dim": [8, 16],
        "self_heads": [2],
        "cross_heads": [2],
        "cross_layers": [1, 2],
        "experts": [1, 3],
        "top_k": [1],
        "routing": ["token", "sentence", "task"],
    },
}


def routed_space() -> SearchSpace:
    return SearchSpace.from_dict(ROUTED_SPACE)


def test_space_routing_dimension_is_sampled_and_validated() -> None:
    space, rng = routed_space(), random.Random(0)
    archs = [space.sample(rng) for _ in range(300)]
    modes = {
        m for a in archs for m, e in zip(a.decoder_routing, a.decoder_experts, strict=True) if e > 1
    }
    assert modes == {"token", "sentence", "task"}
    assert all(
        m == "token"
        for a in archs
        for m, e in zip(a.encoder_routing, a.encoder_experts, strict=True)
        if e == 1
    )
    bad = next(a for a in archs if a.encoder_experts[0] > 1)
    bad = dataclasses.replace(bad, encoder_routing=("task", bad.encoder_routing[1]))
    with pytest.raises(SpaceError, match=r"encoder_routing\[0\] = task is not in .*'sentence'"):
        space.validate(bad)
    children = [space.mutate(a, 0.5, rng) for a in archs[:50]]
    children += [space.crossover(a, b, rng) for a, b in zip(archs[:50], archs[50:100], strict=True)]
    assert all(space.contains(c) for c in children)
    assert len({c.decoder_routing for c in children}) > 3


def test_space_routing_encoding_size_and_file_round_trip() -> None:
    space, rng = routed_space(), random.Random(1)
    assert "enc0_routing" in space.encoding_names()
    for _ in range(100):
        a = space.sample(rng)
        assert space.decode(space.encode(a)) == a
    # per layer: 2 widths (1 expert) + 2**3 widths x modes (3 experts)
    enc_layer, dec_layer = 2 + 8 * 2, 2 * (2 + 8 * 3)
    assert space.size() == enc_layer**2 * (dec_layer + dec_layer**2)
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert space.routing_modes() == ("token", "sentence", "task")
    token_only = SearchSpace.load("multi30k")
    assert "routing" not in token_only.to_dict()["encoder"]
    assert "enc0_routing" not in token_only.encoding_names()


def test_space_refuses_unknown_routing_modes() -> None:
    data = {**ROUTED_SPACE, "encoder": {**ROUTED_SPACE["encoder"], "routing": ["token", "expert"]}}
    with pytest.raises(SpaceError, match=r"encoder\.routing = .*'expert' is not a routing mode"):
        SearchSpace.from_dict(data, source="s.yaml")


def test_genome_asks_routing_only_for_moe_layers() -> None:
    space = routed_space()
    assert genes(space)["dec1_routing"] == 3
    rng = random.Random(3)
    for _ in range(200):
        asked: list[str] = []

        def pick(name: str, n: int, asked: list[str] = asked) -> int:
            asked.append(name)
            return rng.randrange(n)

        a = decode(space, pick)
        assert space.contains(a)
        for i, e in enumerate(a.decoder_experts):
            assert (f"dec{i}_routing" in asked) == (e > 1)


# ----------------------------------------------------------------- task sub-network export


def params(net: Transformer) -> int:
    return sum(t.numel() for t in net.parameters())


@pytest.mark.parametrize(("modes", "top_k"), [(("task", "task"), 1), (("token", "task"), 2)])
def test_exported_task_model_equals_the_full_model_on_its_task(
    modes: tuple[str, str], top_k: int, precision: Precision
) -> None:
    net, (src, padding, prev, _) = model(), batch()
    a = arch(*modes, top_k=top_k)
    # bf16: the full model rounds each expert's output and then scales it by its gate, the
    # export rounds gate-scaled weights, so each folded layer's output differs by about one
    # bf16 rounding; over four layers that is a few ulps (2**-6 each) of logits near 4 (0.04
    # at most here). A gate 10% off moves them by 0.18 or more, an expert left out by 0.3.
    tolerance = (
        {"atol": 1e-5, "rtol": 1e-5} if precision.name == "fp32" else {"atol": 2**-4, "rtol": 0}
    )
    for task in range(TASKS):
        tasks = torch.full((len(src),), task)
        small, small_arch = export_task(net, a, task)
        with torch.no_grad(), precision.autocast():
            want = net(src, padding, prev, a, tasks).logits
            got = small(src, padding, prev, task_ids=tasks).logits
        torch.testing.assert_close(got, want, **tolerance)
        assert all(len(d) == 1 for d in small_arch.decoder_ffn_dims)
        assert small_arch.decoder_ffn_dims[0] == (16 * top_k,)
        assert small_arch.encoder_experts == ((1, 1) if modes[0] == "task" else (3, 3))
        assert params(small) < params(net)
        assert "task" not in small_arch.decoder_routing


def test_export_refuses_what_it_cannot_fold() -> None:
    net = model()
    with pytest.raises(AutomoeError, match="no task-routed MoE layer"):
        export_task(net, arch("token", "sentence"), 0)
    with pytest.raises(AutomoeError, match="out of range"):
        export_task(net, arch("task", "task"), TASKS)
    identity = dataclasses.replace(arch("task", "token"), encoder_ffn_dims=[[0, 0, 16]] * 2)
    with torch.no_grad():
        for layer in net.encoder_layers:
            layer.ffn.routers["task"].logits[:, 0] = 10.0
    with pytest.raises(AutomoeError, match="identity"):
        export_task(net, identity, 0)
    capped = Transformer(
        dataclasses.replace(
            ModelConfig(1, 16, SHAPE, routers=("task",), num_tasks=TASKS), capacity_factor=1.0
        )
    )
    with pytest.raises(AutomoeError, match="capacity factor"):
        export_task(capped, arch("task", "task"), 0)


@pytest.mark.parametrize("modes", [("token", "token"), ("sentence", "task"), ("task", "sentence")])
def test_parameter_and_flop_counts_follow_the_routers(modes: tuple[str, str]) -> None:
    net, a = model(), arch(*modes)
    sub = extract(net, a)
    assert set(sub.encoder_layers[0].ffn.routers) == set(modes)
    report = count_params(a, qkv_dim=QKV, vocab_size=VOCAB, num_tasks=TASKS)
    assert report.total == params(sub)
    token = count_flops(arch("token", "token"), qkv_dim=QKV, vocab_size=VOCAB, src_len=30)
    flops = count_flops(a, qkv_dim=QKV, vocab_size=VOCAB, src_len=30)
    # a token router scores 30 tokens (2*16*3 each); a task router nothing; a sentence router
    # pools the 30 source states (16 each) and scores the sentence once
    per_layer = {"token": 0, "task": -30 * 96, "sentence": 30 * 16 + 96 - 30 * 96}
    assert flops.encoder - token.encoder == 2 * per_layer[modes[0]]
    assert flops.decoder - token.decoder == 2 * per_layer[modes[1]]
