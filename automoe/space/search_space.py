"""`SearchSpace`: the choices an architecture search may make, read from a YAML file.

A space is a small set of per-dimension choice lists (embed widths, depths, heads, experts,
FFN widths, top-k, encoder-decoder attention span). It samples, mutates and crosses over
`ArchConfig`s so that every result stays inside the space, encodes them as fixed-length integer
vectors for predictors, counts them exactly, and gives the SuperNet shape that holds them all.
Two presets ship with the package: `wmt` (the AutoMoE paper's space) and `multi30k` (a scaled
down one that trains on a laptop).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from numbers import Integral
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from automoe.errors import AutomoeError
from automoe.space.arch import ROUTING_MODES, ArchConfig, ArchError


class SpaceError(AutomoeError, ValueError):
    """A search space file that cannot be used, or an architecture outside the space."""


_SIDES = ("encoder", "decoder")
_PREFIX = {"encoder": "enc", "decoder": "dec"}
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
_HEAD_KEYS = {"encoder": ("heads",), "decoder": ("self_heads", "cross_heads")}
# Per-layer scalar genes; each is the ArchConfig tuple field f"{side}_{key}".
_LAYER_KEYS = {
    "encoder": ("heads", "top_k"),
    "decoder": ("self_heads", "cross_heads", "cross_layers", "top_k"),
}
# Per-layer columns of the numeric encoding, in order, before the expert widths.
_LAYER_COLUMNS = {
    "encoder": ("heads", "experts", "top_k"),
    "decoder": ("self_heads", "cross_heads", "cross_layers", "experts", "top_k"),
}


@dataclass
class _Layer:
    """Mutable genes of one layer while an operator builds a new architecture."""

    genes: dict[str, int]
    widths: list[int]
    routing: str = "token"


def _layers(arch: ArchConfig, side: str) -> list[_Layer]:
    columns = {key: getattr(arch, f"{side}_{key}") for key in _LAYER_KEYS[side]}
    routing = getattr(arch, f"{side}_routing")
    return [
        _Layer({key: values[i] for key, values in columns.items()}, list(widths), routing[i])
        for i, widths in enumerate(getattr(arch, f"{side}_ffn_dims"))
    ]


def _build(embeds: Mapping[str, int], stacks: Mapping[str, Sequence[_Layer]]) -> ArchConfig:
    fields: dict[str, Any] = {}
    for side in _SIDES:
        fields[f"{side}_embed_dim"] = embeds[side]
        fields[f"{side}_ffn_dims"] = tuple(tuple(layer.widths) for layer in stacks[side])
        for key in _LAYER_KEYS[side]:
            fields[f"{side}_{key}"] = tuple(layer.genes[key] for layer in stacks[side])
        fields[f"{side}_routing"] = tuple(layer.routing for layer in stacks[side])
    return ArchConfig(**fields)


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


class SearchSpace:
    """The choices of one architecture search, with the operators that stay inside them.

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
        for side in _SIDES:
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
        for key in _HEAD_KEYS[side]:
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
    def load(cls, path_or_preset: str | Path) -> SearchSpace:
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
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SearchSpace:
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
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SearchSpace(name={self.name!r}, source={self.source!r})"

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

        for side in _SIDES:
            choices = self._side(side)
            self._check(
                f"{side}_embed_dim", getattr(arch, f"{side}_embed_dim"), choices["embed_dim"]
            )
            layers = _layers(arch, side)
            self._check(f"{side}_layers", len(layers), choices["layers"])
            for i, layer in enumerate(layers):
                for key in _LAYER_KEYS[side]:
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
        count = math.prod(len(choices[key]) for key in _HEAD_KEYS[side])
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
        embeds = {side: self._side(side)["embed_dim"][pick] for side in _SIDES}
        stacks = {}
        for side in _SIDES:
            choices = self._side(side)
            layer_widths = widths(side)
            genes = {key: choices[key][pick] for key in _HEAD_KEYS[side]}
            if side == "decoder":
                genes["cross_layers"] = self._cross_options(depth)[pick]
            genes["top_k"] = self._top_k_options(side, len(layer_widths))[pick]
            routing = self.routing[side][0]
            stacks[side] = [
                _Layer(genes, layer_widths, routing) for _ in range(choices["layers"][pick])
            ]
        return _build(embeds, stacks)

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

    # ----------------------------------------------------------------- random operators

    def sample(self, rng: random.Random) -> ArchConfig:
        """A random architecture, each gene uniform over its choices (AutoMoE's sampling)."""
        embeds = {side: rng.choice(self._side(side)["embed_dim"]) for side in _SIDES}
        depths = {side: rng.choice(self._side(side)["layers"]) for side in _SIDES}
        stacks = {
            side: [self._sample_layer(side, depths["encoder"], rng) for _ in range(depths[side])]
            for side in _SIDES
        }
        return _build(embeds, stacks)

    def _sample_layer(self, side: str, encoder_layers: int, rng: random.Random) -> _Layer:
        choices = self._side(side)
        genes = {key: rng.choice(choices[key]) for key in _HEAD_KEYS[side]}
        if side == "decoder":
            genes["cross_layers"] = rng.choice(self._cross_options(encoder_layers))
        experts = rng.choice(choices["experts"])
        options = self._expert_options(side, rng.choice(choices["ffn_dim"]))
        while True:  # rejection keeps the draw uniform over layers with a non-identity expert
            widths = [rng.choice(options) for _ in range(experts)]
            if any(widths):
                break
        genes["top_k"] = rng.choice(self._top_k_options(side, experts))
        return _Layer(genes, widths, self._draw_routing(side, rng))

    def _draw_routing(self, side: str, rng: random.Random) -> str:
        """A routing mode; spaces with one mode draw nothing, so their samples stay unchanged."""
        modes = self.routing[side]
        return rng.choice(modes) if len(modes) > 1 else modes[0]

    def _expert_options(self, side: str, width: int) -> tuple[int, ...]:
        """Choices of one expert's width gene; `width` is the layer's shared width when the
        space is not fractional (then an expert is that width or, if allowed, an identity)."""
        if self.fractional_experts:
            return self._width_options(side)
        return (0, width) if self.identity_experts else (width,)

    def _finish(
        self,
        side: str,
        genes: dict[str, int],
        widths: list[int],
        width: int,
        encoder_layers: int,
        rng: random.Random,
        routing: str,
    ) -> _Layer:
        """Repair a recombined layer: a non-identity expert, top_k <= experts, cross_layers <=
        the encoder depth, a routing mode of the space (broken genes are resampled among the
        valid choices)."""
        if not any(widths):
            widths[rng.randrange(len(widths))] = width
        if genes["top_k"] > len(widths):
            genes["top_k"] = rng.choice(self._top_k_options(side, len(widths)))
        if side == "decoder" and genes["cross_layers"] > encoder_layers:
            genes["cross_layers"] = rng.choice(self._cross_options(encoder_layers))
        if routing not in self.routing[side]:
            routing = self._draw_routing(side, rng)
        return _Layer(genes, widths, routing)

    def mutate(self, arch: ArchConfig, prob: float, rng: random.Random) -> ArchConfig:
        """Resample each gene of `arch` with probability `prob`; the result stays in the space.

        New layers (after a depth increase) are sampled afresh; a changed expert count truncates
        the widths or pads them with random ones.
        """
        self.validate(arch)
        if not 0.0 <= prob <= 1.0:
            raise SpaceError(f"mutation probability must be in [0, 1], got {prob!r}")

        def hit() -> bool:
            return rng.random() < prob

        embeds: dict[str, int] = {}
        depths: dict[str, int] = {}
        for side in _SIDES:
            choices = self._side(side)
            embed = getattr(arch, f"{side}_embed_dim")
            embeds[side] = rng.choice(choices["embed_dim"]) if hit() else embed
            depth = len(getattr(arch, f"{side}_ffn_dims"))
            depths[side] = rng.choice(choices["layers"]) if hit() else depth
        stacks = {}
        for side in _SIDES:
            old = _layers(arch, side)
            stacks[side] = [
                self._mutate_layer(side, old[i], depths["encoder"], hit, rng)
                if i < len(old)
                else self._sample_layer(side, depths["encoder"], rng)
                for i in range(depths[side])
            ]
        return _build(embeds, stacks)

    def _mutate_layer(
        self,
        side: str,
        layer: _Layer,
        encoder_layers: int,
        hit: Callable[[], bool],
        rng: random.Random,
    ) -> _Layer:
        choices = self._side(side)
        genes = dict(layer.genes)
        for key in _HEAD_KEYS[side]:
            if hit():
                genes[key] = rng.choice(choices[key])
        if side == "decoder" and hit():
            genes["cross_layers"] = rng.choice(self._cross_options(encoder_layers))
        experts = rng.choice(choices["experts"]) if hit() else len(layer.widths)
        width = max(layer.widths)
        if not self.fractional_experts and hit():
            width = rng.choice(choices["ffn_dim"])
        options = self._expert_options(side, width)
        widths = [
            rng.choice(options) if hit() else self._carry(old, width)
            for old in layer.widths[:experts]
        ]
        widths += [rng.choice(options) for _ in range(experts - len(widths))]
        if hit():
            genes["top_k"] = rng.choice(self._top_k_options(side, experts))
        routing = layer.routing
        if len(self.routing[side]) > 1 and hit():
            routing = rng.choice(self.routing[side])
        return self._finish(side, genes, widths, width, encoder_layers, rng, routing)

    def _carry(self, old: int, width: int) -> int:
        """An expert's width kept across a change of the layer's shared width."""
        return old if self.fractional_experts or old == 0 else width

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: random.Random) -> ArchConfig:
        """Uniform crossover: every gene from either parent with probability 1/2, repaired to
        stay in the space. Genes of a layer or expert only one parent has come from that one."""
        self.validate(a)
        self.validate(b)

        def pick(x: int, y: int) -> int:
            return x if rng.random() < 0.5 else y

        embeds: dict[str, int] = {}
        depths: dict[str, int] = {}
        for side in _SIDES:
            embeds[side] = pick(getattr(a, f"{side}_embed_dim"), getattr(b, f"{side}_embed_dim"))
            depths[side] = pick(
                len(getattr(a, f"{side}_ffn_dims")), len(getattr(b, f"{side}_ffn_dims"))
            )
        stacks: dict[str, list[_Layer]] = {}
        for side in _SIDES:
            ours, theirs = _layers(a, side), _layers(b, side)
            stacks[side] = []
            for i in range(depths[side]):
                parents = [layers[i] for layers in (ours, theirs) if i < len(layers)]
                layer = self._cross_layer(
                    side, parents[0], parents[-1], depths["encoder"], pick, rng
                )
                stacks[side].append(layer)
        return _build(embeds, stacks)

    def _cross_layer(
        self,
        side: str,
        first: _Layer,
        second: _Layer,
        encoder_layers: int,
        pick: Callable[[int, int], int],
        rng: random.Random,
    ) -> _Layer:
        genes = {key: pick(first.genes[key], second.genes[key]) for key in _LAYER_KEYS[side]}
        experts = pick(len(first.widths), len(second.widths))
        width = pick(max(first.widths), max(second.widths))
        widths = []
        for j in range(experts):
            have = [parent.widths[j] for parent in (first, second) if j < len(parent.widths)]
            widths.append(self._carry(pick(have[0], have[-1]), width))
        routing = first.routing
        if len(self.routing[side]) > 1:
            routing = first.routing if rng.random() < 0.5 else second.routing
        return self._finish(side, genes, widths, width, encoder_layers, rng, routing)

    # ----------------------------------------------------------------- numeric encoding

    def encoding_names(self) -> list[str]:
        """Column names of `encode`'s vectors, e.g. `enc_embed`, `enc3_heads`,
        `enc3_expert2_ffn`, `dec1_cross_layers`; layers and experts count from 0."""
        names = []
        for side in _SIDES:
            prefix = _PREFIX[side]
            names += [f"{prefix}_embed", f"{prefix}_layers"]
            for i in range(self._side(side)["layers"][-1]):
                names += [f"{prefix}{i}_{column}" for column in self._columns(side)]
                names += [f"{prefix}{i}_expert{j}_ffn" for j in range(self.max_experts)]
        return names

    def _columns(self, side: str) -> tuple[str, ...]:
        """Per-layer encoding columns; `routing` only where the space offers several modes."""
        extra = ("routing",) if len(self.routing[side]) > 1 else ()
        return _LAYER_COLUMNS[side] + extra

    def encode(self, arch: ArchConfig) -> list[int]:
        """A fixed-length integer vector for predictors; slots of absent layers/experts are 0.

        The expert count has its own column because width 0 is also an identity expert; a
        routing column holds 1 + the mode's index in the space's choices (0 for dense layers).
        """
        self.validate(arch)
        vector: list[int] = []
        for side in _SIDES:
            layers = _layers(arch, side)
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
        stacks: dict[str, list[_Layer]] = {}
        for side in _SIDES:
            prefix, choices = _PREFIX[side], self._side(side)
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
                genes = {key: cells[f"{prefix}{i}_{key}"] for key in _LAYER_KEYS[side]}
                routing = self._decode_routing(cells, f"{prefix}{i}_routing", side, experts)
                stacks[side].append(
                    _Layer(genes, [cells[slot] for slot in slots[:experts]], routing)
                )
        try:
            arch = _build(embeds, stacks)
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
