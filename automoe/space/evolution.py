"""Mutation and crossover of architectures, repaired so that every child stays in the space."""

from __future__ import annotations

import random
from collections.abc import Callable

from automoe.space.arch import ArchConfig
from automoe.space.definition import SpaceError
from automoe.space.genes import HEAD_KEYS, LAYER_KEYS, SIDES, Layer, build_arch, layers_of
from automoe.space.sampling import Sampling


class Evolution(Sampling):
    """A space with the evolutionary operators (mutation resamples genes, so it samples too)."""

    def _finish(
        self,
        side: str,
        genes: dict[str, int],
        widths: list[int],
        width: int,
        encoder_layers: int,
        rng: random.Random,
        routing: str,
    ) -> Layer:
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
        return Layer(genes, widths, routing)

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
        for side in SIDES:
            choices = self._side(side)
            embed = getattr(arch, f"{side}_embed_dim")
            embeds[side] = rng.choice(choices["embed_dim"]) if hit() else embed
            depth = len(getattr(arch, f"{side}_ffn_dims"))
            depths[side] = rng.choice(choices["layers"]) if hit() else depth
        stacks = {}
        for side in SIDES:
            old = layers_of(arch, side)
            stacks[side] = [
                self._mutate_layer(side, old[i], depths["encoder"], hit, rng)
                if i < len(old)
                else self._sample_layer(side, depths["encoder"], rng)
                for i in range(depths[side])
            ]
        return build_arch(embeds, stacks)

    def _mutate_layer(
        self,
        side: str,
        layer: Layer,
        encoder_layers: int,
        hit: Callable[[], bool],
        rng: random.Random,
    ) -> Layer:
        choices = self._side(side)
        genes = dict(layer.genes)
        for key in HEAD_KEYS[side]:
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
        for side in SIDES:
            embeds[side] = pick(getattr(a, f"{side}_embed_dim"), getattr(b, f"{side}_embed_dim"))
            depths[side] = pick(
                len(getattr(a, f"{side}_ffn_dims")), len(getattr(b, f"{side}_ffn_dims"))
            )
        stacks: dict[str, list[Layer]] = {}
        for side in SIDES:
            ours, theirs = layers_of(a, side), layers_of(b, side)
            stacks[side] = []
            for i in range(depths[side]):
                parents = [layers[i] for layers in (ours, theirs) if i < len(layers)]
                layer = self._cross_layer(
                    side, parents[0], parents[-1], depths["encoder"], pick, rng
                )
                stacks[side].append(layer)
        return build_arch(embeds, stacks)

    def _cross_layer(
        self,
        side: str,
        first: Layer,
        second: Layer,
        encoder_layers: int,
        pick: Callable[[int, int], int],
        rng: random.Random,
    ) -> Layer:
        genes = {key: pick(first.genes[key], second.genes[key]) for key in LAYER_KEYS[side]}
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
