"""`python -m automoe.search`: search sub-networks of a SuperNet under cost constraints.

    python -m automoe.search --strategy evolution

With no other argument it runs the whole pipeline on Multi30k en-de: a short SuperNet
training, a latency dataset measured here, a latency predictor, then the search, reusing any
stage already in `--workdir`. `--supernet`, `--predictor`, `--space` and `--data-dir` replace
stages. Results land in `--run` (evaluations, Pareto front, best architecture, summary).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

from automoe.arch import ArchConfig
from automoe.constraints import COST_METRICS, Constraint
from automoe.cost import LatencySettings, latency_inputs, measure_latency
from automoe.data import Tokenizer
from automoe.errors import AutomoeError, run_cli
from automoe.pipeline import PipelineSettings, ensure_predictor, ensure_supernet
from automoe.plot import default_reference
from automoe.plots import load_run, plot_progress, plot_tradeoff
from automoe.predictors import CostPredictor
from automoe.runs import load_model_file
from automoe.scoring import METRICS, ArchScorer, ScorerPool, ScoringSettings
from automoe.search_costs import CostModel
from automoe.search_run import Budget, SearchLoop
from automoe.space import SearchSpace
from automoe.strategies import available, get_strategy
from automoe.supernet.model import extract
from automoe.supernet.supernet import SuperNet

SETTINGS_FILE = "search.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.search", description=__doc__)
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(available())}")
    p.add_argument("--run", help="search run folder (default: runs/search-STRATEGY-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run folder's search")
    p.add_argument("--workdir", default="runs/pipeline", help="where default stages live")
    p.add_argument("--supernet", help="trained SuperNet: run folder or file (skips training)")
    p.add_argument("--predictor", help="latency predictor file (skips the latency stages)")
    p.add_argument("--space", help="search space to search (default: the SuperNet's)")
    p.add_argument("--data-dir", help="folder holding multi30k/")
    p.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="e.g. latency_ms<=40, flops<=5e8, params<=2e6 (repeatable)",
    )
    p.add_argument(
        "--objectives",
        default="loss",
        help="'loss' under the constraints, or 'loss,latency_ms' for a Pareto front",
    )
    p.add_argument("--metric", choices=METRICS, default="loss", help="loss (default) or bleu")
    p.add_argument("--latency", choices=["predicted", "measured"], default="predicted")
    p.add_argument("--evaluations", type=int, help="architectures to score (default 300)")
    p.add_argument("--time-limit", type=float, help="minutes of scoring at most")
    p.add_argument("--batch", type=int, default=25, help="architectures scored per round")
    p.add_argument("--jobs", type=int, default=1, help="scoring worker processes")
    p.add_argument("--valid-size", type=int, default=200, help="validation sentences scored")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        help="strategy option KEY=VALUE, e.g. population=50 (repeatable)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
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


def _settings(args: argparse.Namespace, supernet: str, predictor: str | None) -> dict[str, Any]:
    return {
        "strategy": args.strategy,
        "seed": args.seed,
        "options": _options(args.option),
        "objectives": _objectives(args.objectives, args.metric),
        "metric": args.metric,
        "constraints": [Constraint.parse(c).to_dict() for c in args.constraint],
        "cost_metrics": list(COST_METRICS),
        "latency": args.latency,
        "supernet": str(Path(supernet).resolve()),
        "predictor": str(Path(predictor).resolve()) if predictor else None,
        "space": args.space,
        "evaluations": args.evaluations or 300,
        "valid_size": args.valid_size,
    }


def _costs(
    net: SuperNet, tokenizer: Tokenizer, settings: dict[str, Any], data_dir: str | None
) -> CostModel:
    predictor = CostPredictor.load(settings["predictor"]) if settings["predictor"] else None
    measure = None
    if settings["latency"] == "measured":
        protocol = LatencySettings()
        sources, targets = latency_inputs(tokenizer, data_dir, protocol)

        def measure(arch: ArchConfig) -> float:
            return measure_latency(extract(net, arch), sources, targets, protocol).latency_ms

    return CostModel(net.config.qkv_dim, net.config.vocab_size, predictor, measure)


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
    run = Path(args.run or f"runs/search-{args.strategy}-s{args.seed}")
    settings_path = run / SETTINGS_FILE
    if args.resume:
        if not settings_path.is_file():
            raise AutomoeError(f"{run} holds no search to resume (no {SETTINGS_FILE})")
        settings = json.loads(settings_path.read_text())
        if args.evaluations is not None:
            settings["evaluations"] = args.evaluations
            settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    else:
        if (run / "evaluations.jsonl").exists():
            raise AutomoeError(
                f"{run} already holds a search; add --resume to continue it or choose another --run"
            )
        for text in args.constraint:
            Constraint.parse(text)
        pipeline = PipelineSettings(
            workdir=Path(args.workdir), data_dir=args.data_dir, threads=args.threads
        )
        supernet = args.supernet or str(ensure_supernet(pipeline, progress=not args.no_progress))
        predictor = args.predictor
        wants_latency = any("latency" in c for c in args.constraint) or "latency" in args.objectives
        default_pipeline = args.supernet is None  # the whole pipeline includes its predictor
        if (
            predictor is None
            and args.latency == "predicted"
            and (wants_latency or default_pipeline)
        ):
            predictor = str(ensure_predictor(pipeline, supernet, progress=not args.no_progress))
        settings = _settings(args, supernet, predictor)

    net, tokenizer = load_model_file(settings["supernet"])
    if not isinstance(net, SuperNet):
        raise AutomoeError(f"{settings['supernet']} is an extracted model; search needs a SuperNet")
    space = SearchSpace.load(settings["space"]) if settings["space"] else net.space
    scoring = ScoringSettings(
        supernet=settings["supernet"],
        metric=settings["metric"],
        valid_size=settings["valid_size"],
        data_dir=args.data_dir,
        threads=max(1, args.threads // max(args.jobs, 1)),
    )
    pool = ScorerPool(scoring, args.jobs) if args.jobs > 1 else None
    local = None if pool else ArchScorer(scoring)
    scorer = pool.score if pool else (lambda archs: [local(a) for a in archs])  # type: ignore[misc]
    costs = _costs(net, tokenizer, settings, args.data_dir)
    if costs.predictor is not None:  # one fitted for another space would decide constraints
        costs.predictor.check_fits(space, settings["predictor"])
    constraints = [Constraint(**c) for c in settings["constraints"]]
    _check_reachable(space, costs, constraints)
    if not args.resume:
        run.mkdir(parents=True, exist_ok=True)
        settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    loop = SearchLoop(
        get_strategy(settings["strategy"])(
            space,
            settings["objectives"],
            seed=settings["seed"],
            is_feasible=None,
            **settings["options"],
        ),
        scorer,
        costs,
        constraints,
        settings["objectives"],
        run,
        Budget(settings["evaluations"], args.time_limit * 60 if args.time_limit else None),
        args.batch,
    )
    if constraints:
        loop.strategy.is_feasible = loop.is_feasible
    try:
        loop.resume()
        reference_path = run / "reference.json"
        if not reference_path.exists():
            reference_path.write_text(json.dumps(_references(net, scorer, costs), indent=2))
        started = time.perf_counter()
        loop.run(progress=not args.no_progress)
        wall = time.perf_counter() - started
    finally:
        if pool:
            pool.close()
    _write_results(loop, run, settings, wall)
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


def _write_results(loop: SearchLoop, run: Path, settings: dict[str, Any], wall: float) -> None:
    rows = loop.rows
    measured = [c for c in COST_METRICS if any(r.get(c) is not None for r in rows)]
    fronts = {cost: loop.front(cost) for cost in measured}
    (run / "pareto.json").write_text(
        json.dumps({cost: [r["arch_key"] for r in front] for cost, front in fronts.items()})
    )
    best = loop.best()
    if best is not None:
        (run / "best.yaml").write_text(yaml.safe_dump(best["arch"], sort_keys=False))
    summary = {
        "evaluations": len(rows),
        "feasible": sum(1 for r in rows if r["feasible"]),
        "best": None if best is None else {k: v for k, v in best.items() if k != "arch"},
        "front_sizes": {cost: len(front) for cost, front in fronts.items()},
        "wall_s": wall,
        "ms_per_evaluation": 1000 * sum(r["eval_s"] for r in rows) / max(len(rows), 1),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if settings["metric"] == "loss" and rows:
        record = load_run(run)
        for cost in measured:
            plot_tradeoff([record], run / "plots", cost=cost)
        if "latency_ms" in measured:
            reference, _ = default_reference([record], "latency_ms")
            plot_progress([record], run / "plots", reference, cost="latency_ms")
    print(
        f"{settings['strategy']}: {len(rows)} architectures scored, {summary['feasible']} feasible"
    )
    if best is None:
        print("no feasible architecture found")
        return
    metric = settings["metric"]
    print(f"{'best':10} {metric:>8} {'latency_ms':>10} {'flops':>10} {'params':>10}")
    lat = best.get("latency_ms")
    print(
        f"{best['arch_key']:10.10} {best[metric]:8.4f} "
        f"{'-' if lat is None else f'{lat:.2f}':>10} {best['flops']:10.3g} {best['params']:10.3g}"
    )
    print(f"wrote {run}/best.yaml, evaluations.csv, pareto.json, summary.json")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
