"""SearchSpace: files and their error messages, exact counting, and operators that never leave
the space (sample, mutate, crossover, encode/decode)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, ArchError, SearchSpace, SpaceError

MULTI30K = {
    "name": "multi30k",
    "qkv_dim": 256,
    "max_experts": 4,
    "fractional_experts": True,
    "identity_experts": False,
    "encoder": {
        "embed_dim": [192, 256],
        "layers": [4],
        "ffn_dim": [512, 768, 1024],
        "heads": [2, 4],
        "experts": [1, 2, 3, 4],
        "top_k": [1],
    },
    "decoder": {
        "embed_dim": [192, 256],
        "layers": [1, 2, 3, 4],
        "ffn_dim": [512, 768, 1024],
        "self_heads": [2, 4],
        "cross_heads": [2, 4],
        "cross_layers": [1, 2, 3],
        "experts": [1, 2, 3, 4],
        "top_k": [1],
    },
}


def tiny(fractional: bool = True, identity: bool = True, **sides: dict) -> dict:
    """A space small enough to enumerate: depth-dependent cross_layers, top_k <= experts."""
    data = {
        "name": "tiny",
        "qkv_dim": 4,
        "max_experts": 2,
        "fractional_experts": fractional,
        "identity_experts": identity,
        "encoder": {
            "embed_dim": [8],
            "layers": [1, 2],
            "ffn_dim": [4, 8],
            "heads": [2],
            "experts": [1, 2],
            "top_k": [1, 2],
        },
        "decoder": {
            "embed_dim": [8, 16],
            "layers": [1],
            "ffn_dim": [4, 8],
            "self_heads": [2],
            "cross_heads": [2],
            "cross_layers": [1, 2],
            "experts": [1, 2],
            "top_k": [1, 2],
        },
    }
    for side, values in sides.items():
        data[side].update(values)
    return data


MODES = [(True, True), (True, False), (False, True), (False, False)]
SPACES = {
    "wmt": SearchSpace.load("wmt"),
    "multi30k": SearchSpace.load("multi30k"),
    **{f"tiny-fractional={f}-identity={i}": SearchSpace.from_dict(tiny(f, i)) for f, i in MODES},
    # Deep enough for depth changes, wide enough for identity experts and the shared-width rule.
    "shared-identity": SearchSpace.from_dict(
        {
            **MULTI30K,
            "name": "shared-identity",
            "fractional_experts": False,
            "identity_experts": True,
            "encoder": {**MULTI30K["encoder"], "layers": [1, 2, 3, 4], "top_k": [1, 2]},
            "decoder": {**MULTI30K["decoder"], "top_k": [1, 3]},
        }
    ),
}
seeds = st.integers(0, 2**32 - 1)
space_names = st.sampled_from(sorted(SPACES))


def brute_force(space: SearchSpace) -> set[ArchConfig]:
    """Every architecture of `space`, by filtering a superset with `contains`."""

    def layers(side: dict, heads: list[str], cross: list[int]) -> list[tuple]:
        widths = [0, *side["ffn_dim"]]
        return [
            (h, c, w, k)
            for h in itertools.product(*(side[key] for key in heads))
            for c in cross
            for e in range(1, space.max_experts + 1)
            for w in itertools.product(widths, repeat=e)
            for k in side["top_k"]
        ]

    enc, dec = space.encoder, space.decoder
    enc_layers = layers(enc, ["heads"], [0])
    dec_layers = layers(dec, ["self_heads", "cross_heads"], list(dec["cross_layers"]))
    found = set()
    for ee, de in itertools.product(enc["embed_dim"], dec["embed_dim"]):
        for n_enc in enc["layers"]:
            for n_dec in dec["layers"]:
                for es in itertools.product(enc_layers, repeat=n_enc):
                    for ds in itertools.product(dec_layers, repeat=n_dec):
                        try:
                            arch = ArchConfig(
                                encoder_embed_dim=ee,
                                decoder_embed_dim=de,
                                encoder_ffn_dims=[w for _, _, w, _ in es],
                                encoder_heads=[h[0] for h, _, _, _ in es],
                                encoder_top_k=[k for _, _, _, k in es],
                                decoder_ffn_dims=[w for _, _, w, _ in ds],
                                decoder_self_heads=[h[0] for h, _, _, _ in ds],
                                decoder_cross_heads=[h[1] for h, _, _, _ in ds],
                                decoder_cross_layers=[c for _, c, _, _ in ds],
                                decoder_top_k=[k for _, _, _, k in ds],
                            )
                        except ArchError:
                            continue
                        if space.contains(arch):
                            found.add(arch)
    return found


@pytest.mark.parametrize(("fractional", "identity"), MODES)
@pytest.mark.parametrize(
    "sides",
    [
        {"decoder": {"embed_dim": [8]}},  # cross_layers depend on the encoder depth
        {
            "encoder": {"layers": [1]},
            "decoder": {"layers": [1, 2], "cross_layers": [1], "top_k": [1]},
        },
    ],
    ids=["encoder-depths", "decoder-depths"],
)
def test_size_matches_brute_force(fractional: bool, identity: bool, sides: dict) -> None:
    space = SearchSpace.from_dict(tiny(fractional, identity, **sides))
    assert space.size() == len(brute_force(space))


def test_size_of_the_paper_space_by_hand() -> None:
    # Per encoder layer: 2 head choices x sum over 1..6 experts of 3^experts width tuples.
    widths = sum(3**e for e in range(1, 7))
    encoder_layer = 2 * widths
    decoder_layer = 2 * 2 * 3 * widths  # self heads x cross heads x cross_layers x widths
    decoders = sum(decoder_layer**n for n in range(1, 7))
    assert SPACES["wmt"].size() == 2 * 2 * encoder_layer**6 * decoders


def test_sampling_reaches_every_arch_and_is_uniform_per_gene() -> None:
    space = SearchSpace.from_dict(
        tiny(
            encoder={"layers": [1], "experts": [2], "top_k": [1]},
            decoder={"embed_dim": [8], "cross_layers": [1], "top_k": [1]},
        )
    )
    rng = random.Random(0)
    draws = [space.sample(rng) for _ in range(4000)]
    assert set(draws) == brute_force(space)
    assert len(set(draws)) == space.size() == 80
    # The 8 encoder layers with a non-identity expert are equally likely (rejection sampling).
    counts: dict[tuple[int, ...], int] = {}
    for arch in draws:
        counts[arch.encoder_ffn_dims[0]] = counts.get(arch.encoder_ffn_dims[0], 0) + 1
    assert len(counts) == 8
    assert all(350 < n < 650 for n in counts.values()), counts


# ------------------------------------------------------------------ presets and files


def test_presets_ship_with_the_package() -> None:
    assert {"wmt", "multi30k"} <= set(SearchSpace.presets())
    assert SearchSpace.load("multi30k").to_dict() == MULTI30K


def test_wmt_preset_is_the_paper_space() -> None:
    space = SPACES["wmt"]
    assert (space.qkv_dim, space.max_experts) == (512, 6)
    assert space.fractional_experts and not space.identity_experts
    for side in (space.encoder, space.decoder):
        assert side["embed_dim"] == (512, 640)
        assert side["ffn_dim"] == (1024, 2048, 3072)
        assert side["experts"] == (1, 2, 3, 4, 5, 6)
        assert side["top_k"] == (1,)
    assert space.encoder["layers"] == (6,)
    assert space.encoder["heads"] == (4, 8)
    assert space.decoder["layers"] == (1, 2, 3, 4, 5, 6)
    assert space.decoder["self_heads"] == space.decoder["cross_heads"] == (4, 8)
    assert space.decoder["cross_layers"] == (1, 2, 3)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_dict_and_file_round_trips(name: str, tmp_path: Path) -> None:
    space = SPACES[name]
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space
    assert again.to_dict() == space.to_dict()
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    loaded = SearchSpace.load(path)
    assert loaded == space
    assert loaded.source == str(path)
    assert SearchSpace.load(str(path)) == space


def test_choices_are_sorted_and_read_only() -> None:
    data = copy.deepcopy(MULTI30K)
    data["encoder"]["heads"] = [4, 2]
    space = SearchSpace.from_dict(data)
    assert space.encoder["heads"] == (2, 4)
    assert space == SPACES["multi30k"]
    with pytest.raises(TypeError):
        space.encoder["heads"] = (8,)  # type: ignore[index]


def _without(data: dict, side: str | None, key: str) -> dict:
    if side is None:
        del data[key]
    else:
        del data[side][key]
    return data


BAD_SPACES = [
    # (edit of the multi30k dict, text the one error message must hold besides the file name)
    (lambda d: d.update(colour="blue"), ["colour", "blue", "allowed keys", "qkv_dim"]),
    (lambda d: d["decoder"].update(depth=[2]), ["decoder.depth", "[2]", "cross_layers"]),
    (lambda d: _without(d, None, "max_experts"), ["max_experts", "missing"]),
    (lambda d: _without(d, "encoder", "top_k"), ["encoder.top_k", "missing"]),
    (lambda d: d.update(encoder=[4]), ["encoder", "[4]", "mapping"]),
    (lambda d: d["encoder"].update(heads=[]), ["encoder.heads", "[]", "empty"]),
    (lambda d: d["decoder"].update(layers=4), ["decoder.layers", "4", "list"]),
    (lambda d: d["encoder"].update(ffn_dim=[512, "wide"]), ["encoder.ffn_dim", "'wide'"]),
    (lambda d: d["encoder"].update(ffn_dim=[512, 1.5]), ["encoder.ffn_dim", "1.5"]),
    (lambda d: d["decoder"].update(embed_dim=[0, 256]), ["decoder.embed_dim", "0", "positive"]),
    (lambda d: d["decoder"].update(self_heads=[2, -4]), ["decoder.self_heads", "-4"]),
    (lambda d: d["encoder"].update(top_k=[True]), ["encoder.top_k", "True"]),
    (lambda d: d["encoder"].update(experts=[1, 2, 2]), ["encoder.experts", "[1, 2, 2]", "repeats"]),
    (lambda d: d.update(qkv_dim=0), ["qkv_dim", "0", "positive"]),
    (lambda d: d.update(max_experts="4"), ["max_experts", "'4'"]),
    (
        lambda d: d.update(fractional_experts="yes"),
        ["fractional_experts", "'yes'", "true or false"],
    ),
    (lambda d: d.update(name=""), ["name", "''"]),
    (lambda d: d["encoder"].update(heads=[2, 3]), ["encoder.heads", "3", "qkv_dim = 256"]),
    (lambda d: d["decoder"].update(cross_heads=[512]), ["decoder.cross_heads", "512", "divide"]),
    (lambda d: d["encoder"].update(experts=[1, 8]), ["encoder.experts", "8", "max_experts = 4"]),
    (lambda d: d["decoder"].update(top_k=[1, 5]), ["decoder.top_k", "5", "max_experts = 4"]),
    (
        lambda d: d["decoder"].update(top_k=[2]),
        ["decoder.top_k", "[2]", "1 expert", "no top_k"],
    ),
    (
        lambda d: d["decoder"].update(cross_layers=[1, 5]),
        ["decoder.cross_layers", "5", "largest encoder depth 4"],
    ),
    (
        lambda d: (d["encoder"].update(layers=[1, 4]), d["decoder"].update(cross_layers=[2, 3])),
        ["decoder.cross_layers", "[2, 3]", "encoder of 1 layer", "no valid cross_layers"],
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_SPACES)
def test_bad_space_files_get_one_clear_message(edit, expected: list[str], tmp_path: Path) -> None:
    data = copy.deepcopy(MULTI30K)
    edit(data)
    path = tmp_path / "bad_space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for text in expected:
        assert text in message, (text, message)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(info.value) and "multi30k" in str(info.value)
    with pytest.raises(SpaceError, match="no-such-preset"):
        SearchSpace.load("no-such-preset")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [oops\n")
    with pytest.raises(SpaceError, match=r"broken.yaml is not valid YAML: .* at line 2") as info:
        SearchSpace.load(broken)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpaceError, match=r"empty.yaml: the search space = None must be a mapping"):
        SearchSpace.load(empty)


def test_errors_are_user_errors() -> None:
    assert issubclass(SpaceError, AutomoeError)
    assert issubclass(SpaceError, ValueError)
    with pytest.raises(SpaceError, match="<dict>: missing key"):
        SearchSpace.from_dict({})


# ------------------------------------------------------------------ membership


def test_validate_names_the_field_the_value_and_the_choices() -> None:
    space = SPACES["multi30k"]
    arch = space.largest()
    cases = {
        "encoder_heads[2] = 3 is not in the space's choices [2, 4]": {
            "encoder_heads": (4, 4, 3, 4)
        },
        "decoder_embed_dim = 320 is not in the space's choices [192, 256]": {
            "decoder_embed_dim": 320
        },
        "encoder_layers = 2 is not in the space's choices [4]": {
            "encoder_ffn_dims": ((512,),) * 2,
            "encoder_heads": (2, 2),
            "encoder_top_k": (1, 1),
            "decoder_cross_layers": (1, 1, 1, 1),
        },
        "decoder_ffn_dims[1][3] = 2048 is not in the space's choices [512, 768, 1024]": {
            "decoder_ffn_dims": ((1024,) * 4, (1024, 1024, 1024, 2048), *((1024,) * 4,) * 2)
        },
        "encoder_ffn_dims[0][1] = 0 is not in the space's choices [512, 768, 1024]": {
            "encoder_ffn_dims": ((512, 0), *((1024,) * 4,) * 3)
        },
        "encoder_experts[3] = 5 is not in the space's choices [1, 2, 3, 4]": {
            "encoder_ffn_dims": (*((1024,) * 4,) * 3, (512,) * 5)
        },
        "decoder_top_k[0] = 2 is not in the space's choices [1]": {"decoder_top_k": (2, 1, 1, 1)},
        "decoder_cross_layers[3] = 4 is not in the space's choices [1, 2, 3]": {
            "decoder_cross_layers": (3, 3, 3, 4)
        },
    }
    for expected, change in cases.items():
        bad = dataclasses.replace(arch, **change)
        assert not space.contains(bad)
        with pytest.raises(SpaceError) as info:
            space.validate(bad)
        assert expected in str(info.value), (expected, str(info.value))
    with pytest.raises(SpaceError, match="expected an ArchConfig"):
        space.validate(arch.to_dict())  # type: ignore[arg-type]


def test_shared_width_spaces_refuse_mixed_widths() -> None:
    space = SPACES["shared-identity"]
    arch = space.smallest()
    ok = dataclasses.replace(arch, decoder_ffn_dims=((768, 0, 768),), decoder_top_k=(1,))
    assert space.contains(ok)
    mixed = dataclasses.replace(ok, decoder_ffn_dims=((768, 0, 512),))
    with pytest.raises(SpaceError, match=r"decoder_ffn_dims\[0\] = \[768, 0, 512\] mixes"):
        space.validate(mixed)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_extremes_and_supernet_shape(name: str) -> None:
    space = SPACES[name]
    big, small, shape = space.largest(), space.smallest(), space.supernet_shape()
    assert space.contains(big) and space.contains(small)
    for side in ("encoder", "decoder"):
        choices = space.encoder if side == "encoder" else space.decoder
        for arch, pick in ((big, max), (small, min)):
            assert getattr(arch, f"{side}_embed_dim") == pick(choices["embed_dim"])
            assert len(getattr(arch, f"{side}_ffn_dims")) == pick(choices["layers"])
            assert set(getattr(arch, f"{side}_experts")) == {pick(choices["experts"])}
            assert set(getattr(arch, f"{side}_top_k")) == {pick(choices["top_k"])}
        widths = {w for layer in getattr(big, f"{side}_ffn_dims") for w in layer}
        assert widths == {max(choices["ffn_dim"])}
        assert getattr(small, f"{side}_ffn_dims")[0][0] == min(choices["ffn_dim"])
        assert getattr(shape, f"{side}_embed_dim") == max(choices["embed_dim"])
        expected = ((max(choices["ffn_dim"]),) * space.max_experts,) * max(choices["layers"])
        assert getattr(shape, f"{side}_ffn_dims") == expected
    assert set(big.decoder_cross_layers) == {max(space.decoder["cross_layers"])}
    assert set(small.decoder_cross_layers) == {min(space.decoder["cross_layers"])}
    assert big.fits_in(shape) is None and small.fits_in(shape) is None


# ------------------------------------------------------------------ random operators


def test_sample_is_deterministic_under_a_seed() -> None:
    space = SPACES["multi30k"]
    first = [space.sample(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert len({space.sample(random.Random(seed)) for seed in range(20)}) == 20
    rng_a, rng_b = random.Random(3), random.Random(3)
    a, b = space.sample(rng_a), space.sample(rng_b)
    assert space.mutate(a, 0.3, rng_a) == space.mutate(b, 0.3, rng_b)
    c = space.sample(rng_a)
    assert space.crossover(a, c, rng_a) == space.crossover(b, space.sample(rng_b), rng_b)


def _samples(space: SearchSpace) -> Iterator[ArchConfig]:
    rng = random.Random(11)
    yield from (space.sample(rng) for _ in range(300))


def test_samples_cover_every_choice_of_the_preset() -> None:
    space = SPACES["multi30k"]
    archs = list(_samples(space))
    assert {a.encoder_embed_dim for a in archs} == {192, 256}
    assert {a.decoder_layers for a in archs} == {1, 2, 3, 4}
    assert {len(layer) for a in archs for layer in a.decoder_ffn_dims} == {1, 2, 3, 4}
    assert {w for a in archs for layer in a.encoder_ffn_dims for w in layer} == {512, 768, 1024}
    assert {h for a in archs for h in a.decoder_cross_heads} == {2, 4}
    assert {n for a in archs for n in a.decoder_cross_layers} == {1, 2, 3}
    # Fractional experts: widths inside one layer do differ.
    assert any(len(set(layer)) > 1 for a in archs for layer in a.encoder_ffn_dims)


def test_shared_width_samples_keep_one_width_per_layer() -> None:
    space = SPACES["shared-identity"]
    archs = list(_samples(space))
    layers = [layer for a in archs for layer in (*a.encoder_ffn_dims, *a.decoder_ffn_dims)]
    assert all(len(set(layer) - {0}) == 1 for layer in layers)
    assert any(0 in layer for layer in layers)
    assert {k for a in archs for k in a.decoder_top_k} == {1, 3}


@settings(max_examples=150, deadline=None)
@given(name=space_names, seed=seeds, prob=st.floats(0.0, 1.0))
def test_operators_stay_in_the_space(name: str, seed: int, prob: float) -> None:
    space = SPACES[name]
    rng = random.Random(seed)
    shape = space.supernet_shape()
    a, b = space.sample(rng), space.sample(rng)
    children = [a, b, space.mutate(a, prob, rng), space.crossover(a, b, rng)]
    children.append(space.crossover(children[2], children[3], rng))
    for arch in children:
        space.validate(arch)
        assert arch.fits_in(shape) is None
        vector = space.encode(arch)
        assert len(vector) == len(space.encoding_names())
        assert all(type(v) is int for v in vector)
        assert space.decode(vector) == arch


@settings(max_examples=80, deadline=None)
@given(name=space_names, seed=seeds)
def test_identity_cases_of_the_operators(name: str, seed: int) -> None:
    space = SPACES[name]
    rng = random.Random(seed)
    a = space.sample(rng)
    assert space.mutate(a, 0.0, rng) == a
    assert space.crossover(a, a, rng) == a


@pytest.mark.parametrize("name", sorted(SPACES))
def test_mutation_with_probability_one_changes_things(name: str) -> None:
    space = SPACES[name]
    rng = random.Random(5)
    changed = 0
    for _ in range(100):
        a = space.sample(rng)
        changed += space.mutate(a, 1.0, rng) != a
    assert changed >= 95


def test_mutation_changes_depth_and_repairs() -> None:
    space = SPACES["shared-identity"]
    rng = random.Random(1)
    depths, cross = set(), set()
    for _ in range(200):
        a = space.sample(rng)
        child = space.mutate(a, 0.5, rng)
        space.validate(child)
        depths.add((a.encoder_layers, child.encoder_layers))
        cross.update(n for n in child.decoder_cross_layers)
    assert any(old < new for old, new in depths) and any(old > new for old, new in depths)
    assert cross == {1, 2, 3}


def test_crossover_takes_genes_from_both_parents() -> None:
    space = SPACES["multi30k"]
    a, b = space.largest(), space.smallest()
    rng = random.Random(2)
    children = [space.crossover(a, b, rng) for _ in range(100)]
    assert {c.encoder_embed_dim for c in children} == {192, 256}
    assert {c.decoder_layers for c in children} == {1, 4}
    mixed = [c for c in children if c.decoder_layers == 4]
    # Layers only the deeper parent has come from it.
    assert all(c.decoder_ffn_dims[3] == (1024,) * 4 for c in mixed)
    assert any(len(set(c.encoder_heads)) > 1 for c in children)


def test_operators_refuse_bad_input() -> None:
    space = SPACES["multi30k"]
    rng = random.Random(0)
    with pytest.raises(SpaceError, match="probability"):
        space.mutate(space.largest(), 1.5, rng)
    outside = dataclasses.replace(space.largest(), encoder_embed_dim=512)
    with pytest.raises(SpaceError, match="encoder_embed_dim = 512"):
        space.mutate(outside, 0.1, rng)
    with pytest.raises(SpaceError, match="encoder_embed_dim = 512"):
        space.crossover(space.largest(), outside, rng)
    with pytest.raises(SpaceError, match="encoder_embed_dim = 512"):
        space.encode(outside)


# ------------------------------------------------------------------ numeric encoding


def test_encoding_layout() -> None:
    space = SPACES["multi30k"]
    names = space.encoding_names()
    assert len(names) == len(set(names))
    assert names[:5] == ["enc_embed", "enc_layers", "enc0_heads", "enc0_experts", "enc0_top_k"]
    for name in ("enc3_heads", "enc3_experts", "enc3_top_k", "enc3_expert2_ffn"):
        assert name in names
    for name in ("dec_embed", "dec_layers", "dec1_cross_layers", "dec3_expert3_ffn"):
        assert name in names
    assert "enc4_heads" not in names and "dec0_expert4_ffn" not in names
    arch = space.smallest()
    cells = dict(zip(names, space.encode(arch), strict=True))
    assert cells["dec_layers"] == 1 and cells["dec0_experts"] == 1
    assert cells["dec0_expert0_ffn"] == 512 and cells["dec0_expert1_ffn"] == 0
    assert all(v == 0 for k, v in cells.items() if k.startswith(("dec1", "dec2", "dec3")))


def test_encoding_keeps_identity_experts_apart_from_absent_ones() -> None:
    space = SPACES["shared-identity"]
    one = dataclasses.replace(space.smallest(), decoder_ffn_dims=((512,),))
    two = dataclasses.replace(space.smallest(), decoder_ffn_dims=((512, 0),))
    assert space.contains(one) and space.contains(two)
    assert space.encode(one) != space.encode(two)
    assert space.decode(space.encode(two)) == two


def test_decode_refuses_vectors_that_encode_no_arch() -> None:
    space = SPACES["multi30k"]
    names = space.encoding_names()
    good = space.encode(space.smallest())

    def edited(**cells: object) -> list:
        vector = list(good)
        for name, value in cells.items():
            vector[names.index(name)] = value
        return vector

    cases = [
        (good[:-1], "has 68 values, got 67"),
        (edited(enc_embed=256.0), "enc_embed = 256.0 is not an integer"),
        (edited(dec0_top_k=True), "dec0_top_k = True is not an integer"),
        (edited(dec_layers=5), "dec_layers = 5 is not in the space's choices [1, 2, 3, 4]"),
        (edited(dec2_self_heads=4), "dec2_self_heads = 4 must be 0: the decoder has 1 layers"),
        (edited(dec0_expert1_ffn=512), "dec0_expert1_ffn = 512 must be 0: the layer has 1"),
        (edited(enc1_experts=0), "enc1_experts = 0 is not in the space's choices"),
        (edited(enc1_expert0_ffn=0), "encoder_ffn_dims[1]"),
        (edited(enc1_top_k=2), "encoder_top_k[1] = 2 exceeds"),
        (edited(dec0_cross_heads=3), "decoder_cross_heads[0] = 3 is not in the space's choices"),
        (edited(dec_embed=100), "decoder_embed_dim = 100"),
    ]
    for vector, expected in cases:
        with pytest.raises(SpaceError) as info:
            space.decode(vector)
        assert expected in str(info.value), (expected, str(info.value))
