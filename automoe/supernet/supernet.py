"""`SuperNet`: the weight-sharing Transformer that holds every architecture of a search space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.model import ModelConfig, Transformer, extract, load_checkpoint_file


class SuperNet(Transformer):
    """A `Transformer` shaped by a search space's largest architecture, which it remembers."""

    def __init__(self, config: ModelConfig, space: SearchSpace) -> None:
        super().__init__(config)
        self.space = space

    @classmethod
    def build(cls, space: SearchSpace, vocab_size: int, **settings: Any) -> SuperNet:
        """Settings are `ModelConfig` fields (dropout, num_tasks, capacity_factor, ...); every
        layer holds a router for each routing granularity the space offers."""
        settings.setdefault("routers", space.routing_modes())
        config = ModelConfig(vocab_size, space.qkv_dim, space.supernet_shape(), **settings)
        return cls(config, space)

    def extract(self, arch: ArchConfig) -> Transformer:
        return extract(self, arch)

    def checkpoint(self) -> dict[str, Any]:
        return {**super().checkpoint(), "space": self.space.to_dict()}

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], source: str = "<memory>") -> SuperNet:
        if not isinstance(data, dict) or "space" not in data:
            raise AutomoeError(
                f"{source} is not a SuperNet checkpoint (no search space in it); "
                "an extracted model loads with `Transformer.load`"
            )
        plain = Transformer.from_checkpoint(data, source)
        net = cls(plain.config, SearchSpace.from_dict(data["space"], source=source))
        net.load_state_dict(plain.state_dict())
        return net

    @classmethod
    def load(cls, path: str | Path) -> SuperNet:
        return cls.from_checkpoint(load_checkpoint_file(path), str(path))
