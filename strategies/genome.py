"""Architectures as named integer genes, for optimizers that search over plain parameters.

`decode` walks the genes in dependency order and asks a `pick(name, n)` callback for an index
in [0, n) only for genes that exist: a layer's genes only below the chosen depth, an expert's
width only below the layer's expert count. Optuna's define-by-run API maps onto this directly;
Nevergrad's fixed-size parametrization holds every gene of `genes(space)` and simply ignores
the ones a walk never asks for. Indices follow the space's sorted choice lists, so the genes
are ordered (a larger index is a wider, deeper or busier choice).

Two genes depend on others: `top_k` must not exceed the layer's expert count and a decoder
layer's `cross_layers` must not exceed the encoder depth. Their genes range over every choice
and are clamped to the largest valid one, so each gene keeps one fixed range; several gene
vectors may then give the same architecture. A layer whose experts all came out as identities
gets its first expert at the narrowest width. A layer's routing mode is a gene only when it
has several experts and the space offers several modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from automoe.space import ArchConfig, SearchSpace

Pick = Callable[[str, int], int]

_SIDES = (("encoder", "enc"), ("decoder", "dec"))
_HEADS = {"encoder": ("heads",), "decoder": ("self_heads", "cross_heads")}


def _choose(pick: Pick, name: str, options: Sequence[Any]) -> Any:
    """A gene's value; genes with a single option are not asked."""
    return options[pick(name, len(options))] if len(options) > 1 else options[0]


def _clamp(value: int, options: Sequence[int], bound: int) -> int:
    return value if value <= bound else max(o for o in options if o <= bound)


def _widths(space: SearchSpace, side: str, pick: Pick, layer: str, experts: int) -> list[int]:
    ffn = (space.encoder if side == "encoder" else space.decoder)["ffn_dim"]
    if space.fractional_experts:
        options = (0, *ffn) if space.identity_experts else ffn
        widths = [_choose(pick, f"{layer}_e{j}_ffn", options) for j in range(experts)]
    else:
        width = _choose(pick, f"{layer}_ffn", ffn)
        if space.identity_experts:
            widths = [width * _choose(pick, f"{layer}_e{j}_on", (0, 1)) for j in range(experts)]
        else:
            widths = [width] * experts
    if not any(widths):
        widths[0] = ffn[0]
    return widths


def decode(space: SearchSpace, pick: Pick) -> ArchConfig:
    """The architecture the genes chosen by `pick` describe; always inside `space`."""
    fields: dict[str, object] = {}
    encoder_layers = 0
    for side, prefix in _SIDES:
        choices = space.encoder if side == "encoder" else space.decoder
        fields[f"{side}_embed_dim"] = _choose(pick, f"{prefix}_embed", choices["embed_dim"])
        depth = _choose(pick, f"{prefix}_layers", choices["layers"])
        if side == "encoder":
            encoder_layers = depth
        columns: dict[str, list[int]] = {
            key: [] for key in (*_HEADS[side], "cross_layers", "top_k")
        }
        ffn_dims = []
        routing = []
        for i in range(depth):
            layer = f"{prefix}{i}"
            for key in _HEADS[side]:
                columns[key].append(_choose(pick, f"{layer}_{key}", choices[key]))
            if side == "decoder":
                cross = _choose(pick, f"{layer}_cross_layers", choices["cross_layers"])
                columns["cross_layers"].append(
                    _clamp(cross, choices["cross_layers"], encoder_layers)
                )
            experts = _choose(pick, f"{layer}_experts", choices["experts"])
            top_k = _choose(pick, f"{layer}_top_k", choices["top_k"])
            columns["top_k"].append(_clamp(top_k, choices["top_k"], experts))
            ffn_dims.append(tuple(_widths(space, side, pick, layer, experts)))
            modes = space.routing[side]
            routing.append(_choose(pick, f"{layer}_routing", modes) if experts > 1 else "token")
        fields[f"{side}_ffn_dims"] = tuple(ffn_dims)
        fields[f"{side}_routing"] = tuple(routing)
        if side == "encoder":
            del columns["cross_layers"]
        for key, values in columns.items():
            fields[f"{side}_{key}"] = tuple(values)
    arch = ArchConfig(**fields)  # type: ignore[arg-type]
    space.validate(arch)
    return arch


def genes(space: SearchSpace) -> dict[str, int]:
    """Every gene any architecture of `space` may ask for, with its number of options.

    The deepest, most-expert walk visits them all: nothing else gates a gene.
    """
    found: dict[str, int] = {}

    def widest(name: str, n: int) -> int:
        found[name] = n
        return n - 1

    decode(space, widest)
    return found
