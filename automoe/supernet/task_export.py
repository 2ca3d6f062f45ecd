"""Cutting one task's ready-to-serve sub-network out of a task-routed MoE (Task-MoE).

A task router looks at nothing but the task id, so for one task every token of a layer goes to
the same `top_k` experts with the same gate weights. Those experts and their constant gates
fold into a single dense FFN: fc1 rows are stacked, fc2 columns are scaled by their gate and
stacked, and the fc2 biases add up weighted by the gates. The exported model is an ordinary
`Transformer` with a dense FFN in every task-routed layer and no router there, so every tool
(translate, evaluate, latency) runs it unchanged. Token- and sentence-routed layers are kept.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.supernet.model import Transformer, extract
from automoe.supernet.moe import MoEFeedForward


def task_gates(
    ffn: MoEFeedForward, num_experts: int, top_k: int, task_id: int
) -> list[tuple[int, float]]:
    """(expert, gate) pairs a task-routed layer uses for `task_id`, as its forward computes."""
    logits = ffn.routers["task"].logits[task_id, :num_experts]
    probs = torch.softmax(logits.float(), dim=-1)
    gate, chosen = probs.topk(top_k)
    if top_k > 1:
        gate = gate / gate.sum()
    return list(zip(chosen.tolist(), gate.tolist(), strict=True))


def _folded(
    ffn: MoEFeedForward, widths: tuple[int, ...], gates: list[tuple[int, float]], where: str
) -> dict[str, Tensor]:
    """fc1/fc2 weights of the dense FFN equal to the gated sum of the chosen experts."""
    w1, b1, w2, b2 = [], [], [], 0.0
    for j, g in gates:
        width, expert = widths[j], ffn.experts[j]
        if width == 0:
            raise AutomoeError(
                f"{where}: the task uses expert {j}, an identity (width 0) expert, which does "
                "not fold into a dense FFN; export an architecture without identity experts"
            )
        w1.append(expert.fc1.weight[:width])
        b1.append(expert.fc1.bias[:width])
        w2.append(g * expert.fc2.weight[:, :width])
        b2 = b2 + g * expert.fc2.bias
    return {
        "fc1.weight": torch.cat(w1),
        "fc1.bias": torch.cat(b1),
        "fc2.weight": torch.cat(w2, dim=1),
        "fc2.bias": b2,
    }


def export_task(
    model: Transformer, arch: ArchConfig, task_id: int
) -> tuple[Transformer, ArchConfig]:
    """The model `arch` of `model` becomes for task `task_id`, and its (smaller) architecture."""
    if model.config.capacity_factor is not None:
        raise AutomoeError(
            "this model drops tokens over a capacity factor; under task routing the full model "
            "drops tokens the exported one would keep, so their translations would differ"
        )
    if not 0 <= task_id < model.config.num_tasks:
        raise AutomoeError(
            f"task id {task_id} is out of range: the model has {model.config.num_tasks} task(s)"
        )
    sub = extract(model, arch).eval()
    sides = {}
    folded: dict[str, dict[str, Tensor]] = {}
    for side in ("encoder", "decoder"):
        dims = list(getattr(arch, f"{side}_ffn_dims"))
        top_k = list(getattr(arch, f"{side}_top_k"))
        routing = list(getattr(arch, f"{side}_routing"))
        layers = getattr(sub, f"{side}_layers")
        for i, mode in enumerate(routing):
            if mode != "task" or len(dims[i]) == 1:
                continue
            with torch.no_grad():
                gates = task_gates(layers[i].ffn, len(dims[i]), top_k[i], task_id)
                weights = _folded(layers[i].ffn, dims[i], gates, f"{side} layer {i}")
            folded[f"{side}_layers.{i}.ffn.experts.0."] = weights
            dims[i], top_k[i], routing[i] = (weights["fc1.bias"].numel(),), 1, "token"
        sides[f"{side}_ffn_dims"] = tuple(dims)
        sides[f"{side}_top_k"] = tuple(top_k)
        sides[f"{side}_routing"] = tuple(routing)
    if not folded:
        raise AutomoeError(
            "the architecture has no task-routed MoE layer, so no task sub-network is smaller "
            "than the model; route some layers by task (routing: [task] in the space)"
        )
    small = replace(arch, **sides)
    out = Transformer(replace(sub.config, shape=small)).to(sub.embed.weight.device).eval()
    source = sub.state_dict()
    with torch.no_grad():
        for name, target in out.state_dict().items():
            prefix, _, leaf = name.rpartition("experts.0.")
            if prefix + "experts.0." in folded and leaf in folded[prefix + "experts.0."]:
                target.copy_(folded[prefix + "experts.0."][leaf])
            else:
                target.copy_(source[name])
    return out, small
