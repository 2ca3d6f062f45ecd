"""ArchConfig: exact JSON/YAML round trips, files, validation messages that name the field,
and `fits_in` against a SuperNet shape."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, ArchError


def make(**overrides: object) -> ArchConfig:
    fields: dict[str, object] = {
        "encoder_embed_dim": 256,
        "decoder_embed_dim": 192,
        "encoder_ffn_dims": ((512,), (1024, 0, 768)),
        "encoder_heads": (4, 2),
        "encoder_top_k": (1, 2),
        "decoder_ffn_dims": ((768, 512),),
        "decoder_self_heads": (2,),
        "decoder_cross_heads": (4,),
        "decoder_cross_layers": (2,),
        "decoder_top_k": (1,),
    }
    fields.update(overrides)
    return ArchConfig(**fields)  # type: ignore[arg-type]


@st.composite
def archs(draw: st.DrawFn) -> ArchConfig:
    """Any well-formed ArchConfig, independent of a search space."""
    widths = st.integers(0, 4096)

    def stack(depth: int) -> list[tuple[int, ...]]:
        layers = []
        for _ in range(depth):
            layer = draw(st.lists(widths, min_size=1, max_size=5))
            if not any(layer):
                layer[0] = draw(st.integers(1, 4096))
            layers.append(tuple(layer))
        return layers

    enc = stack(draw(st.integers(1, 6)))
    dec = stack(draw(st.integers(1, 6)))

    def per_layer(layers: list[tuple[int, ...]], top: int | None = None) -> tuple[int, ...]:
        return tuple(draw(st.integers(1, top or len(layer))) for layer in layers)

    return ArchConfig(
        encoder_embed_dim=draw(st.integers(1, 1024)),
        decoder_embed_dim=draw(st.integers(1, 1024)),
        encoder_ffn_dims=tuple(enc),
        encoder_heads=per_layer(enc, 16),
        encoder_top_k=per_layer(enc),
        decoder_ffn_dims=tuple(dec),
        decoder_self_heads=per_layer(dec, 16),
        decoder_cross_heads=per_layer(dec, 16),
        decoder_cross_layers=per_layer(dec, len(enc)),
        decoder_top_k=per_layer(dec),
    )


@settings(max_examples=60, deadline=None)
@given(archs())
def test_json_round_trip_is_exact(arch: ArchConfig) -> None:
    text = arch.to_json()
    again = ArchConfig.from_json(text)
    assert again == arch
    assert again.to_json() == text
    assert again.key() == arch.key()
    assert ArchConfig.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


@settings(max_examples=30, deadline=None)
@given(archs())
def test_yaml_round_trip_is_exact(arch: ArchConfig) -> None:
    import yaml

    text = yaml.safe_dump(arch.to_dict(), sort_keys=False, default_flow_style=None)
    assert ArchConfig.from_dict(yaml.safe_load(text)) == arch


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_save_load_round_trip(tmp_path, suffix: str) -> None:
    arch = make()
    path = tmp_path / f"arch{suffix}"
    arch.save(path)
    assert ArchConfig.load(path) == arch
    if suffix == ".json":
        assert json.loads(path.read_text()) == arch.to_dict()


def test_load_accepts_an_arch_section(tmp_path) -> None:
    import yaml

    path = tmp_path / "result.yaml"
    path.write_text(yaml.safe_dump({"arch": make().to_dict(), "bleu": 30.1}))
    assert ArchConfig.load(path) == make()


def test_lists_become_tuples_and_properties_follow_the_tuples() -> None:
    arch = make(encoder_ffn_dims=[[512], [1024, 0, 768]], encoder_heads=[4, 2])
    assert arch == make()
    assert arch.encoder_ffn_dims == ((512,), (1024, 0, 768))
    assert (arch.encoder_layers, arch.decoder_layers) == (2, 1)
    assert arch.encoder_experts == (1, 3)
    assert arch.decoder_experts == (2,)
    hash(arch)


def test_key_is_stable_and_distinguishes_archs() -> None:
    assert make().key() == make().key()
    assert make().key() != make(decoder_embed_dim=256).key()
    assert len(make().key()) == 16


@pytest.mark.parametrize(
    ("overrides", "field", "detail"),
    [
        ({"encoder_embed_dim": 0}, "encoder_embed_dim", "0"),
        ({"decoder_embed_dim": True}, "decoder_embed_dim", "True"),
        ({"encoder_ffn_dims": ()}, "encoder_ffn_dims", "empty"),
        ({"encoder_ffn_dims": "512"}, "encoder_ffn_dims", "'512'"),
        ({"encoder_ffn_dims": ((512,), ())}, "encoder_ffn_dims[1]", "empty"),
        ({"encoder_ffn_dims": ((512,), (1024, -1, 768))}, "encoder_ffn_dims[1]", "-1"),
        ({"encoder_ffn_dims": ((512,), (1024, 2.5, 768))}, "encoder_ffn_dims[1]", "2.5"),
        ({"decoder_ffn_dims": ((0,),)}, "decoder_ffn_dims[0]", "[0]"),
        ({"decoder_ffn_dims": ((0, 0),)}, "decoder_ffn_dims[0]", "[0, 0]"),
        ({"encoder_heads": (4,)}, "encoder_heads", "1 entries"),
        ({"encoder_heads": (4, 0)}, "encoder_heads", "[4, 0]"),
        ({"decoder_cross_heads": ("4",)}, "decoder_cross_heads", "'4'"),
        ({"encoder_top_k": (2, 1)}, "encoder_top_k[0]", "= 2"),
        ({"decoder_top_k": (3,)}, "decoder_top_k[0]", "= 3"),
        ({"decoder_cross_layers": (3,)}, "decoder_cross_layers[0]", "= 3"),
    ],
)
def test_invalid_fields_are_named(overrides: dict, field: str, detail: str) -> None:
    with pytest.raises(ArchError) as info:
        make(**overrides)
    assert field in str(info.value)
    assert detail in str(info.value)
    assert isinstance(info.value, AutomoeError)
    assert isinstance(info.value, ValueError)


def test_from_dict_refuses_unknown_and_missing_fields() -> None:
    data = make().to_dict()
    with pytest.raises(ArchError, match=r"unknown architecture field.*'colour'"):
        ArchConfig.from_dict({**data, "colour": 1})
    del data["decoder_top_k"]
    with pytest.raises(ArchError, match=r"missing field.*decoder_top_k"):
        ArchConfig.from_dict(data)
    with pytest.raises(ArchError, match="mapping"):
        ArchConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_bad_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ArchError, match="not valid JSON"):
        ArchConfig.from_json("{")
    missing = tmp_path / "nope.json"
    with pytest.raises(ArchError, match=r"nope.json"):
        ArchConfig.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("encoder_embed_dim: [1,\n")
    with pytest.raises(ArchError, match=r"broken.yaml.*not valid"):
        ArchConfig.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**make().to_dict(), "encoder_heads": [4]}))
    with pytest.raises(ArchError, match=r"wrong.json.*encoder_heads"):
        ArchConfig.load(wrong)


def test_fits_in_accepts_smaller_and_names_what_is_too_big() -> None:
    shape = make(
        encoder_embed_dim=256,
        decoder_embed_dim=256,
        encoder_ffn_dims=((1024, 1024, 1024),) * 2,
        encoder_heads=(4, 4),
        encoder_top_k=(1, 1),
        decoder_ffn_dims=((1024, 1024),) * 2,
        decoder_self_heads=(4, 4),
        decoder_cross_heads=(4, 4),
        decoder_cross_layers=(2, 2),
        decoder_top_k=(1, 1),
    )
    assert make().fits_in(shape) is None
    assert shape.fits_in(shape) is None
    cases = {
        "encoder_embed_dim = 320": make(encoder_embed_dim=320),
        "decoder layers = 3": make(
            decoder_ffn_dims=((512,),) * 3,
            decoder_self_heads=(2,) * 3,
            decoder_cross_heads=(2,) * 3,
            decoder_cross_layers=(1,) * 3,
            decoder_top_k=(1,) * 3,
        ),
        "encoder layer 1 has 4 experts": make(encoder_ffn_dims=((512,), (512,) * 4)),
        "decoder layer 0 expert 1 width 2048": make(decoder_ffn_dims=((512, 2048),)),
    }
    for expected, arch in cases.items():
        reason = arch.fits_in(shape)
        assert reason is not None and expected in reason, (expected, reason)


def test_replace_revalidates() -> None:
    with pytest.raises(ArchError, match="encoder_top_k"):
        dataclasses.replace(make(), encoder_top_k=(1, 4))
