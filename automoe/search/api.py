"""`search(...)`: one architecture search from Python; `python -m automoe.search` is a thin layer
over it, so a notebook and the command line run the same search and write the same run folder.

    import automoe
    result = automoe.search("evolution", supernet="runs/m30k", constraints=["latency_ms<=80"],
                            evaluations=100, run="runs/search-evo")
    result.best            # the ArchConfig to train
    result.front           # Pareto front rows, cheapest first (with objectives = loss + costs)
    result.evaluations     # every scored architecture: scores, costs, feasibility

Without `supernet` (and `predictor`) the default pipeline builds them in `workdir` first: a short
SuperNet training on Multi30k en-de, a latency dataset measured here and a predictor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from automoe.constraints import COST_METRICS, Constraint
from automoe.data import Tokenizer
from automoe.errors import AutomoeError
from automoe.files import locked_folder, write_text_atomic
from automoe.latency import LatencySettings, latency_inputs, measure_latency
from automoe.precision import FP32, Precision, resolve_precision
from automoe.predictors import CostPredictor
from automoe.runs import load_model_file
from automoe.search.costs import CostModel
from automoe.search.loop import Budget, SearchLoop
from automoe.search.pipeline import PipelineSettings, ensure_predictor, ensure_supernet
from automoe.search.request import (
    DEFAULT_BATCH,
    DEFAULT_EVALUATIONS,
    DEFAULT_HEARTBEAT,
    SearchRequest,
    parse_objectives,
)
from automoe.search.results import SearchResult, write_results
from automoe.search.scoring import ArchScorer, ScorerPool, ScoringSettings
from automoe.search.shared import SharedLoop
from automoe.search.storage import SharedStudy, peek_settings, shown_url
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies import Strategy, get_strategy
from automoe.supernet.model import extract
from automoe.supernet.supernet import SuperNet

SETTINGS_FILE = "search.json"
REFERENCE_FILE = "reference.json"


def search(
    strategy: str = "evolution",
    *,
    run: str | Path | None = None,
    constraints: Sequence[str | Constraint] = (),
    objectives: str | Sequence[str] | None = None,
    evaluations: int | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    **settings: Any,
) -> SearchResult:
    """Run (or with `resume=True` continue) one search and return its result.

    Other keyword settings are `SearchRequest`'s fields: supernet, predictor, space, data_dir,
    workdir, metric, latency, time_limit_s, batch, jobs, valid_size, precision, threads, progress,
    and storage, study, worker, heartbeat for a search shared by several workers.
    """
    unknown = sorted(set(settings) - set(SearchRequest.__dataclass_fields__))
    if unknown:
        fields = ", ".join(SearchRequest.__dataclass_fields__)
        raise AutomoeError(f"search() got unknown setting(s) {unknown}; settings: {fields}")
    if not isinstance(objectives, str | None):
        objectives = ",".join(objectives)
    request = SearchRequest(
        strategy=strategy,
        run=None if run is None else Path(run),
        constraints=tuple(str(c) for c in constraints),
        objectives=objectives,
        evaluations=evaluations,
        options=dict(options or {}),
        seed=seed,
        **settings,
    )
    return run_search(request)


def run_search(request: SearchRequest, owner: str = "automoe.search()") -> SearchResult:
    """The search `request` describes, holding its run folder against a second process (named
    `owner` in the refusal the other one gets): settings fixed (or read back on resume), inputs
    checked, then the loop; the run folder changes only once every input has been used."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial drowns the bar
    torch.set_num_threads(request.threads)
    with locked_folder(request.folder, owner):
        return _run(request)


def _run(request: SearchRequest) -> SearchResult:
    run = request.folder
    if request.storage is not None:
        settings = _new_settings(request, peek_settings(request.storage, request.study))
    else:
        settings = _resumed_settings(request) if request.resume else _new_settings(request)
    net, tokenizer = load_model_file(settings["supernet"])
    if not isinstance(net, SuperNet):
        raise AutomoeError(f"{settings['supernet']} is an extracted model; search needs a SuperNet")
    space = _space(settings["space"], net)
    precision = _precision(settings)
    if precision.notice():
        print(precision.notice())
    costs = _costs(net, tokenizer, settings, request.data_dir, precision)
    if costs.predictor is not None:  # one fitted for another space would decide constraints
        costs.predictor.check_fits(
            space,
            settings["predictor"],
            precision=precision.name,
            allow_other_precision=request.allow_precision_mismatch,
        )
    constraints = [Constraint(**c) for c in settings["constraints"]]
    _check_reachable(space, costs, constraints)
    scoring = ScoringSettings(
        supernet=settings["supernet"],
        metric=settings["metric"],
        valid_size=settings["valid_size"],
        data_dir=request.data_dir,
        threads=max(1, request.threads // request.jobs),
        precision=precision.name,
    )
    pool = ScorerPool(scoring, request.jobs) if request.jobs > 1 else None
    local = None if pool else ArchScorer(scoring)
    scorer = pool.score if pool else (lambda archs: [local(a) for a in archs])  # type: ignore[misc]
    strategy = get_strategy(settings["strategy"])(
        space,
        settings["objectives"],
        seed=settings["seed"],
        is_feasible=None,
        **settings["options"],
    )
    budget = Budget(settings["evaluations"], request.time_limit_s)
    common = (strategy, scorer, costs, constraints, settings["objectives"], run, budget)
    shared = (
        SharedStudy(request.storage, request.study, request.worker) if request.storage else None
    )
    loop = (
        SharedLoop(*common, settings["batch"], study=shared, claims=request.jobs)
        if shared
        else SearchLoop(*common, request.batch or DEFAULT_BATCH)
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
        loop.run(progress=request.progress)
        wall = time.perf_counter() - started
    finally:
        if pool:
            pool.close()
    if isinstance(loop, SharedLoop):
        loop.rows = loop.record()  # the whole shared record, this worker's share within it
        loop.log.rewrite(loop.rows)
    write_results(loop, run, settings, wall)
    if isinstance(loop, SharedLoop) and shared is not None:
        print(
            f"{request.worker} scored {loop.scored} of them; the search is in {shared.shown} "
            f"as study {request.study!r}"
        )
    return SearchResult.load(run)


def _strategy_options(
    cls: type[Strategy], options: Mapping[str, Any], evaluations: int
) -> dict[str, Any]:
    """The user's options, plus `budget` = the evaluations for a strategy that takes one
    (evolution scales its generations to it, Nevergrad plans for it) unless the user set it."""
    takes_budget = any("budget" in vars(k).get("defaults", {}) for k in cls.__mro__)
    if takes_budget and "budget" not in options:
        return {**options, "budget": evaluations}
    return dict(options)


def _new_settings(request: SearchRequest, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings of a new search, every argument checked before any pipeline stage runs; for a
    worker of a shared search, its settings, taking what it leaves out from `stored` (the
    study's, when the study exists)."""
    run = request.folder
    shared = request.storage is not None
    stored = stored or {}
    if not shared and ((run / SETTINGS_FILE).exists() or (run / "evaluations.jsonl").exists()):
        raise AutomoeError(
            f"{run} already holds a search; resume it (--resume) or choose another run folder"
        )
    constraints = [Constraint.parse(c) for c in request.constraints]
    objectives = parse_objectives(request.objective_text(), request.metric)
    evaluations = request.evaluations or stored.get("evaluations") or DEFAULT_EVALUATIONS
    strategy = get_strategy(request.strategy)
    options = _strategy_options(strategy, request.options, evaluations)
    precision = resolve_precision(request.precision)
    pipeline = PipelineSettings(
        workdir=Path(request.workdir),
        space=request.space or PipelineSettings.space,
        data_dir=request.data_dir,
        threads=request.threads,
        precision=precision.name,
    )
    supernet = request.supernet or str(ensure_supernet(pipeline, progress=request.progress))
    predictor = request.predictor
    wants_latency = "latency_ms" in objectives or any(c.metric == "latency_ms" for c in constraints)
    default_pipeline = request.supernet is None  # the whole pipeline includes its predictor
    if predictor is None and request.latency == "predicted" and (wants_latency or default_pipeline):
        predictor = str(ensure_predictor(pipeline, supernet, progress=request.progress))
    return {
        "strategy": request.strategy,
        "seed": request.seed,
        "options": options,
        "objectives": objectives,
        "metric": request.metric,
        "constraints": [c.to_dict() for c in constraints],
        "cost_metrics": list(COST_METRICS),
        "latency": request.latency,
        "supernet": str(Path(supernet).resolve()),
        "predictor": str(Path(predictor).resolve()) if predictor else None,
        "space": request.space,
        "evaluations": evaluations,
        "valid_size": request.valid_size,
        "precision": request.precision,
        "precision_used": precision.record(),
        **(
            {
                "storage": shown_url(request.storage),
                "study": request.study,
                "worker": request.worker,
                "batch": request.batch or stored.get("batch") or DEFAULT_BATCH,
                "heartbeat": request.heartbeat or stored.get("heartbeat") or DEFAULT_HEARTBEAT,
                "scoring_precision": precision.name,
            }
            if shared
            else {}
        ),
    }


def _resumed_settings(request: SearchRequest) -> dict[str, Any]:
    """The run's own settings; `evaluations` may move its budget (written once it runs)."""
    path = request.folder / SETTINGS_FILE
    if not path.is_file():
        raise AutomoeError(f"{request.folder} holds no search to resume (no {SETTINGS_FILE})")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AutomoeError(f"{path} is not valid JSON ({err}); start a new run") from None
    if request.evaluations is not None:
        settings["evaluations"] = request.evaluations
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
