"""Random architectures of a space: AutoMoE's uniform sampling, gene by gene."""

from __future__ import annotations

import random

from automoe.space.arch import ArchConfig
from automoe.space.definition import SpaceDefinition
from automoe.space.genes import HEAD_KEYS, SIDES, Layer, build_arch


class Sampling(SpaceDefinition):
    """A space that draws random architectures (and random layers, which mutation reuses)."""

    def sample(self, rng: random.Random) -> ArchConfig:
        """A random architecture, each gene uniform over its choices (AutoMoE's sampling)."""
        embeds = {side: rng.choice(self._side(side)["embed_dim"]) for side in SIDES}
        depths = {side: rng.choice(self._side(side)["layers"]) for side in SIDES}
        stacks = {
            side: [self._sample_layer(side, depths["encoder"], rng) for _ in range(depths[side])]
            for side in SIDES
        }
        return build_arch(embeds, stacks)

    def _sample_layer(self, side: str, encoder_layers: int, rng: random.Random) -> Layer:
        choices = self._side(side)
        genes = {key: rng.choice(choices[key]) for key in HEAD_KEYS[side]}
        if side == "decoder":
            genes["cross_layers"] = rng.choice(self._cross_options(encoder_layers))
        experts = rng.choice(choices["experts"])
        options = self._expert_options(side, rng.choice(choices["ffn_dim"]))
        while True:  # rejection keeps the draw uniform over layers with a non-identity expert
            widths = [rng.choice(options) for _ in range(experts)]
            if any(widths):
                break
        genes["top_k"] = rng.choice(self._top_k_options(side, experts))
        return Layer(genes, widths, self._draw_routing(side, rng))

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
