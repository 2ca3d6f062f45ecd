"""`python -m automoe.train`: train a weight-sharing SuperNet, or one architecture, on a corpus.

    python -m automoe.train --run runs/m30k --space multi30k            # a SuperNet
    python -m automoe.train --run runs/best --arch runs/search/best.yaml  # one architecture

`--arch` trains a fixed architecture from scratch (the search's winner, a dense or a Switch
baseline), or from a SuperNet's inherited weights with `--init-from`; the result, `model.pt`,
is an extracted model that every command accepts. The run folder keeps everything needed to
continue or reuse the run: `run.json` (every setting), `tokenizer.model`, `checkpoint.pt`
(model, optimiser, data position, RNG) with the one before it as `checkpoint.pt.prev`,
`metrics.jsonl`/`metrics.csv` and, once finished, `supernet.pt` or `model.pt`. `--resume`
continues a killed run exactly where its last checkpoint left off (from the previous one if
the last is damaged).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from automoe.argtypes import (
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_float_or_inf,
    positive_int,
    probability,
)
from automoe.data import Tokenizer
from automoe.data.run_data import TOKENIZER_FILE, DataSettings, RunData
from automoe.errors import AutomoeError, run_cli
from automoe.files import locked_folder, previous_path, write_text_atomic
from automoe.precision import add_precision_option
from automoe.runs import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    RUN_FILE,
    SUPERNET_FILE,
    load_model_file,
    pick_device,
    read_run_file,
    save_with_tokenizer,
    task_ids_for,
)
from automoe.space import ArchConfig, SearchSpace, SpaceError
from automoe.supernet.model import ModelConfig, Transformer, extract
from automoe.supernet.supernet import SuperNet
from automoe.train.trainer import Trainer, TrainSettings

MODEL_KEYS = ("dropout", "attention_dropout", "activation_dropout", "capacity_factor")
RESUMABLE = {
    "max_steps",
    "stop_at",
    "time_limit",
    "device",
    "threads",
    "no_progress",
    "resume",
    "run",
    "data_dir",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m automoe.train",
        description="Train an AutoMoE SuperNet (one sampled sub-network per update).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--run", required=True, help="run folder (created if missing)")
    p.add_argument("--resume", action="store_true", help="continue the run folder's training")
    p.add_argument("--space", help="search space: preset name (multi30k, wmt) or YAML file")
    p.add_argument(
        "--arch",
        help="train this one architecture (YAML/JSON, e.g. a search's best.yaml; within "
        "--space) instead of a SuperNet",
    )
    p.add_argument(
        "--init-from",
        help="with --arch: start from this SuperNet's inherited weights (run folder or file); "
        "its tokenizer, space and pairs are used",
    )
    p.add_argument("--data-dir", help="folder holding multi30k/ (else $AUTOMOE_DATA_DIR, cache)")
    p.add_argument("--pairs", help="comma-separated pairs, e.g. en-de or en-de,en-fr,en-cs")
    p.add_argument("--vocab-size", type=positive_int, help="joint SentencePiece vocabulary")
    p.add_argument("--max-len", type=positive_int, help="longest sentence in tokens (longer: cut)")
    p.add_argument("--max-tokens", type=positive_int, help="token budget of one batch")
    p.add_argument(
        "--train-limit",
        type=nonnegative_int,
        help="use only the first N training pairs of each pair (0: all)",
    )
    p.add_argument("--valid-size", type=positive_int, help="validation sentences per pair")
    p.add_argument(
        "--task-temperature",
        type=positive_float_or_inf,
        help="sampling across pairs: 1 = data proportions (default), larger = flatter, inf = "
        "balanced",
    )
    p.add_argument("--max-steps", type=positive_int, help="updates of the whole run")
    p.add_argument("--lr", type=positive_float, help="peak learning rate")
    p.add_argument("--warmup-steps", type=nonnegative_int, help="linear warm-up (0: none)")
    p.add_argument("--clip-norm", type=nonnegative_float, help="gradient-norm clip (0: off)")
    p.add_argument("--label-smoothing", type=probability, help="0 to 1 (0: plain cross entropy)")
    p.add_argument(
        "--balance-coef", type=nonnegative_float, help="weight of the load-balancing loss (0: off)"
    )
    p.add_argument("--update-freq", type=positive_int, help="batches accumulated per update")
    p.add_argument("--sampling", choices=["uniform", "sandwich"])
    add_precision_option(p, "of forward passes (weights and optimiser stay fp32)", default=None)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        help="steps between checkpoints (a pause and the last step save one too)",
    )
    p.add_argument(
        "--validate-every",
        type=positive_int,
        help="steps between validations (the last step validates too)",
    )
    p.add_argument("--log-every", type=positive_int, help="steps between metric rows")
    p.add_argument("--dropout", type=probability, help="0 to 1 (0: off)")
    p.add_argument("--attention-dropout", type=probability, help="0 to 1 (0: off)")
    p.add_argument("--activation-dropout", type=probability, help="0 to 1 (0: off)")
    p.add_argument(
        "--capacity-factor",
        type=positive_float,
        help="drop tokens over this multiple of an even share per expert (default: keep all)",
    )
    p.add_argument("--stop-at", type=positive_int, help="pause at this step (resume later)")
    p.add_argument("--time-limit", type=positive_float, help="pause after this many minutes")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _settings_from_args(args: dict[str, Any]) -> dict[str, Any]:
    if "init_from" in args and "arch" not in args:
        raise AutomoeError("--init-from needs --arch: the architecture to inherit weights for")
    base: dict[str, Any] = {}
    space = SearchSpace.load(args.get("space", "multi30k"))
    if "init_from" in args:
        base, space = _supernet_defaults(args["init_from"], "space" in args)
    data = DataSettings(
        **{
            **base,
            **{
                f.name: args[f.name]
                for f in fields(DataSettings)
                if f.name in args and f.name not in ("pairs",)
            },
            **({"pairs": tuple(args["pairs"].split(","))} if "pairs" in args else {}),
        }
    )
    train = TrainSettings(**{f.name: args[f.name] for f in fields(TrainSettings) if f.name in args})
    data.seed = train.seed
    model = {k: args[k] for k in MODEL_KEYS if k in args}
    settings = {
        "space": space.to_dict(),
        "data": data.to_dict(),
        "train": train.to_dict(),
        "model": model,
    }
    if "arch" in args:
        arch = ArchConfig.load(args["arch"])
        try:
            space.validate(arch)
        except SpaceError as err:
            raise SpaceError(
                f"--arch {args['arch']}: {err}; train it within the space it was searched in "
                "(--space)"
            ) from None
        settings["arch"] = arch.to_dict()
    if "init_from" in args:
        settings["init_from"] = str(Path(args["init_from"]).resolve())
    return settings


def _supernet_defaults(path: str, space_given: bool) -> tuple[dict[str, Any], SearchSpace]:
    """The data settings and space of the SuperNet `--init-from` names: the fine-tuned model
    must read text with its tokenizer and route tasks by its ids."""
    if space_given:
        raise AutomoeError("--space with --init-from: the architecture lies in the SuperNet's")
    net, tokenizer = load_model_file(path)
    if not isinstance(net, SuperNet):
        raise AutomoeError(f"--init-from {path}: an extracted model, not a SuperNet")
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    data = read_run_file(folder)["data"] if (folder / RUN_FILE).is_file() else {}
    data = {k: v for k, v in data.items() if k != "seed"}
    data["vocab_size"] = tokenizer.vocab_size
    if net.config.task_names:
        data.setdefault("pairs", list(net.config.task_names))
    return data, net.space


def _resume_settings(run: Path, args: dict[str, Any]) -> dict[str, Any]:
    fixed = sorted(k for k in args if k not in RESUMABLE)
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise AutomoeError(
            f"{flags}: fixed by {run / RUN_FILE} when resuming; start a new --run to change"
        )
    return read_run_file(run)


def _new_settings(run: Path, args: dict[str, Any]) -> dict[str, Any]:
    checkpoint = run / CHECKPOINT_FILE
    if checkpoint.exists() or previous_path(checkpoint).exists():
        raise AutomoeError(
            f"{run} already holds a training run; add --resume to continue it "
            "or choose another --run folder"
        )
    return _settings_from_args(args)


def _build_trainer(
    run: Path, settings: dict[str, Any], tokenizer: Tokenizer | None, device: str
) -> tuple[Trainer, Tokenizer]:
    """The run's SuperNet and trainer; reads the corpus, writes nothing."""
    data_settings = DataSettings(**settings["data"])
    train_settings = TrainSettings(
        **{**settings["train"], "betas": tuple(settings["train"]["betas"])}
    )
    supernet = None
    if settings.get("init_from"):
        supernet, tokenizer = load_model_file(settings["init_from"])
    data = RunData(data_settings, settings.get("data_dir"), tokenizer=tokenizer)
    space = SearchSpace.from_dict(settings["space"], source=str(run / RUN_FILE))
    torch.manual_seed(train_settings.seed)
    net = _build_model(settings, space, data, supernet)
    if supernet is not None:  # examples carry the SuperNet's task ids, not positions
        ids = task_ids_for(net, data_settings.pairs)
        data = RunData(data_settings, settings.get("data_dir"), data.tokenizer, task_ids=ids)
    batcher = data.train_batcher()
    trainer = Trainer(
        net,
        lambda epoch: list(batcher.batches(epoch)),
        data.valid_batches(),
        train_settings,
        run,
        pick_device(device),
    )
    return trainer, data.tokenizer


def _build_model(
    settings: dict[str, Any], space: SearchSpace, data: RunData, supernet: Transformer | None
) -> Transformer:
    """The SuperNet of the space; or, with an arch, that one model, fresh or inherited."""
    model_settings = settings["model"]
    if supernet is not None:
        inherited = extract(supernet, ArchConfig.from_dict(settings["arch"]))
        net = Transformer(replace(inherited.config, **model_settings))
        net.load_state_dict(inherited.state_dict())
        return net
    shape = {
        "max_positions": max(256, data.settings.max_len + 2),
        "num_tasks": len(data.tasks),
        "task_names": tuple(task.name for task in data.tasks),
        **model_settings,
    }
    if "arch" not in settings:
        return SuperNet.build(space, data.tokenizer.vocab_size, **shape)
    arch = ArchConfig.from_dict(settings["arch"])
    routers = arch.routing_modes or ("token",)
    config = ModelConfig(data.tokenizer.vocab_size, space.qkv_dim, arch, routers=routers, **shape)
    return Transformer(config)


def _final_path(trainer: Trainer) -> Path:
    """`supernet.pt` for a SuperNet, `model.pt` for one architecture."""
    name = SUPERNET_FILE if isinstance(trainer.net, SuperNet) else MODEL_FILE
    return trainer.run_dir / name


def _model_is_stale(trainer: Trainer) -> bool:
    """True when the final model file is missing or older than the final checkpoint (a kill
    between the two writes)."""
    model, checkpoint = _final_path(trainer), trainer.checkpoint_path
    if not model.exists():
        return True
    return checkpoint.exists() and model.stat().st_mtime_ns < checkpoint.stat().st_mtime_ns


def _record(run: Path, settings: dict[str, Any], tokenizer: Tokenizer) -> None:
    """Write the run's settings and tokenizer; unchanged files are left alone."""
    text = json.dumps(settings, indent=2) + "\n"
    path = run / RUN_FILE
    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)
    saved = run / TOKENIZER_FILE
    if not saved.is_file() or saved.read_bytes() != tokenizer.model_proto:
        tokenizer.save(run)


def _finish(trainer: Trainer, tokenizer: Tokenizer, last: dict[str, Any]) -> None:
    save_with_tokenizer(trainer.net, tokenizer, _final_path(trainer))
    summary = {k: v for k, v in last.items() if k.startswith("valid") or k in ("step", "loss")}
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    """Nothing in the run folder is written until the settings, the data and (on --resume)
    a checkpoint are known good."""
    args = vars(build_parser().parse_args(argv))
    run = Path(args["run"])
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 holds the folder
        return _train(run, args)
    with locked_folder(run, "python -m automoe.train"):
        return _train(run, args)


def _train(run: Path, args: dict[str, Any]) -> int:
    resume = args.get("resume", False)
    if "threads" in args:
        torch.set_num_threads(args["threads"])
    settings = _resume_settings(run, args) if resume else _new_settings(run, args)
    planned_steps = settings["train"]["max_steps"]
    settings["train"]["max_steps"] = args.get("max_steps", planned_steps)
    if "data_dir" in args:
        settings["data_dir"] = str(Path(args["data_dir"]).resolve())
    tokenizer_path = run / TOKENIZER_FILE
    trainer, tokenizer = _build_trainer(
        run,
        settings,
        Tokenizer.load(tokenizer_path) if resume and tokenizer_path.exists() else None,
        args.get("device", "auto"),
    )
    max_steps = trainer.settings.max_steps
    if resume:
        notice = trainer.load_checkpoint()
        if notice:
            print(notice)
        if trainer.step >= max_steps:
            if trainer.step == planned_steps and _model_is_stale(trainer):
                name = _final_path(trainer).name
                print(f"{run}: training had finished; writing the {name} it did not save")
                _finish(trainer, tokenizer, {"step": trainer.step})
            else:
                print(
                    f"{run}: already trained for {trainer.step} steps; raise --max-steps to go on"
                )
            return 0
        if args.get("stop_at", math.inf) <= trainer.step:
            raise AutomoeError(
                f"--stop-at {args['stop_at']}: the run is already at step {trainer.step}; "
                "give a later step"
            )
    if trainer.precision.notice():
        print(trainer.precision.notice())
    settings["precision"] = trainer.precision.record()
    _record(run, settings, tokenizer)
    limit = args["time_limit"] * 60 if "time_limit" in args else None
    last = trainer.train(not args.get("no_progress", False), args.get("stop_at"), limit)
    if trainer.step < max_steps:
        print(f"paused at step {trainer.step}; continue with --run {run} --resume")
        return 0
    _finish(trainer, tokenizer, last)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
