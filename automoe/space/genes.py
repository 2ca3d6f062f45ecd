"""How an `ArchConfig` decomposes into per-layer genes and back.

The space's operators (sampling, mutation, crossover, encoding) all edit architectures layer
by layer; they share this one decomposition so that a gene added to `ArchConfig` is added here
once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automoe.space.arch import ArchConfig

SIDES = ("encoder", "decoder")
PREFIX = {"encoder": "enc", "decoder": "dec"}
HEAD_KEYS = {"encoder": ("heads",), "decoder": ("self_heads", "cross_heads")}
# Per-layer scalar genes; each is the ArchConfig tuple field f"{side}_{key}".
LAYER_KEYS = {
    "encoder": ("heads", "top_k"),
    "decoder": ("self_heads", "cross_heads", "cross_layers", "top_k"),
}
# Per-layer columns of the numeric encoding, in order, before the expert widths.
LAYER_COLUMNS = {
    "encoder": ("heads", "experts", "top_k"),
    "decoder": ("self_heads", "cross_heads", "cross_layers", "experts", "top_k"),
}


@dataclass
class Layer:
    """Mutable genes of one layer while an operator builds a new architecture."""

    genes: dict[str, int]
    widths: list[int]
    routing: str = "token"


def layers_of(arch: ArchConfig, side: str) -> list[Layer]:
    columns = {key: getattr(arch, f"{side}_{key}") for key in LAYER_KEYS[side]}
    routing = getattr(arch, f"{side}_routing")
    return [
        Layer({key: values[i] for key, values in columns.items()}, list(widths), routing[i])
        for i, widths in enumerate(getattr(arch, f"{side}_ffn_dims"))
    ]


def build_arch(embeds: Mapping[str, int], stacks: Mapping[str, Sequence[Layer]]) -> ArchConfig:
    fields: dict[str, Any] = {}
    for side in SIDES:
        fields[f"{side}_embed_dim"] = embeds[side]
        fields[f"{side}_ffn_dims"] = tuple(tuple(layer.widths) for layer in stacks[side])
        for key in LAYER_KEYS[side]:
            fields[f"{side}_{key}"] = tuple(layer.genes[key] for layer in stacks[side])
        fields[f"{side}_routing"] = tuple(layer.routing for layer in stacks[side])
    return ArchConfig(**fields)
