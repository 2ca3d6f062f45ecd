"""Reading run folders and self-contained model files (weights plus their tokenizer).

A model file carries the SentencePiece model it was trained with, so a translation model can
be copied to another machine as one file and still turn text into ids exactly as in training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from automoe.arch import ArchConfig
from automoe.data import Tokenizer
from automoe.errors import AutomoeError
from automoe.supernet.model import Transformer, load_checkpoint_file
from automoe.supernet.supernet import SuperNet

RUN_FILE = "run.json"
SUPERNET_FILE = "supernet.pt"
CHECKPOINT_FILE = "checkpoint.pt"


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA when present; asking for CUDA without one is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AutomoeError(f"--device {name}: no CUDA device is available; use cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise AutomoeError(f"unknown device {name!r}; choices: auto, cpu, cuda, cuda:N")
    return torch.device(name)


def read_run_file(run: str | Path) -> dict[str, Any]:
    path = Path(run) / RUN_FILE
    if not path.is_file():
        raise AutomoeError(f"{run} is not a run folder (no {RUN_FILE}); train one first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AutomoeError(
            f"{path} is not valid JSON ({err}); restore it or start a new run"
        ) from None


def save_with_tokenizer(model: Transformer, tokenizer: Tokenizer, path: str | Path) -> None:
    """Save a model (SuperNet or extracted) together with its tokenizer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**model.checkpoint(), "tokenizer": tokenizer.model_proto}, tmp)
    tmp.replace(path)


def load_model_file(path: str | Path) -> tuple[Transformer, Tokenizer]:
    """A SuperNet or extracted model file, a run folder, or a training checkpoint."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / SUPERNET_FILE, path / CHECKPOINT_FILE]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise AutomoeError(
                f"{path} holds no {SUPERNET_FILE} or {CHECKPOINT_FILE}; train it first"
            )
        path = found
    data = load_checkpoint_file(path)
    if isinstance(data, dict) and "model" in data and "optimizer" in data:
        tokenizer = Tokenizer.load(path.parent)
        data = data["model"]
    elif isinstance(data, dict) and "tokenizer" in data:
        tokenizer = Tokenizer(data["tokenizer"], source=str(path))
    else:
        raise AutomoeError(f"{path} holds no tokenizer; save models with automoe's commands")
    cls = SuperNet if "space" in data else Transformer
    return cls.from_checkpoint(data, str(path)), tokenizer


def task_ids_for(model: Transformer, task_names: Sequence[str]) -> list[int]:
    """The task id `model` was trained with for each pair name (e.g. "en-de"), never the pair's
    position in some list: task routers index their weights by this id. A pair the model was
    not trained on is refused; a model recording no names has one task, id 0."""
    if model.config.task_names:
        return [model.task_id(name) for name in task_names]
    if model.config.num_tasks == 1:
        return [0] * len(task_names)
    raise AutomoeError(
        f"this model has {model.config.num_tasks} tasks but records no task names, so the task "
        f"id of {list(task_names)} is unknown; retrain it with this version of automoe"
    )


def resolve_arch(spec: str | None, model: Transformer) -> ArchConfig:
    """`largest`/`smallest` of a SuperNet's space, an arch file, or (None) the model's own."""
    if spec is None:
        return model.space.largest() if isinstance(model, SuperNet) else model.default_arch
    if spec in ("largest", "smallest"):
        if not isinstance(model, SuperNet):
            raise AutomoeError(
                f"--arch {spec} needs a SuperNet; this is an extracted model with one arch"
            )
        return getattr(model.space, spec)()
    arch = ArchConfig.load(spec)
    model.check_arch(arch)
    return arch
