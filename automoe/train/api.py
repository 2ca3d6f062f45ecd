"""Training from Python and from the command line (`python -m automoe.train` is `main` over
`run_training`): a weight-sharing SuperNet, or one architecture, on a corpus.

    python -m automoe.train --run runs/m30k --space multi30k            # a SuperNet
    python -m automoe.train --run runs/best --arch runs/search/best.yaml  # one architecture
    automoe.train("runs/m30k", space="multi30k", max_steps=1500)         # the same, in Python

`--arch` trains a fixed architecture from scratch (the search's winner, a dense or a Switch
baseline), or from a SuperNet's inherited weights with `--init-from`; the result, `model.pt`,
is an extracted model that every command accepts. The run folder keeps everything needed to
continue or reuse the run: `run.json` (every setting), `tokenizer.model`, `checkpoint.pt`
(model, optimiser, data position, RNG) with the one before it as `checkpoint.pt.prev`,
`metrics.jsonl`/`metrics.csv` and, once finished, `supernet.pt` or `model.pt`. `--resume`
continues a killed run exactly where its last checkpoint left off (from the previous one if
the last is damaged).

Every option of the command is a keyword of `train()` (dashes as underscores) and is checked by
the same parser, so a wrong value fails with the same one-line message.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

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
from automoe.errors import AutomoeError
from automoe.files import locked_folder, previous_path, write_text_atomic
from automoe.precision import Precision, add_precision_option
from automoe.runs import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    RUN_FILE,
    SUPERNET_FILE,
    load_model_file,
    read_run_file,
    save_with_tokenizer,
    task_ids_for,
)
from automoe.space import ArchConfig, SearchSpace, SpaceError
from automoe.supernet.model import ModelConfig, Transformer, extract
from automoe.supernet.supernet import SuperNet
from automoe.train.distributed import World
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
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        help="run folder (created if missing); under torchrun write --run-dir, since torchrun "
        "reads --run as short for its own --run-path",
    )
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
    net, tokenizer = _inherited_from(str(Path(path).resolve()))
    if not isinstance(net, SuperNet):
        raise AutomoeError(f"--init-from {path}: an extracted model, not a SuperNet")
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    data = read_run_file(folder)["data"] if (folder / RUN_FILE).is_file() else {}
    data = {k: v for k, v in data.items() if k != "seed"}
    data["vocab_size"] = tokenizer.vocab_size
    if net.config.task_names:
        data.setdefault("pairs", list(net.config.task_names))
    return data, net.space


@functools.lru_cache(maxsize=1)
def _inherited_from(path: str) -> tuple[Transformer, Tokenizer]:
    """The SuperNet `--init-from` names, read once for the settings and the model of a new run."""
    return load_model_file(path)


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
    run: Path,
    settings: dict[str, Any],
    tokenizer: Tokenizer | None,
    device: torch.device,
    world: World,
    precision: Precision | None = None,
) -> tuple[Trainer, Tokenizer]:
    """The run's SuperNet and trainer; reads the corpus, writes nothing."""
    data_settings = DataSettings(**settings["data"])
    train_settings = TrainSettings(
        **{**settings["train"], "betas": tuple(settings["train"]["betas"])}
    )
    supernet = None
    if settings.get("init_from"):
        supernet, tokenizer = _inherited_from(settings["init_from"])
        _inherited_from.cache_clear()  # the model takes a copy of its weights
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
        device,
        world,
        precision,
    )
    return trainer, data.tokenizer


def _build_every_rank(
    run: Path, settings: dict[str, Any], tokenizer: Tokenizer | None, world: World
) -> tuple[Trainer, Tokenizer]:
    """Rank 0 builds first and hands its tokenizer (trained once, not raced for by every
    process or differently on every machine) and its resolved precision to the others."""
    built = _build_trainer(run, settings, tokenizer, world.device, world) if world.is_main else None
    shared = world.broadcast(
        (built[1].model_proto, built[0].precision.record()) if built is not None else None
    )
    if built is not None:
        return built
    proto, record = shared
    precision = Precision(
        record["precision"], world.device.type, record["requested"], record["reason"]
    )
    return _build_trainer(run, settings, Tokenizer(proto), world.device, world, precision)


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


@dataclass(frozen=True)
class TrainResult:
    """Where a training stands when the call returns: `model` (supernet.pt or model.pt) once it
    reached its last update, None when it paused (time limit, stop_at; resume to go on)."""

    run: Path
    step: int
    model: Path | None


def train(
    run: str | Path, *, resume: bool = False, progress: bool = True, **options: Any
) -> TrainResult:
    """Train into `run` (or continue it with `resume=True`) as `python -m automoe.train` does.

    Options are the command's flags: space="multi30k", arch="best.yaml", init_from=...,
    pairs="en-de,en-fr" (or a list), max_steps=1500, precision="bf16", threads=2, ...
    """
    argv = [
        f"--run={run}",
        *(["--resume"] if resume else []),
        *([] if progress else ["--no-progress"]),
    ]
    for key, value in options.items():
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        argv.append(f"--{key.replace('_', '-')}={value}")
    parser = build_parser()
    parser.exit_on_error = False

    def refuse(message: str) -> NoReturn:
        raise AutomoeError(f"train(): {message}")

    parser.error = refuse  # type: ignore[method-assign]
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        refuse(str(err))
    return run_training(vars(args), "automoe.train()")


def run_training(args: dict[str, Any], owner: str) -> TrainResult:
    """Nothing in the run folder is written until the settings, the data and (on --resume)
    a checkpoint are known good. `args` holds the options given (the parser's names); `owner`
    names this process to a second one the run folder's lock refuses.

    Under torchrun every process runs this (`automoe.train.distributed`): they check that
    they were given the same settings, train together, and only rank 0 prints and writes.
    """
    world = World.from_env()
    run = Path(args["run"])
    try:
        if not world.is_main:  # under torchrun, rank 0 holds the folder for every process
            return _start(run, args, world)
        with locked_folder(run, owner):
            return _start(run, args, world)
    finally:
        _inherited_from.cache_clear()  # a run that failed early must not keep the SuperNet


def _start(run: Path, args: dict[str, Any], world: World) -> TrainResult:
    resume = args.get("resume", False)
    if "threads" in args:
        torch.set_num_threads(args["threads"])
    settings = _resume_settings(run, args) if resume else _new_settings(run, args)
    planned_steps = settings["train"]["max_steps"]
    settings["train"]["max_steps"] = args.get("max_steps", planned_steps)
    if "data_dir" in args:
        settings["data_dir"] = str(Path(args["data_dir"]).resolve())
    with world.group(world.device_for(args.get("device", "auto"))):
        same = {k: v for k, v in settings.items() if k != "data_dir"}
        world.require_same("settings", {**same, "resume": resume, "stop_at": args.get("stop_at")})
        return _train(run, args, settings, planned_steps, world)


def _train(
    run: Path, args: dict[str, Any], settings: dict[str, Any], planned_steps: int, world: World
) -> TrainResult:
    resume = args.get("resume", False)
    say = print if world.is_main else _quiet
    tokenizer_path = run / TOKENIZER_FILE
    trainer, tokenizer = _build_every_rank(
        run,
        settings,
        Tokenizer.load(tokenizer_path) if resume and tokenizer_path.exists() else None,
        world,
    )
    max_steps = trainer.settings.max_steps
    if resume:
        notice = trainer.load_checkpoint()
        if notice:
            say(notice)
        if trainer.step >= max_steps:
            if trainer.step == planned_steps and _model_is_stale(trainer):
                name = _final_path(trainer).name
                say(f"{run}: training had finished; writing the {name} it did not save")
                if world.is_main:
                    _finish(trainer, tokenizer, {"step": trainer.step})
            else:
                say(f"{run}: already trained for {trainer.step} steps; raise --max-steps to go on")
            return _result(trainer)
        if args.get("stop_at", math.inf) <= trainer.step:
            raise AutomoeError(
                f"--stop-at {args['stop_at']}: the run is already at step {trainer.step}; "
                "give a later step"
            )
    if trainer.precision.notice():
        say(trainer.precision.notice())
    settings["precision"] = trainer.precision.record()
    if world.is_main:
        _record(run, settings, tokenizer)
    limit = args["time_limit"] * 60 if "time_limit" in args else None
    last = trainer.train(not args.get("no_progress", False), args.get("stop_at"), limit)
    if trainer.step < max_steps:
        say(f"paused at step {trainer.step}; continue with --run {run} --resume")
        return TrainResult(run, trainer.step, None)
    if world.is_main:
        _finish(trainer, tokenizer, last)
    return _result(trainer)


def _result(trainer: Trainer) -> TrainResult:
    model = _final_path(trainer)
    return TrainResult(trainer.run_dir, trainer.step, model if model.exists() else None)


def _quiet(*_: object) -> None:
    """`print` for the ranks that do not speak."""
