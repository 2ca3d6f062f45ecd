"""Reading run folders and self-contained model files (weights plus their tokenizer).

A model file carries the SentencePiece model it was trained with, so a translation model can
be copied to another machine as one file and still turn text into ids exactly as in training.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from automoe.data import Tokenizer
from automoe.errors import AutomoeError
from automoe.files import atomic_path
from automoe.precision import narrowed_parameters
from automoe.space import ArchConfig, ArchError, SpaceError
from automoe.supernet.model import Transformer, load_checkpoint_file
from automoe.supernet.supernet import SuperNet

RUN_FILE = "run.json"
SUPERNET_FILE = "supernet.pt"
MODEL_FILE = "model.pt"  # what `train --arch` writes
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


WEIGHT_FORMATS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """`--weights`, the number format of a model file a command writes."""
    parser.add_argument(
        "--weights",
        choices=sorted(WEIGHT_FORMATS),
        default="fp32",
        help="number format of the saved weights (bf16: half the file; translate with "
        "--precision bf16)",
    )


def save_with_tokenizer(
    model: Transformer, tokenizer: Tokenizer, path: str | Path, weights: str = "fp32"
) -> None:
    """Save a model (SuperNet or extracted) together with its tokenizer, atomically.

    `weights="bf16"` stores the weight matrices in bf16, about half the file, and the rest
    (norms, biases) in fp32, as a bf16 run holds them. Loading widens them back to fp32
    exactly, and a bf16 run casts them to the very values saved, so the file translates as
    the model it came from does in bf16.
    """
    data = model.checkpoint()
    if weights != "fp32":
        narrow = WEIGHT_FORMATS[weights]
        params = narrowed_parameters(model)
        data["state_dict"] = {
            k: v.to(narrow) if k in params else v for k, v in data["state_dict"].items()
        }
        data["weights"] = weights
    with atomic_path(path) as tmp:
        torch.save({**data, "tokenizer": tokenizer.model_proto}, tmp)


def load_model_file(path: str | Path) -> tuple[Transformer, Tokenizer]:
    """A SuperNet or extracted model file, a run folder, or a training checkpoint."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / SUPERNET_FILE, path / MODEL_FILE, path / CHECKPOINT_FILE]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise AutomoeError(
                f"{path} holds no {SUPERNET_FILE}, {MODEL_FILE} or {CHECKPOINT_FILE}; train it "
                "first"
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
    not trained on is refused. A model recording no names has one task (id 0) or predates task
    names, when its pairs were numbered in training order."""
    if model.config.task_names:
        return [model.task_id(name) for name in task_names]
    if model.config.num_tasks == 1:
        return [0] * len(task_names)
    return list(range(len(task_names)))


def resolve_arch(spec: str | None, model: Transformer) -> ArchConfig:
    """`largest`/`smallest` of a SuperNet's space, an arch file, or (None) the model's own.

    An arch file must be one of a SuperNet's architectures (weights outside its space were
    never trained) or, for an extracted model, the model's own architecture.
    """
    if spec is None:
        return model.space.largest() if isinstance(model, SuperNet) else model.default_arch
    if spec in ("largest", "smallest"):
        if not isinstance(model, SuperNet):
            raise AutomoeError(
                f"--arch {spec} needs a SuperNet; this is an extracted model with one arch"
            )
        return getattr(model.space, spec)()
    arch = ArchConfig.load(spec)
    if isinstance(model, SuperNet):
        try:
            model.space.validate(arch)
        except SpaceError as err:
            raise SpaceError(f"--arch {spec}: {err}") from None
    elif arch != model.default_arch:
        raise ArchError(
            f"--arch {spec}: an extracted model runs its own architecture only, and this one "
            f"differs from it ({_first_difference(arch, model.default_arch)}); leave out "
            "--arch, or use the SuperNet it was extracted from"
        )
    model.check_arch(arch)
    return arch


def _first_difference(arch: ArchConfig, own: ArchConfig) -> str:
    mine, theirs = arch.to_dict(), own.to_dict()
    name = next(k for k in dict.fromkeys([*mine, *theirs]) if mine.get(k) != theirs.get(k))
    return f"{name} = {mine.get(name)}, the model's is {theirs.get(name)}"
