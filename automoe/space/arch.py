"""`ArchConfig`: the immutable description of one sub-network of the SuperNet.

Depth is not stored separately: it is the length of the per-layer tuples, so a config can
never disagree with itself about how many layers it has. Every MoE layer is described by the
FFN width of each of its experts (one entry = a dense FFN; width 0 = an identity "skip"
expert), which covers HAT's per-layer FFN width, AutoMoE's expert count and fractional
experts of different sizes in one layer.

Each MoE layer also names its routing granularity (Task-MoE): by token, by source sentence
or by task. A dense layer has no router, so its routing is always "token"; an architecture
whose layers all route by token writes no routing fields, which keeps the files and hashes
of token-routed architectures what they were before routing became a dimension.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from automoe.errors import AutomoeError


class ArchError(AutomoeError, ValueError):
    """An architecture that is malformed or does not fit a space or SuperNet."""


_PER_LAYER_ENCODER = ("encoder_heads", "encoder_top_k")
_PER_LAYER_DECODER = (
    "decoder_self_heads",
    "decoder_cross_heads",
    "decoder_cross_layers",
    "decoder_top_k",
)
ROUTING_MODES = ("token", "sentence", "task")
_ROUTING_FIELDS = ("encoder_routing", "decoder_routing")


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArchError(f"{name} must be a list of integers, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ArchError(f"{name} must hold integers, got {item!r}")
        out.append(int(item))
    return tuple(out)


@dataclass(frozen=True)
class ArchConfig:
    """One sub-network: widths, depths, heads and experts of every layer.

    `encoder_ffn_dims[i]` lists the FFN width of each expert of encoder layer i; its length is
    the layer's expert count. `decoder_cross_layers[i]` is how many of the last encoder layers
    decoder layer i attends to (HAT's arbitrary encoder-decoder attention, 1 = the last only).
    """

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_ffn_dims: tuple[tuple[int, ...], ...]
    encoder_heads: tuple[int, ...]
    encoder_top_k: tuple[int, ...]
    decoder_ffn_dims: tuple[tuple[int, ...], ...]
    decoder_self_heads: tuple[int, ...]
    decoder_cross_heads: tuple[int, ...]
    decoder_cross_layers: tuple[int, ...]
    decoder_top_k: tuple[int, ...]
    encoder_routing: tuple[str, ...] = field(default=())
    decoder_routing: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("encoder_embed_dim", "decoder_embed_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArchError(f"{name} must be a positive integer, got {value!r}")
        for side in ("encoder", "decoder"):
            name = f"{side}_ffn_dims"
            raw = getattr(self, name)
            if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
                raise ArchError(f"{name} must be a list of per-layer expert widths, got {raw!r}")
            layers = tuple(_int_tuple(f"{name}[{i}]", layer) for i, layer in enumerate(raw))
            object.__setattr__(self, name, layers)
            if not layers:
                raise ArchError(f"{name} is empty: a {side} needs at least one layer")
            for i, layer in enumerate(layers):
                if not layer:
                    raise ArchError(f"{name}[{i}] is empty: a layer needs at least one expert")
                if any(width < 0 for width in layer):
                    raise ArchError(f"{name}[{i}] has a negative width: {list(layer)}")
                if not any(layer):
                    raise ArchError(
                        f"{name}[{i}] = {list(layer)} has only identity (width 0) experts; "
                        "a layer needs at least one expert of width > 0"
                    )
        for side, names in (("encoder", _PER_LAYER_ENCODER), ("decoder", _PER_LAYER_DECODER)):
            depth = len(getattr(self, f"{side}_ffn_dims"))
            for name in names:
                values = _int_tuple(name, getattr(self, name))
                object.__setattr__(self, name, values)
                if len(values) != depth:
                    raise ArchError(
                        f"{name} has {len(values)} entries but the {side} has {depth} layers"
                    )
                if any(v <= 0 for v in values):
                    raise ArchError(f"{name} must be positive, got {list(values)}")
        for side in ("encoder", "decoder"):
            experts = getattr(self, f"{side}_experts")
            for i, (k, e) in enumerate(zip(getattr(self, f"{side}_top_k"), experts, strict=True)):
                if k > e:
                    raise ArchError(f"{side}_top_k[{i}] = {k} exceeds the layer's {e} experts")
        for side in ("encoder", "decoder"):
            self._set_routing(side)
        for i, n in enumerate(self.decoder_cross_layers):
            if n > self.encoder_layers:
                raise ArchError(
                    f"decoder_cross_layers[{i}] = {n} exceeds the {self.encoder_layers} "
                    "encoder layers"
                )

    def _set_routing(self, side: str) -> None:
        """Fill absent routing with "token" and canonicalise dense layers to "token"."""
        name = f"{side}_routing"
        raw = getattr(self, name)
        experts = getattr(self, f"{side}_experts")
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise ArchError(f"{name} must be a list of routing modes, got {raw!r}")
        modes = tuple(raw)
        if all(m == "token" for m in modes):  # the default adapts to the depth
            modes = ("token",) * len(experts)
        if len(modes) != len(experts):
            raise ArchError(
                f"{name} has {len(modes)} entries but the {side} has {len(experts)} layers"
            )
        for i, mode in enumerate(modes):
            if mode not in ROUTING_MODES:
                raise ArchError(
                    f"{name}[{i}] = {mode!r} is not a routing mode {list(ROUTING_MODES)}"
                )
        canonical = tuple("token" if e == 1 else m for m, e in zip(modes, experts, strict=True))
        object.__setattr__(self, name, canonical)

    @property
    def routing_modes(self) -> tuple[str, ...]:
        """The granularities the MoE layers route by, in first-use order (empty: all dense)."""
        layers = zip(
            self.encoder_routing + self.decoder_routing,
            self.encoder_experts + self.decoder_experts,
            strict=True,
        )
        return tuple(dict.fromkeys(mode for mode, experts in layers if experts > 1))

    @property
    def routes_by_token_only(self) -> bool:
        return all(m == "token" for m in self.encoder_routing + self.decoder_routing)

    @property
    def encoder_layers(self) -> int:
        return len(self.encoder_ffn_dims)

    @property
    def decoder_layers(self) -> int:
        return len(self.decoder_ffn_dims)

    @property
    def encoder_experts(self) -> tuple[int, ...]:
        return tuple(len(layer) for layer in self.encoder_ffn_dims)

    @property
    def decoder_experts(self) -> tuple[int, ...]:
        return tuple(len(layer) for layer in self.decoder_ffn_dims)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and ints, in field order: what JSON and YAML files hold."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _ROUTING_FIELDS and self.routes_by_token_only:
                continue
            value = getattr(self, f.name)
            if f.name.endswith("_ffn_dims"):
                out[f.name] = [list(layer) for layer in value]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        if not isinstance(data, Mapping):
            raise ArchError(
                f"an architecture must be a mapping of fields, got {type(data).__name__}"
            )
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ArchError(f"unknown architecture field(s) {unknown}; expected {names}")
        missing = [n for n in names if n not in data and n not in _ROUTING_FIELDS]
        if missing:
            raise ArchError(f"architecture is missing field(s) {missing}")
        return cls(**{n: data[n] for n in names if n in data})

    def to_json(self) -> str:
        """Canonical one-line JSON: equal architectures give equal strings."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"architecture is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def key(self) -> str:
        """Short stable hash used to cache scores and name files."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write as YAML (`.yaml`/`.yml`) or JSON (anything else)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ArchError(f"cannot read architecture file {path}: {err.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ArchError(f"{path} is not valid YAML/JSON: {err}") from None
        if isinstance(data, Mapping) and "arch" in data and isinstance(data["arch"], Mapping):
            data = data["arch"]
        try:
            return cls.from_dict(data)
        except ArchError as err:
            raise ArchError(f"{path}: {err}") from None

    def fits_in(self, shape: ArchConfig) -> str | None:
        """Why this arch cannot be sliced out of a model built with `shape`, or None if it can."""
        checks = [
            ("encoder_embed_dim", self.encoder_embed_dim, shape.encoder_embed_dim),
            ("decoder_embed_dim", self.decoder_embed_dim, shape.decoder_embed_dim),
            ("encoder layers", self.encoder_layers, shape.encoder_layers),
            ("decoder layers", self.decoder_layers, shape.decoder_layers),
        ]
        for name, have, limit in checks:
            if have > limit:
                return f"{name} = {have} exceeds the model's {limit}"
        for side in ("encoder", "decoder"):
            ours = getattr(self, f"{side}_ffn_dims")
            theirs = getattr(shape, f"{side}_ffn_dims")
            for i, (mine, cap) in enumerate(zip(ours, theirs, strict=False)):
                if len(mine) > len(cap):
                    return (
                        f"{side} layer {i} has {len(mine)} experts but the model holds {len(cap)}"
                    )
                for j, (w, limit) in enumerate(zip(mine, cap, strict=False)):
                    if w > limit:
                        return f"{side} layer {i} expert {j} width {w} exceeds the model's {limit}"
        return None
