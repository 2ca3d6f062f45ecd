"""`SpaceDefinition`: a search space's choices read from YAML, checked, and what they contain.

Membership (`validate`, `contains`), the exact count of architectures (`size`) and the extreme
architectures (`largest`, `smallest`, `supernet_shape`) depend only on the choices; the
operators that build new architectures live in `sampling`, `evolution` and `encoding`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

import yaml

from automoe.errors import AutomoeError
from automoe.space.arch import ROUTING_MODES, ArchConfig
from automoe.space.genes import HEAD_KEYS, LAYER_KEYS, SIDES, Layer, build_arch, layers_of


class SpaceError(AutomoeError, ValueError):
    """A search space file that cannot be used, or an architecture outside the space."""


_TOP_KEYS = (
    "name",
    "qkv_dim",
    "max_experts",
    "fractional_experts",
    "identity_experts",
    "encoder",
    "decoder",
)
_SIDE_KEYS = {
    "encoder": ("embed_dim", "layers", "ffn_dim", "heads", "experts", "top_k"),
    "decoder": (
        "embed_dim",
        "layers",
        "ffn_dim",
        "self_heads",
        "cross_heads",
        "cross_layers",
        "experts",
        "top_k",
    ),
}
# Optional per-side key: the routing granularities MoE layers may use (default: token only).
_ROUTING_KEY = "routing"


def _check_keys(
    source: str, where: str, data: Any, allowed: Sequence[str], optional: Sequence[str] = ()
) -> None:
    if not isinstance(data, Mapping):
        label = where.rstrip(".") or "the search space"
        raise SpaceError(
            f"{source}: {label} = {data!r} must be a mapping with keys {list(allowed)}"
        )
    unknown = [key for key in data if key not in allowed and key not in optional]
    if unknown:
        key = unknown[0]
        raise SpaceError(
            f"{source}: unknown key {where}{key} (= {data[key]!r}); allowed keys: "
            f"{list(allowed) + list(optional)}"
        )
    missing = [key for key in allowed if key not in data]
    if missing:
        raise SpaceError(
            f"{source}: missing key(s) {[where + key for key in missing]}; "
            f"required keys: {list(allowed)}"
        )


def _positive_int(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpaceError(f"{source}: {key} = {value!r} must be a positive integer")
    return value


def _choices(source: str, key: str, value: Any) -> tuple[int, ...]:
    """A non-empty list of distinct positive integers, sorted so that max/min are the ends."""
    if not isinstance(value, list):
        raise SpaceError(f"{source}: {key} = {value!r} must be a list of positive integers")
    if not value:
        raise SpaceError(f"{source}: {key} = [] is empty; give at least one choice")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise SpaceError(
                f"{source}: {key} = {value!r} must hold positive integers; {item!r} is not"
            )
    if len(set(value)) != len(value):
        raise SpaceError(f"{source}: {key} = {value!r} repeats a choice")
    return tuple(sorted(value))


def _routing_choices(source: str, key: str, value: Any) -> tuple[str, ...]:
    """Distinct routing modes in the order given (the first is the default)."""
    if not isinstance(value, list) or not value:
        raise SpaceError(
            f"{source}: {key} = {value!r} must be a non-empty list of routing modes "
            f"from {list(ROUTING_MODES)}"
        )
    for item in value:
        if item not in ROUTING_MODES:
            raise SpaceError(
                f"{source}: {key} = {value!r}: {item!r} is not a routing mode {list(ROUTING_MODES)}"
            )
    if len(set(value)) != len(value):
        raise SpaceError(f"{source}: {key} = {value!r} repeats a choice")
    return tuple(value)


def _preset_dir() -> Any:
    return resources.files("automoe") / "spaces"


class SpaceDefinition:
    """The choices of one architecture search and the architectures they contain.

    Build one with `load` (preset name or YAML file) or `from_dict` and treat it as read-only;
    spaces compare equal by value. Choice lists are kept sorted, so `encoder["layers"][-1]` is
    the deepest encoder.
    """

    def __init__(self, data: Mapping[str, Any], source: str = "<dict>") -> None:
        """Check `data` (the YAML schema) and refuse it with one message naming `source`."""
        _check_keys(source, "", data, _TOP_KEYS)
        self.source = source
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise SpaceError(f"{source}: name = {name!r} must be a non-empty string")
        self.name: str = name
        self.qkv_dim = _positive_int(source, "qkv_dim", data["qkv_dim"])
        self.max_experts = _positive_int(source, "max_experts", data["max_experts"])
        for key in ("fractional_experts", "identity_experts"):
            if not isinstance(data[key], bool):
                raise SpaceError(f"{source}: {key} = {data[key]!r} must be true or false")
        self.fractional_experts: bool = data["fractional_experts"]
        self.identity_experts: bool = data["identity_experts"]
        sides = {}
        routing = {}
        for side in SIDES:
            _check_keys(source, f"{side}.", data[side], _SIDE_KEYS[side], (_ROUTING_KEY,))
            sides[side] = {
                key: _choices(source, f"{side}.{key}", data[side][key]) for key in _SIDE_KEYS[side]
            }
            self._check_side(side, sides[side])
            raw = data[side].get(_ROUTING_KEY, ["token"])
            routing[side] = _routing_choices(source, f"{side}.{_ROUTING_KEY}", raw)
        self.routing: Mapping[str, tuple[str, ...]] = MappingProxyType(routing)
        self.encoder: Mapping[str, tuple[int, ...]] = MappingProxyType(sides["encoder"])
        self.decoder: Mapping[str, tuple[int, ...]] = MappingProxyType(sides["decoder"])
        cross = self.decoder["cross_layers"]
        depths = self.encoder["layers"]
        if cross[-1] > depths[-1]:
            raise SpaceError(
                f"{source}: decoder.cross_layers = {list(cross)}: {cross[-1]} exceeds the "
                f"largest encoder depth {depths[-1]} (encoder.layers = {list(depths)})"
            )
        if cross[0] > depths[0]:
            raise SpaceError(
                f"{source}: decoder.cross_layers = {list(cross)}: an encoder of {depths[0]} "
                f"layer(s) (encoder.layers = {list(depths)}) leaves no valid cross_layers"
            )

    def _check_side(self, side: str, choices: Mapping[str, tuple[int, ...]]) -> None:
        source = self.source
        for key in HEAD_KEYS[side]:
            for heads in choices[key]:
                if self.qkv_dim % heads:
                    raise SpaceError(
                        f"{source}: {side}.{key} = {list(choices[key])}: {heads} heads do not "
                        f"divide qkv_dim = {self.qkv_dim} (head_dim = qkv_dim / heads must be "
                        "an integer)"
                    )
        for key in ("experts", "top_k"):
            if choices[key][-1] > self.max_experts:
                raise SpaceError(
                    f"{source}: {side}.{key} = {list(choices[key])}: {choices[key][-1]} exceeds "
                    f"max_experts = {self.max_experts}"
                )
        if choices["top_k"][0] > choices["experts"][0]:
            raise SpaceError(
                f"{source}: {side}.top_k = {list(choices['top_k'])}: a layer with "
                f"{choices['experts'][0]} expert(s) ({side}.experts = "
                f"{list(choices['experts'])}) would have no top_k <= its expert count"
            )

    # ----------------------------------------------------------------- files and dicts

    @staticmethod
    def presets() -> list[str]:
        """Names of the spaces shipped with the package, for `load`."""
        return sorted(
            entry.name.removesuffix(".yaml")
            for entry in _preset_dir().iterdir()
            if entry.name.endswith(".yaml")
        )

    @classmethod
    def load(cls, path_or_preset: str | Path) -> Self:
        """A preset by name (see `presets()`) or a YAML space file."""
        if isinstance(path_or_preset, str) and path_or_preset in cls.presets():
            path = _preset_dir() / f"{path_or_preset}.yaml"
        else:
            path = Path(path_or_preset)
        try:
            text = path.read_text()
        except OSError as err:
            raise SpaceError(
                f"cannot read search space file {path}: {err.strerror} "
                f"(presets: {', '.join(cls.presets())})"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or err
            raise SpaceError(f"{path} is not valid YAML: {problem}{at}") from None
        return cls(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Self:
        """Same as the constructor; pairs with `to_dict` (e.g. a space stored in a checkpoint)."""
        return cls(data, source)

    def to_dict(self) -> dict[str, Any]:
        """The YAML schema with plain lists, so `from_dict(to_dict())` gives an equal space."""
        return {
            "name": self.name,
            "qkv_dim": self.qkv_dim,
            "max_experts": self.max_experts,
            "fractional_experts": self.fractional_experts,
            "identity_experts": self.identity_experts,
            "encoder": self._side_dict("encoder"),
            "decoder": self._side_dict("decoder"),
        }

    def _side_dict(self, side: str) -> dict[str, Any]:
        out: dict[str, Any] = {key: list(values) for key, values in self._side(side).items()}
        if self.routing[side] != ("token",):
            out[_ROUTING_KEY] = list(self.routing[side])
        return out

    def routing_modes(self) -> tuple[str, ...]:
        """Every routing granularity an architecture of this space may use (SuperNet routers)."""
        return tuple(dict.fromkeys(self.routing["encoder"] + self.routing["decoder"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpaceDefinition) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, source={self.source!r})"

    # ----------------------------------------------------------------- membership

    def _side(self, side: str) -> Mapping[str, tuple[int, ...]]:
        return self.encoder if side == "encoder" else self.decoder

    def _width_options(self, side: str) -> tuple[int, ...]:
        """Widths one expert may take (0 = identity expert, when allowed)."""
        ffn = self._side(side)["ffn_dim"]
        return (0, *ffn) if self.identity_experts else ffn

    def _top_k_options(self, side: str, experts: int) -> list[int]:
        return [k for k in self._side(side)["top_k"] if k <= experts]

    def _cross_options(self, encoder_layers: int) -> list[int]:
        return [n for n in self.decoder["cross_layers"] if n <= encoder_layers]

    def validate(self, arch: ArchConfig) -> None:
        """Raise a SpaceError naming the first field of `arch` outside this space."""
        if not isinstance(arch, ArchConfig):
            raise SpaceError(f"expected an ArchConfig, got {type(arch).__name__}")

        for side in SIDES:
            choices = self._side(side)
            self._check(
                f"{side}_embed_dim", getattr(arch, f"{side}_embed_dim"), choices["embed_dim"]
            )
            layers = layers_of(arch, side)
            self._check(f"{side}_layers", len(layers), choices["layers"])
            for i, layer in enumerate(layers):
                for key in LAYER_KEYS[side]:
                    self._check(f"{side}_{key}[{i}]", layer.genes[key], choices[key])
                self._check(f"{side}_experts[{i}]", len(layer.widths), choices["experts"])
                for j, width in enumerate(layer.widths):
                    self._check(f"{side}_ffn_dims[{i}][{j}]", width, self._width_options(side))
                if len(layer.widths) > 1:
                    self._check(f"{side}_routing[{i}]", layer.routing, self.routing[side])
                if not self.fractional_experts and len(set(layer.widths) - {0}) > 1:
                    raise SpaceError(
                        f"{side}_ffn_dims[{i}] = {layer.widths} mixes expert widths, but space "
                        f"{self.name!r} has fractional_experts: false (a layer's experts share "
                        "one width)"
                    )

    def _check(self, field: str, value: Any, allowed: Sequence[Any]) -> None:
        if value not in allowed:
            raise SpaceError(
                f"{field} = {value} is not in the space's choices {list(allowed)} "
                f"(space {self.name!r})"
            )

    def contains(self, arch: ArchConfig) -> bool:
        """Whether `arch` is one of this space's architectures."""
        try:
            self.validate(arch)
        except SpaceError:
            return False
        return True

    # ----------------------------------------------------------------- counting and extremes

    def _width_tuples(self, side: str, experts: int) -> int:
        """How many width tuples a layer of `experts` experts can have."""
        n = len(self._side(side)["ffn_dim"])
        if self.fractional_experts:
            return (n + 1) ** experts - 1 if self.identity_experts else n**experts
        return n * (2**experts - 1) if self.identity_experts else n

    def _layer_count(self, side: str, encoder_layers: int) -> int:
        """How many distinct layers `side` can have under an encoder of `encoder_layers`."""
        choices = self._side(side)
        count = math.prod(len(choices[key]) for key in HEAD_KEYS[side])
        if side == "decoder":
            count *= len(self._cross_options(encoder_layers))
        return count * sum(
            self._width_tuples(side, e)
            * len(self._top_k_options(side, e))
            * (len(self.routing[side]) if e > 1 else 1)
            for e in choices["experts"]
        )

    def size(self) -> int:
        """The exact number of distinct architectures in the space."""
        total = 0
        for depth in self.encoder["layers"]:
            decoders = sum(self._layer_count("decoder", depth) ** n for n in self.decoder["layers"])
            total += self._layer_count("encoder", depth) ** depth * decoders
        return len(self.encoder["embed_dim"]) * len(self.decoder["embed_dim"]) * total

    def _uniform(self, pick: int, widths: Callable[[str], list[int]]) -> ArchConfig:
        """Every gene at index `pick` of its sorted choices; each layer's experts are `widths`."""
        depth = self.encoder["layers"][pick]
        embeds = {side: self._side(side)["embed_dim"][pick] for side in SIDES}
        stacks = {}
        for side in SIDES:
            choices = self._side(side)
            layer_widths = widths(side)
            genes = {key: choices[key][pick] for key in HEAD_KEYS[side]}
            if side == "decoder":
                genes["cross_layers"] = self._cross_options(depth)[pick]
            genes["top_k"] = self._top_k_options(side, len(layer_widths))[pick]
            routing = self.routing[side][0]
            stacks[side] = [
                Layer(genes, layer_widths, routing) for _ in range(choices["layers"][pick])
            ]
        return build_arch(embeds, stacks)

    def largest(self) -> ArchConfig:
        """The biggest architecture: every gene at its maximum, all experts at the max width."""
        return self._uniform(
            -1, lambda side: [self._side(side)["ffn_dim"][-1]] * self._side(side)["experts"][-1]
        )

    def smallest(self) -> ArchConfig:
        """The smallest architecture: every gene at its minimum; extra experts are identities
        where the space allows them (the fewest experts is usually 1 anyway)."""

        def widths(side: str) -> list[int]:
            narrowest = self._side(side)["ffn_dim"][0]
            filler = 0 if self.identity_experts else narrowest
            return [narrowest] + [filler] * (self._side(side)["experts"][0] - 1)

        return self._uniform(0, widths)

    def supernet_shape(self) -> ArchConfig:
        """The parameter shape a SuperNet needs to hold every architecture of the space.

        Maximum embed widths and depths, and `max_experts` experts of the maximum FFN width in
        every layer; heads, top-k and cross_layers are at their maxima (they size nothing).
        """
        return self._uniform(-1, lambda side: [self._side(side)["ffn_dim"][-1]] * self.max_experts)
