"""Architecture helpers the staged benchmarks share: the space's dense reference, and the
YAML an architecture file holds."""

from __future__ import annotations

import yaml

from automoe.space import ArchConfig, SearchSpace


def dense_arch(space: SearchSpace) -> ArchConfig:
    """The largest architecture with one expert of the widest FFN in every layer."""
    largest = space.largest().to_dict()
    for side in ("encoder", "decoder"):
        widths = largest[f"{side}_ffn_dims"]
        largest[f"{side}_ffn_dims"] = [[max(layer)] for layer in widths]
        largest[f"{side}_top_k"] = [1] * len(widths)
        largest.pop(f"{side}_routing", None)
    return ArchConfig.from_dict(largest)


def arch_yaml(arch: ArchConfig) -> str:
    return yaml.safe_dump(arch.to_dict(), sort_keys=False, default_flow_style=None)
