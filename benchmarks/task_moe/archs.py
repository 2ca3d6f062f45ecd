"""The models the Task-MoE comparison trains, all architectures of one space.

`dense` is the space's largest dense architecture (one expert of the widest FFN per layer).
The MoE rows keep its shape and put `EXPERTS` equal top-1 experts (or as many as the space
allows) in every FFN layer, routed by token, by source sentence or by task in every layer;
`mixed` routes the encoder by token and the decoder by task, the paper's best setting.
Exported per task, a task-routed layer is one dense FFN of the dense model's width, so `task`
deploys at the dense model's size.
"""

from __future__ import annotations

from pathlib import Path

from staged.archs import arch_yaml, dense_arch

from automoe.files import write_text_atomic
from automoe.space import ArchConfig, SearchSpace

EXPERTS = 4
# Row -> routing of the encoder's and the decoder's MoE layers (None: dense).
ROUTING: dict[str, tuple[str, str] | None] = {
    "dense": None,
    "token": ("token", "token"),
    "sentence": ("sentence", "sentence"),
    "task": ("task", "task"),
    "mixed": ("token", "task"),
}


def model_arch(space: SearchSpace, row: str) -> ArchConfig:
    """The row's architecture, checked against the space."""
    arch = dense_arch(space)
    routing = ROUTING[row]
    if routing is not None:
        data = arch.to_dict()
        for side, mode in zip(("encoder", "decoder"), routing, strict=True):
            experts = min(EXPERTS, max(space.to_dict()[side]["experts"]))
            widths = data[f"{side}_ffn_dims"]
            data[f"{side}_ffn_dims"] = [layer * experts for layer in widths]
            data[f"{side}_routing"] = [mode] * len(widths)
        arch = ArchConfig.from_dict(data)
    space.validate(arch)
    return arch


def write_models(space: SearchSpace, folder: Path) -> None:
    """Every row's architecture file (`ROW.yaml`) in `folder`."""
    for row in ROUTING:
        write_text_atomic(folder / f"{row}.yaml", arch_yaml(model_arch(space, row)))
