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
from pathlib import Path
from typing import Any

import yaml

from automoe.argtypes import nonnegative_int, positive_float, positive_int
from automoe.errors import AutomoeError, run_cli
from automoe.precision import add_precision_option
from automoe.search.api import run_search
from automoe.search.request import (
    DEFAULT_BATCH,
    DEFAULT_EVALUATIONS,
    DEFAULT_FRONT,
    DEFAULT_HEARTBEAT,
    SearchRequest,
)
from automoe.search.results import report_lines
from automoe.search.scoring import METRICS
from automoe.strategies import available


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = SearchRequest(
        strategy=args.strategy,
        run=None if args.run is None else Path(args.run),
        resume=args.resume,
        supernet=args.supernet,
        predictor=args.predictor,
        space=args.space,
        data_dir=args.data_dir,
        workdir=Path(args.workdir),
        constraints=tuple(args.constraint),
        objectives=args.objectives,
        metric=args.metric,
        latency=args.latency,
        evaluations=args.evaluations,
        time_limit_s=args.time_limit * 60 if args.time_limit else None,
        batch=args.batch,
        jobs=args.jobs,
        valid_size=args.valid_size,
        seed=args.seed,
        options=_options(args.option),
        precision=args.precision,
        allow_precision_mismatch=args.allow_precision_mismatch,
        threads=args.threads,
        progress=not args.no_progress,
        storage=args.storage,
        study=args.study,
        worker=args.worker,
        heartbeat=args.heartbeat,
    )
    print("\n".join(report_lines(run_search(request, "python -m automoe.search"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
