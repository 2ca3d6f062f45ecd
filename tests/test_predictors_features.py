"""ArchFeatures: the vectorised encoding agrees with a plain per-layer reading of the docs."""

from __future__ import annotations

import random

import numpy as np
import pytest

from automoe.errors import AutomoeError
from automoe.predictors.features import (
    DECODER_LAYER_COLUMNS,
    ENCODER_LAYER_COLUMNS,
    SUMMARY_COLUMNS,
    ArchFeatures,
    feature_columns,
)
from automoe.space import ArchConfig, SearchSpace

# Top-2 routing and an identity (width 0) expert: the cases where mean, active and worst differ.
MIXED = ArchConfig(
    encoder_embed_dim=256,
    decoder_embed_dim=192,
    encoder_ffn_dims=((1024, 0, 512), (768,)),
    encoder_heads=(4, 2),
    encoder_top_k=(2, 1),
    decoder_ffn_dims=((512, 1024, 768, 256),),
    decoder_self_heads=(2,),
    decoder_cross_heads=(4,),
    decoder_cross_layers=(2,),
    decoder_top_k=(3,),
)

DEEP = ArchConfig(
    encoder_embed_dim=64,
    decoder_embed_dim=64,
    encoder_ffn_dims=((128,), (128,), (128,)),
    encoder_heads=(2, 2, 2),
    encoder_top_k=(1, 1, 1),
    decoder_ffn_dims=((128,),),
    decoder_self_heads=(2,),
    decoder_cross_heads=(2,),
    decoder_cross_layers=(1,),
    decoder_top_k=(1,),
)


def reference(arch: ArchConfig, max_enc: int, max_dec: int) -> dict[str, float]:
    """Each column computed straight from its definition in the features docstring."""
    out: dict[str, float] = {}
    sides = (
        ("enc", "encoder", max_enc, {"heads": arch.encoder_heads}),
        (
            "dec",
            "decoder",
            max_dec,
            {
                "self_heads": arch.decoder_self_heads,
                "cross_heads": arch.decoder_cross_heads,
                "cross_layers": arch.decoder_cross_layers,
            },
        ),
    )
    for prefix, side, max_depth, genes in sides:
        layers = getattr(arch, f"{side}_ffn_dims")
        top_k = getattr(arch, f"{side}_top_k")
        embed = getattr(arch, f"{side}_embed_dim")
        rows = []
        for i, widths in enumerate(layers):
            mean = sum(widths) / len(widths)
            row = {name: values[i] for name, values in genes.items()}
            row.update(
                experts=len(widths),
                top_k=top_k[i],
                mean_width=mean,
                max_width=max(widths),
                active_width=mean * top_k[i],
                worst_width=sum(sorted(widths, reverse=True)[: top_k[i]]),
                total_width=sum(widths),
            )
            rows.append(row)
        columns = ENCODER_LAYER_COLUMNS if prefix == "enc" else DECODER_LAYER_COLUMNS
        for i in range(max_depth):
            for column in columns:
                out[f"{prefix}{i}_{column}"] = rows[i][column] if i < len(rows) else 0.0
        depth = len(rows)
        out[f"{prefix}_embed"] = embed
        out[f"{prefix}_layers"] = depth
        out[f"{prefix}_ffn_mean"] = sum(r["mean_width"] for r in rows) / depth
        for name in genes:
            out[f"{prefix}_{name}_mean"] = sum(r[name] for r in rows) / depth
        out[f"{prefix}_experts_mean"] = sum(r["experts"] for r in rows) / depth
        for name in ("total_width", "active_width", "worst_width"):
            out[f"{prefix}_{name}"] = sum(r[name] for r in rows)
        out[f"{prefix}_ffn_macs"] = 2 * embed * out[f"{prefix}_active_width"]
    return out


def test_matches_the_documented_definitions_on_mixed_experts() -> None:
    features = ArchFeatures(3, 2)
    row = dict(zip(features.columns, features.transform([MIXED])[0], strict=True))
    assert row == pytest.approx(reference(MIXED, 3, 2))
    assert row["enc0_active_width"] == pytest.approx(1024)  # mean 512 x top-2
    assert row["enc0_worst_width"] == 1536  # the two widest: 1024 + 512
    assert row["dec0_worst_width"] == 1024 + 768 + 512
    assert row["enc2_experts"] == row["enc2_heads"] == 0  # absent layer
    assert row["dec_ffn_macs"] == 2 * 192 * 640 * 3


@pytest.mark.parametrize("preset", ["multi30k", "wmt"])
def test_matches_the_definitions_on_random_archs(preset: str) -> None:
    space = SearchSpace.load(preset)
    rng = random.Random(1)
    archs = [space.sample(rng) for _ in range(40)]
    features = ArchFeatures.from_space(space)
    X = features.transform(archs)
    assert X.shape == (40, len(features.columns))
    assert X.dtype == np.float64
    for arch, row in zip(archs, X, strict=True):
        expected = reference(arch, features.max_encoder_layers, features.max_decoder_layers)
        assert row == pytest.approx([expected[c] for c in features.columns])


def test_columns_are_stable() -> None:
    """Saved predictors and latency CSVs rely on these names: change FEATURES_VERSION too."""
    columns = ArchFeatures.from_space(SearchSpace.load("multi30k")).columns
    assert columns[:10] == [
        "enc_embed",
        "enc_layers",
        "enc_ffn_mean",
        "enc_heads_mean",
        "dec_embed",
        "dec_layers",
        "dec_ffn_mean",
        "dec_self_heads_mean",
        "dec_cross_heads_mean",
        "dec_cross_layers_mean",
    ]
    assert columns[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert len(columns) == len(SUMMARY_COLUMNS) + 4 * 8 + 4 * 10 == 92
    assert columns[20:23] == ["enc0_heads", "enc0_experts", "enc0_top_k"]
    assert columns[-1] == "dec3_total_width"
    assert len(set(columns)) == len(columns)
    features = ArchFeatures(4, 4)
    assert features.schema == "arch-v1-54b00f526a3c77e2"
    assert ArchFeatures(4, 3).schema != features.schema


def test_from_columns_recognises_only_exact_arch_columns() -> None:
    assert ArchFeatures.from_columns(feature_columns(6, 2)) == ArchFeatures(6, 2)
    assert ArchFeatures.from_columns(feature_columns(6, 2)[:-1]) is None
    assert ArchFeatures.from_columns(["params", "flops"]) is None


def test_empty_input_gives_an_empty_matrix() -> None:
    assert ArchFeatures(2, 2).transform([]).shape == (0, len(feature_columns(2, 2)))


def test_errors_are_clear() -> None:
    with pytest.raises(AutomoeError, match="3 encoder layers, but these features have slots for 2"):
        ArchFeatures(2, 2).transform([DEEP])
    with pytest.raises(AutomoeError, match="expects a list of ArchConfig, got one"):
        ArchFeatures(3, 2).transform(MIXED)  # type: ignore[arg-type]
    with pytest.raises(AutomoeError, match="item 1 is a dict"):
        ArchFeatures(3, 2).transform([MIXED, {}])  # type: ignore[list-item]
    with pytest.raises(AutomoeError, match="max_decoder_layers must be a positive integer"):
        ArchFeatures(3, 0)
