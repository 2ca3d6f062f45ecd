"""Numeric features of an `ArchConfig` for cost (latency, FLOPs) prediction.

A cost model sees a fixed-length row per architecture: HAT's ten averages (so its predictor
can be reproduced), per-side MoE totals, and one slot of per-layer values for every layer up
to the space's maximum depth (slots of absent layers are 0). Column names are stable: they
are written to latency CSVs and to saved predictors, and `FEATURES_VERSION` changes whenever
a column's meaning does.

Widths are FFN widths of experts (0 = identity expert). Per layer, with E experts of widths
w_1..w_E and top-k routing:

| column | meaning |
| --- | --- |
| `enc_embed`, `dec_embed` | embedding width (HAT) |
| `enc_layers`, `dec_layers` | depth (HAT) |
| `enc_ffn_mean`, `dec_ffn_mean` | mean over layers of the layer's mean expert width (HAT) |
| `enc_heads_mean` | mean encoder self-attention heads (HAT) |
| `dec_self_heads_mean`, `dec_cross_heads_mean` | mean decoder heads (HAT) |
| `dec_cross_layers_mean` | mean number of encoder layers a decoder layer attends to (HAT) |
| `{side}_experts_mean` | mean expert count per layer (AutoMoE) |
| `{side}_total_width` | sum of all expert widths: parameter/memory size of the FFNs |
| `{side}_active_width` | sum over layers of `{p}{i}_active_width`: expected compute |
| `{side}_worst_width` | sum over layers of `{p}{i}_worst_width`: worst-case compute |
| `{side}_ffn_macs` | 2 * embed * `{side}_active_width`: expected FFN MACs per token |
| `{p}{i}_heads` (enc), `dec{i}_self_heads`, `dec{i}_cross_heads` | heads of layer i |
| `dec{i}_cross_layers` | encoder layers decoder layer i attends to |
| `{p}{i}_experts`, `{p}{i}_top_k` | expert count and experts used per token |
| `{p}{i}_mean_width`, `{p}{i}_max_width` | mean and largest expert width |
| `{p}{i}_active_width` | mean width * top_k: the expected active width under uniform routing |
| `{p}{i}_worst_width` | sum of the top_k largest widths: the worst-case active width |
| `{p}{i}_total_width` | sum of the layer's expert widths |

`{side}` is `enc` or `dec` and `{p}{i}` is `enc0`, `enc1`, ... or `dec0`, ...; layers count
from 0. Column order: `SUMMARY_COLUMNS`, then encoder slots layer by layer (each in
`ENCODER_LAYER_COLUMNS` order), then decoder slots (`DECODER_LAYER_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

import numpy as np

from automoe.predictors.errors import PredictorError
from automoe.space import ArchConfig, SearchSpace

FEATURES_VERSION = 1

SUMMARY_COLUMNS: list[str] = [
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
    "enc_experts_mean",
    "enc_total_width",
    "enc_active_width",
    "enc_worst_width",
    "enc_ffn_macs",
    "dec_experts_mean",
    "dec_total_width",
    "dec_active_width",
    "dec_worst_width",
    "dec_ffn_macs",
]
_WIDTH_COLUMNS = ["experts", "top_k", "mean_width", "max_width", "active_width", "worst_width"]
ENCODER_LAYER_COLUMNS: list[str] = ["heads", *_WIDTH_COLUMNS, "total_width"]
DECODER_LAYER_COLUMNS: list[str] = [
    "self_heads",
    "cross_heads",
    "cross_layers",
    *_WIDTH_COLUMNS,
    "total_width",
]
_SIDES = (("encoder", "enc", ENCODER_LAYER_COLUMNS), ("decoder", "dec", DECODER_LAYER_COLUMNS))
# ArchConfig per-layer tuple field behind each head/span slot column.
_GENE_FIELDS = {
    "heads": "encoder_heads",
    "self_heads": "decoder_self_heads",
    "cross_heads": "decoder_cross_heads",
    "cross_layers": "decoder_cross_layers",
}


def feature_columns(max_encoder_layers: int, max_decoder_layers: int) -> list[str]:
    """All column names, in order, for slots up to the given depths."""
    columns = list(SUMMARY_COLUMNS)
    for prefix, depth, layer_columns in (
        ("enc", max_encoder_layers, ENCODER_LAYER_COLUMNS),
        ("dec", max_decoder_layers, DECODER_LAYER_COLUMNS),
    ):
        columns += [f"{prefix}{i}_{c}" for i in range(depth) for c in layer_columns]
    return columns


def columns_hash(columns: Sequence[str]) -> str:
    """Short fingerprint of a column list, to tell feature schemas apart at a glance."""
    return hashlib.sha256("\n".join(columns).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ArchFeatures:
    """Turns architectures into feature rows with slots for up to the given depths."""

    max_encoder_layers: int
    max_decoder_layers: int

    def __post_init__(self) -> None:
        for name in ("max_encoder_layers", "max_decoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PredictorError(
                    f"ArchFeatures: {name} must be a positive integer, got {value!r}"
                )

    @classmethod
    def from_space(cls, space: SearchSpace) -> ArchFeatures:
        """Slots for the deepest encoder and decoder of `space`."""
        return cls(space.encoder["layers"][-1], space.decoder["layers"][-1])

    @classmethod
    def from_columns(cls, columns: Sequence[str]) -> ArchFeatures | None:
        """The features whose columns are exactly `columns`, or None (a foreign table)."""
        depths = {}
        for prefix in ("enc", "dec"):
            found = [int(m[1]) for c in columns if (m := re.fullmatch(rf"{prefix}(\d+)_top_k", c))]
            depths[prefix] = max(found, default=-1) + 1
        if min(depths.values()) < 1:
            return None
        features = cls(depths["enc"], depths["dec"])
        return features if features.columns == list(columns) else None

    @property
    def columns(self) -> list[str]:
        return feature_columns(self.max_encoder_layers, self.max_decoder_layers)

    @property
    def schema(self) -> str:
        """Version and column fingerprint, e.g. `arch-v1-3f2a...`: equal means same features."""
        return f"arch-v{FEATURES_VERSION}-{columns_hash(self.columns)}"

    def transform(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """A float matrix, one row per architecture, columns as `self.columns`.

        Vectorised over all layers of all architectures at once, so featurising thousands of
        candidates inside a search loop costs milliseconds.
        """
        if isinstance(archs, ArchConfig):
            raise PredictorError("ArchFeatures.transform expects a list of ArchConfig, got one")
        archs = list(archs)
        for i, arch in enumerate(archs):
            if not isinstance(arch, ArchConfig):
                raise PredictorError(
                    f"ArchFeatures.transform: item {i} is a {type(arch).__name__}, "
                    "not an ArchConfig"
                )
        summary = np.zeros((len(archs), len(SUMMARY_COLUMNS)))
        blocks = [summary]
        for side, prefix, layer_columns in _SIDES:
            depth = getattr(self, f"max_{side}_layers")
            values, slots = _side_features(archs, side, prefix, depth, layer_columns)
            for name, column in values.items():
                summary[:, SUMMARY_COLUMNS.index(name)] = column
            blocks.append(slots)
        return np.hstack(blocks)


def _side_features(
    archs: list[ArchConfig], side: str, prefix: str, max_depth: int, layer_columns: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Summary columns and the (n_archs, max_depth * len(layer_columns)) slot block of a side."""
    n = len(archs)
    stacks = list(map(attrgetter(f"{side}_ffn_dims"), archs))
    depth = np.fromiter(map(len, stacks), dtype=np.intp, count=n)
    if n and depth.max() > max_depth:
        i = int(np.argmax(depth > max_depth))
        raise PredictorError(
            f"architecture {i} has {depth[i]} {side} layers, but these features have slots for "
            f"{max_depth}; build ArchFeatures from the architectures' search space"
        )
    layers = list(chain.from_iterable(stacks))
    n_layers = len(layers)
    experts = np.fromiter(map(len, layers), dtype=np.intp, count=n_layers)
    widths = np.fromiter(chain.from_iterable(layers), dtype=float, count=int(experts.sum()))
    starts = np.cumsum(experts) - experts

    def per_layer(field: str) -> np.ndarray:
        genes = chain.from_iterable(map(attrgetter(field), archs))
        return np.fromiter(genes, dtype=float, count=n_layers)

    top_k = per_layer(f"{side}_top_k")
    per: dict[str, np.ndarray] = {}
    for column in layer_columns:
        if column in _GENE_FIELDS:
            per[column] = per_layer(_GENE_FIELDS[column])
    if n_layers:
        total = np.add.reduceat(widths, starts)
        per["max_width"] = np.maximum.reduceat(widths, starts)
    else:
        total = per["max_width"] = np.zeros(0)
    per["experts"] = experts.astype(float)
    per["top_k"] = top_k
    per["total_width"] = total
    per["mean_width"] = total / np.maximum(experts, 1)
    per["active_width"] = per["mean_width"] * top_k
    per["worst_width"] = _top_k_sums(widths, experts, starts, top_k.astype(np.intp))

    owner = np.repeat(np.arange(n), depth)
    slot = np.arange(n_layers) - np.repeat(np.cumsum(depth) - depth, depth)
    block = np.zeros((n, max_depth, len(layer_columns)))
    block[owner, slot] = np.column_stack([per[c] for c in layer_columns])

    def layer_mean(column: str) -> np.ndarray:
        return np.bincount(owner, weights=per[column], minlength=n) / np.maximum(depth, 1)

    def layer_sum(column: str) -> np.ndarray:
        return np.bincount(owner, weights=per[column], minlength=n)

    embed = np.fromiter(map(attrgetter(f"{side}_embed_dim"), archs), dtype=float, count=n)
    values = {
        f"{prefix}_embed": embed,
        f"{prefix}_layers": depth.astype(float),
        f"{prefix}_ffn_mean": layer_mean("mean_width"),
        f"{prefix}_experts_mean": layer_mean("experts"),
        f"{prefix}_total_width": layer_sum("total_width"),
        f"{prefix}_active_width": layer_sum("active_width"),
        f"{prefix}_worst_width": layer_sum("worst_width"),
        f"{prefix}_ffn_macs": 2 * embed * layer_sum("active_width"),
    }
    for column in _GENE_FIELDS:
        if column in per:
            values[f"{prefix}_{column}_mean"] = layer_mean(column)
    return values, block.reshape(n, max_depth * len(layer_columns))


def _top_k_sums(
    widths: np.ndarray, experts: np.ndarray, starts: np.ndarray, top_k: np.ndarray
) -> np.ndarray:
    """Per layer, the sum of its `top_k` largest expert widths."""
    n_layers = len(experts)
    if not n_layers:
        return np.zeros(0)
    padded = np.zeros((n_layers, int(experts.max())))
    rows = np.repeat(np.arange(n_layers), experts)
    padded[rows, np.arange(len(widths)) - starts[rows]] = widths
    largest_first = -np.sort(-padded, axis=1)  # widths are >= 0, so padding sorts last
    return np.cumsum(largest_first, axis=1)[np.arange(n_layers), top_k - 1]
