"""`python -m automoe.search`: search sub-networks of a SuperNet under cost constraints.

    python -m automoe.search --strategy evolution

With no other argument it runs the whole pipeline on Multi30k en-de: a short SuperNet
training, a latency dataset measured here, a latency predictor, then the search, reusing any
stage already in `--workdir`. `--space` chooses the space those stages train, measure and
search (one `--workdir` per space); `--supernet`, `--predictor` and `--data-dir` replace stages.
Results land in `--run` (evaluations, Pareto front, best architecture, summary).
With `--storage URL --study NAME` the search lives in an Optuna storage instead, shared by every
worker that names it (`automoe.search.shared`); the run folder then receives this worker's copy
of the results.
Without `--objectives` or `--constraint` the search answers "what is the best model for each
latency budget" (loss and latency together); with a constraint, "the best model under it".
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

from automoe.argtypes import nonnegative_int, positive_float, positive_int
from automoe.constraints import COST_METRICS, Constraint
from automoe.data import Tokenizer
from automoe.errors import AutomoeError, run_cli
from automoe.files import locked_folder, write_text_atomic
from automoe.latency import LatencySettings, latency_inputs, measure_latency
from automoe.precision import FP32, Precision, add_precision_option, resolve_precision
from automoe.predictors import CostPredictor
from automoe.runs import load_model_file
from automoe.search.costs import CostModel
from automoe.search.loop import Budget, SearchLoop
from automoe.search.pipeline import PipelineSettings, ensure_predictor, ensure_supernet
from automoe.search.results import write_results
from automoe.search.scoring import METRICS, ArchScorer, ScorerPool, ScoringSettings
from automoe.search.shared import SharedLoop
from automoe.search.storage import SharedStudy, peek_settings, shown_url
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies import Strategy, available, get_strategy
from automoe.supernet.model import extract
from automoe.supernet.supernet import SuperNet

SETTINGS_FILE = "search.json"
REFERENCE_FILE = "reference.json"
DEFAULT_EVALUATIONS = 300
DEFAULT_BATCH = 25
DEFAULT_HEARTBEAT = 10
# Options of the Optuna strategies that place their own study: a shared search is its own study.
STUDY_OPTIONS = ("storage_url", "journal_path", "study_name", "worker_index", "heartbeat_interval")
DEFAULT_FRONT = "loss,latency_ms"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.search", description=__doc__)
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(available())}")
    p.add_argument(
        "--run",
        help="search run folder (default: runs/search-STRATEGY-sSEED; with --storage, "
        "runs/search-STUDY/WORKER)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run folder's search")
    p.add_argument("--workdir", default="runs/pipeline", help="where default stages live")
    p.add_argument("--supernet", help="trained SuperNet: run folder or file (skips training)")
    p.add_argument("--predictor", help="latency predictor file (skips the latency stages)")
    p.add_argument(
        "--space",
        help="search space to search (default: the SuperNet's); without --supernet, the "
        "pipeline trains its SuperNet on it (one --workdir per space)",
    )
    p.add_argument("--data-dir", help="folder holding multi30k/")
    p.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="e.g. latency_ms<=40, flops<=5e8, params<=2e6 (repeatable)",
    )
    p.add_argument(
        "--objectives",
        help="'loss' (under the constraints), or 'loss,latency_ms' for a Pareto front; default: "
        f"loss with a --constraint, else {DEFAULT_FRONT}",
    )
    p.add_argument("--metric", choices=METRICS, default="loss", help="loss (default) or bleu")
    p.add_argument("--latency", choices=["predicted", "measured"], default="predicted")
    p.add_argument(
        "--evaluations",
        type=positive_int,
        help=f"architectures to score (default {DEFAULT_EVALUATIONS}; with --resume, the run's)",
    )
    p.add_argument("--time-limit", type=positive_float, help="minutes of scoring at most")
    p.add_argument(
        "--batch", type=positive_int, help=f"architectures per round (default {DEFAULT_BATCH})"
    )
    p.add_argument("--jobs", type=positive_int, default=1, help="scoring worker processes")
    p.add_argument(
        "--valid-size", type=positive_int, default=200, help="validation sentences scored"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        help="strategy option KEY=VALUE, e.g. population=50 (repeatable)",
    )
    add_precision_option(p, "of scoring and measured latency")
    p.add_argument(
        "--allow-precision-mismatch",
        action="store_true",
        help="use a latency predictor fitted on latencies of another precision anyway",
    )
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="keep the search in this Optuna storage, shared by every worker naming it and "
        "--study: sqlite:///search.db, postgresql://USER@HOST/DB, or a journal file's path",
    )
    p.add_argument("--study", help="the search's name in --storage")
    p.add_argument("--worker", help="this worker's name in the record (default: HOST-PID)")
    p.add_argument(
        "--heartbeat",
        type=positive_int,
        help=f"seconds between a worker's heartbeats (default {DEFAULT_HEARTBEAT}); others "
        "retry the architectures of a worker silent for three",
    )
    return p


def _options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AutomoeError(f"--option {item!r}: write KEY=VALUE, e.g. population=50")
        out[key] = yaml.safe_load(value)
    return out


def _objectives(text: str, metric: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names[0] not in ("loss", "bleu"):
        raise AutomoeError(f"--objectives {text!r}: start with loss (e.g. loss,latency_ms)")
    names[0] = metric
    for extra in names[1:]:
        if extra not in COST_METRICS:
            raise AutomoeError(f"--objectives: unknown {extra!r}; choices: {list(COST_METRICS)}")
    return names


def _objectives_text(args: argparse.Namespace) -> str:
    """--objectives as given; else the loss under the constraints; else, with no constraint,
    the loss and latency together: the single lowest loss is then simply one of the largest
    sub-networks, while a front answers "what is the best model for each latency budget"."""
    if args.objectives is not None:
        return args.objectives
    return "loss" if args.constraint else DEFAULT_FRONT


def _strategy_options(
    cls: type[Strategy], options: dict[str, Any], evaluations: int
) -> dict[str, Any]:
    """The user's options, plus `budget` = the evaluations for a strategy that takes one
    (evolution scales its generations to it, Nevergrad plans for it) unless the user set it."""
    takes_budget = any("budget" in vars(k).get("defaults", {}) for k in cls.__mro__)
    if takes_budget and "budget" not in options:
        return {**options, "budget": evaluations}
    return options


def _new_settings(
    run: Path, args: argparse.Namespace, stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Settings of a new search, every argument checked before any pipeline stage runs; for a
    worker of a shared search, its settings, taking what it leaves out from `stored` (the
    study's, when the study exists)."""
    shared = args.storage is not None
    if not shared and ((run / SETTINGS_FILE).exists() or (run / "evaluations.jsonl").exists()):
        raise AutomoeError(
            f"{run} already holds a search; add --resume to continue it or choose another --run"
        )
    stored = stored or {}
    constraints = [Constraint.parse(c) for c in args.constraint]
    objectives = _objectives(_objectives_text(args), args.metric)
    evaluations = args.evaluations or stored.get("evaluations") or DEFAULT_EVALUATIONS
    options = _strategy_options(get_strategy(args.strategy), _options(args.option), evaluations)
    precision = resolve_precision(args.precision)
    pipeline = PipelineSettings(
        workdir=Path(args.workdir),
        space=args.space or PipelineSettings.space,
        data_dir=args.data_dir,
        threads=args.threads,
        precision=precision.name,
    )
    supernet = args.supernet or str(ensure_supernet(pipeline, progress=not args.no_progress))
    predictor = args.predictor
    wants_latency = "latency_ms" in objectives or any(c.metric == "latency_ms" for c in constraints)
    default_pipeline = args.supernet is None  # the whole pipeline includes its predictor
    if predictor is None and args.latency == "predicted" and (wants_latency or default_pipeline):
        predictor = str(ensure_predictor(pipeline, supernet, progress=not args.no_progress))
    return {
        "strategy": args.strategy,
        "seed": args.seed,
        "options": options,
        "objectives": objectives,
        "metric": args.metric,
        "constraints": [c.to_dict() for c in constraints],
        "cost_metrics": list(COST_METRICS),
        "latency": args.latency,
        "supernet": str(Path(supernet).resolve()),
        "predictor": str(Path(predictor).resolve()) if predictor else None,
        "space": args.space,
        "evaluations": evaluations,
        "valid_size": args.valid_size,
        "precision": args.precision,
        "precision_used": precision.record(),
        **(
            {
                "storage": shown_url(args.storage),
                "study": args.study,
                "worker": args.worker,
                "batch": args.batch or stored.get("batch") or DEFAULT_BATCH,
                "heartbeat": args.heartbeat or stored.get("heartbeat") or DEFAULT_HEARTBEAT,
                "scoring_precision": precision.name,
            }
            if shared
            else {}
        ),
    }


def _check_shared(args: argparse.Namespace) -> None:
    """Refuse, before the storage is opened, what would make the workers of one shared search
    record different things."""
    if not args.study:
        raise AutomoeError("--storage needs --study NAME, the search's name in the storage")
    if args.latency == "measured":
        raise AutomoeError(
            "--storage with --latency measured: each worker would time architectures on its own "
            "machine, beside the others' scoring; fit a latency predictor and pass --predictor"
        )
    if args.supernet is None:
        raise AutomoeError(
            "--storage needs --supernet (and --predictor): every worker must score with the same "
            "files, and workers started together would each train the default pipeline; build it "
            "once with a search without --storage, then pass --supernet runs/pipeline/supernet "
            "--predictor runs/pipeline/latency.predictor"
        )
    objectives = _objectives(_objectives_text(args), args.metric)
    constraints = [Constraint.parse(c) for c in args.constraint]
    wants_latency = "latency_ms" in objectives or any(c.metric == "latency_ms" for c in constraints)
    if wants_latency and args.predictor is None:
        raise AutomoeError("--storage with latency objectives or constraints needs --predictor")
    placed = sorted(set(_options(args.option)) & set(STUDY_OPTIONS))
    if placed:
        raise AutomoeError(
            f"--option {placed[0]}: with --storage the search's study is the shared record and "
            "every worker rebuilds the strategy from it; drop the option"
        )


def _resumed_settings(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The run's own settings; `--evaluations` may move its budget (written once it runs)."""
    path = run / SETTINGS_FILE
    if not path.is_file():
        raise AutomoeError(f"{run} holds no search to resume (no {SETTINGS_FILE})")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AutomoeError(f"{path} is not valid JSON ({err}); start a new run") from None
    if args.evaluations is not None:
        settings["evaluations"] = args.evaluations
    return settings


def _space(name: str | None, net: SuperNet) -> SearchSpace:
    """The SuperNet's space, or a space every architecture of which the SuperNet holds."""
    if not name:
        return net.space
    space = SearchSpace.load(name)
    problem = None
    if space.qkv_dim != net.config.qkv_dim:
        problem = f"its qkv_dim {space.qkv_dim} is not the SuperNet's {net.config.qkv_dim}"
    missing = set(space.routing_modes()) - {"token"} - set(net.config.routers)
    if missing:
        problem = f"it routes by {sorted(missing)}, which the SuperNet has no routers for"
    try:
        net.check_arch(space.largest())
    except AutomoeError as err:
        problem = problem or f"its largest {err}"
    if problem:
        raise AutomoeError(
            f"--space {name}: {problem}; search a space within the SuperNet's ({net.space.name})"
        )
    return space


def _precision(settings: dict[str, Any]) -> Precision:
    """The precision the search scores in: resolved once when it starts (searches from before
    `--precision` scored in fp32), so a resumed search keeps it."""
    used = settings.get("precision_used") or FP32.record()
    return Precision(used["precision"], "cpu", used["requested"], used["reason"])


def _costs(
    net: SuperNet,
    tokenizer: Tokenizer,
    settings: dict[str, Any],
    data_dir: str | None,
    precision: Precision,
) -> CostModel:
    predictor = CostPredictor.load(settings["predictor"]) if settings["predictor"] else None
    measure = None
    if settings["latency"] == "measured":
        protocol = LatencySettings()
        inputs = latency_inputs(tokenizer, data_dir, protocol)

        def measure(arch: ArchConfig) -> float:
            model = precision.for_inference(extract(net, arch))
            with precision.autocast():
                return measure_latency(model, inputs, protocol).latency_ms

    return CostModel(
        net.config.qkv_dim,
        net.config.vocab_size,
        predictor,
        measure,
        num_tasks=net.config.num_tasks,
    )


def _references(net: SuperNet, scorer: Any, costs: CostModel) -> dict[str, Any]:
    """Largest, smallest and a dense baseline (largest with one expert per layer), scored."""
    space = net.space
    largest = space.largest()
    dense = ArchConfig.from_dict(
        {
            **largest.to_dict(),
            "encoder_ffn_dims": [[max(layer)] for layer in largest.encoder_ffn_dims],
            "decoder_ffn_dims": [[max(layer)] for layer in largest.decoder_ffn_dims],
            "encoder_top_k": [1] * largest.encoder_layers,
            "decoder_top_k": [1] * largest.decoder_layers,
        }
    )
    archs = {"largest": largest, "smallest": space.smallest(), "dense": dense}
    scores = scorer(list(archs.values()))
    out = {}
    for (name, arch), score in zip(archs.items(), scores, strict=True):
        out[name] = {**score, **costs.costs(arch), "arch": arch.to_dict()}
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    get_strategy(args.strategy)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial drowns the bar
    torch.set_num_threads(args.threads)
    if args.storage is not None:
        _check_shared(args)
        args.worker = args.worker or f"{socket.gethostname()}-{os.getpid()}"
        run = Path(args.run or f"runs/search-{args.study}/{args.worker}")
    else:
        run = Path(args.run or f"runs/search-{args.strategy}-s{args.seed}")
    with locked_folder(run, "python -m automoe.search"):
        return _search(run, args)


def _search(run: Path, args: argparse.Namespace) -> int:
    if args.storage is not None:
        settings = _new_settings(run, args, peek_settings(args.storage, args.study))
    else:
        settings = _resumed_settings(run, args) if args.resume else _new_settings(run, args)
    net, tokenizer = load_model_file(settings["supernet"])
    if not isinstance(net, SuperNet):
        raise AutomoeError(f"{settings['supernet']} is an extracted model; search needs a SuperNet")
    space = _space(settings["space"], net)
    precision = _precision(settings)
    if precision.notice():
        print(precision.notice())
    costs = _costs(net, tokenizer, settings, args.data_dir, precision)
    if costs.predictor is not None:  # one fitted for another space would decide constraints
        costs.predictor.check_fits(
            space,
            settings["predictor"],
            precision=precision.name,
            allow_other_precision=args.allow_precision_mismatch,
        )
    constraints = [Constraint(**c) for c in settings["constraints"]]
    _check_reachable(space, costs, constraints)
    scoring = ScoringSettings(
        supernet=settings["supernet"],
        metric=settings["metric"],
        valid_size=settings["valid_size"],
        data_dir=args.data_dir,
        threads=max(1, args.threads // args.jobs),
        precision=precision.name,
    )
    pool = ScorerPool(scoring, args.jobs) if args.jobs > 1 else None
    local = None if pool else ArchScorer(scoring)
    scorer = pool.score if pool else (lambda archs: [local(a) for a in archs])  # type: ignore[misc]
    strategy = get_strategy(settings["strategy"])(
        space,
        settings["objectives"],
        seed=settings["seed"],
        is_feasible=None,
        **settings["options"],
    )
    budget = Budget(settings["evaluations"], args.time_limit * 60 if args.time_limit else None)
    common = (strategy, scorer, costs, constraints, settings["objectives"], run, budget)
    shared = SharedStudy(args.storage, args.study, args.worker) if args.storage else None
    loop = (
        SharedLoop(*common, settings["batch"], study=shared, claims=args.jobs)
        if shared
        else SearchLoop(*common, args.batch or DEFAULT_BATCH)
    )
    if constraints:
        loop.strategy.is_feasible = loop.is_feasible
    try:
        loop.resume()  # also checks the strategy's options
        reference_path = run / REFERENCE_FILE
        references = None if reference_path.exists() else _references(net, scorer, costs)
        if shared:
            settings["searched_space"] = space.to_dict()
            shared.start(settings)
            references = references or json.loads(reference_path.read_text())
            shared.check_references(references)
        # Every input has now been used once: only from here on does the run folder change.
        write_text_atomic(run / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
        if references is not None:
            write_text_atomic(reference_path, json.dumps(references, indent=2) + "\n")
        started = time.perf_counter()
        loop.run(progress=not args.no_progress)
        wall = time.perf_counter() - started
    finally:
        if pool:
            pool.close()
    if isinstance(loop, SharedLoop):
        loop.rows = loop.record()  # the whole shared record, this worker's share within it
        loop.log.rewrite(loop.rows)
    write_results(loop, run, settings, wall)
    if isinstance(loop, SharedLoop):
        print(
            f"{args.worker} scored {loop.scored} of them; the search is in {shared.shown} "
            f"as study {args.study!r}"
        )
    return 0


def _check_reachable(space: SearchSpace, costs: CostModel, constraints: list[Constraint]) -> None:
    """Refuse at once a constraint that even the cheapest corner of the space breaks."""
    smallest = space.smallest()
    for c in constraints:
        value = costs.cost(smallest, c.metric)
        if c.violation(value) > 0:
            raise AutomoeError(
                f"constraint {c} cannot be met: the smallest architecture of the space already "
                f"has {c.metric} = {value:.4g}; relax the bound or search a smaller space"
            )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
