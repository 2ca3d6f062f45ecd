"""Architectures as fixed-length integer vectors, for predictors and vector-based optimisers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral

from automoe.space.arch import ArchConfig, ArchError
from automoe.space.definition import SpaceDefinition, SpaceError
from automoe.space.genes import (
    LAYER_COLUMNS,
    LAYER_KEYS,
    PREFIX,
    SIDES,
    Layer,
    build_arch,
    layers_of,
)


class Encoding(SpaceDefinition):
    """A space whose architectures encode to, and decode from, integer vectors."""

    def encoding_names(self) -> list[str]:
        """Column names of `encode`'s vectors, e.g. `enc_embed`, `enc3_heads`,
        `enc3_expert2_ffn`, `dec1_cross_layers`; layers and experts count from 0."""
        names = []
        for side in SIDES:
            prefix = PREFIX[side]
            names += [f"{prefix}_embed", f"{prefix}_layers"]
            for i in range(self._side(side)["layers"][-1]):
                names += [f"{prefix}{i}_{column}" for column in self._columns(side)]
                names += [f"{prefix}{i}_expert{j}_ffn" for j in range(self.max_experts)]
        return names

    def _columns(self, side: str) -> tuple[str, ...]:
        """Per-layer encoding columns; `routing` only where the space offers several modes."""
        extra = ("routing",) if len(self.routing[side]) > 1 else ()
        return LAYER_COLUMNS[side] + extra

    def encode(self, arch: ArchConfig) -> list[int]:
        """A fixed-length integer vector for predictors; slots of absent layers/experts are 0.

        The expert count has its own column because width 0 is also an identity expert; a
        routing column holds 1 + the mode's index in the space's choices (0 for dense layers).
        """
        self.validate(arch)
        vector: list[int] = []
        for side in SIDES:
            layers = layers_of(arch, side)
            vector += [getattr(arch, f"{side}_embed_dim"), len(layers)]
            for i in range(self._side(side)["layers"][-1]):
                if i >= len(layers):
                    vector += [0] * (len(self._columns(side)) + self.max_experts)
                    continue
                experts = len(layers[i].widths)
                genes = {**layers[i].genes, "experts": experts}
                if experts > 1:
                    genes["routing"] = self.routing[side].index(layers[i].routing) + 1
                else:
                    genes["routing"] = 0
                vector += [genes[column] for column in self._columns(side)]
                vector += layers[i].widths + [0] * (self.max_experts - len(layers[i].widths))
        return vector

    def decode(self, vector: Sequence[int]) -> ArchConfig:
        """The architecture `encode` turned into `vector`; SpaceError if it encodes none."""
        names = self.encoding_names()
        values = list(vector)
        if len(values) != len(names):
            raise SpaceError(
                f"an encoded architecture of space {self.name!r} has {len(names)} values, "
                f"got {len(values)}"
            )
        for name, value in zip(names, values, strict=True):
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise SpaceError(f"{name} = {value!r} is not an integer")
        cells = {name: int(value) for name, value in zip(names, values, strict=True)}
        embeds: dict[str, int] = {}
        stacks: dict[str, list[Layer]] = {}
        for side in SIDES:
            prefix, choices = PREFIX[side], self._side(side)
            embeds[side] = cells[f"{prefix}_embed"]
            depth = cells[f"{prefix}_layers"]
            self._check(f"{prefix}_layers", depth, choices["layers"])
            stacks[side] = []
            for i in range(choices["layers"][-1]):
                row = [f"{prefix}{i}_{column}" for column in self._columns(side)]
                slots = [f"{prefix}{i}_expert{j}_ffn" for j in range(self.max_experts)]
                if i >= depth:
                    self._zeros(cells, row + slots, f"the {side} has {depth} layers")
                    continue
                experts = cells[f"{prefix}{i}_experts"]
                self._check(f"{prefix}{i}_experts", experts, choices["experts"])
                self._zeros(cells, slots[experts:], f"the layer has {experts} experts")
                genes = {key: cells[f"{prefix}{i}_{key}"] for key in LAYER_KEYS[side]}
                routing = self._decode_routing(cells, f"{prefix}{i}_routing", side, experts)
                stacks[side].append(
                    Layer(genes, [cells[slot] for slot in slots[:experts]], routing)
                )
        try:
            arch = build_arch(embeds, stacks)
        except ArchError as err:
            raise SpaceError(f"vector does not encode an architecture: {err}") from None
        self.validate(arch)
        return arch

    def _decode_routing(self, cells: Mapping[str, int], name: str, side: str, experts: int) -> str:
        modes = self.routing[side]
        if name not in cells:
            return modes[0]
        if experts == 1:
            self._zeros(cells, [name], "a dense layer has no router")
            return "token"
        self._check(name, cells[name], range(1, len(modes) + 1))
        return modes[cells[name] - 1]

    @staticmethod
    def _zeros(cells: Mapping[str, int], names: Sequence[str], reason: str) -> None:
        for name in names:
            if cells[name] != 0:
                raise SpaceError(f"{name} = {cells[name]} must be 0: {reason}")
