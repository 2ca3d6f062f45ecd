"""The AutoMoE headline on Multi30k en-de: every stage of the paper's main comparison, one
command, resumable.

    python benchmarks/bench_multi30k.py --supernet runs/m30k-ende --time-limit 600
    python benchmarks/bench_multi30k.py --quick          # every stage at toy size (~2.5 min)

The full run costs about 40 CPU-hours, some 20 hours on 2 idle cores (a SuperNet trained
here adds about 1.5 hours): 18 trainings of 3000 updates (1 thread: 3.3 s per update for
the dense model, 3.5 for Switch, less for the searched ones), 29 beam-4 test evaluations,
four searches of 300 architectures, a latency dataset of 120 and the timing runs. Repeat
the same command until it says every stage is done; each invocation writes the report.

Stages (each writes under --work and is skipped once its output exists): the SuperNet
(or --supernet), a latency dataset and predictor (or --predictor), the dense and Switch
baselines, the dense model's latency and bounds at 1/2 and 1/3 of it, four searches
(AutoMoE at 1/2 and 1/3, random and HAT-style dense at 1/2), the final training of every
model from scratch (--seeds) plus the AutoMoE winners fine-tuned from the SuperNet, test BLEU
and chrF, latency and throughput of all models interleaved, and the SuperNet as an estimator
of from-scratch quality. Writes multi30k.md and multi30k.json into --results after every
invocation, with "pending" for what is not done yet, and prints the command to continue.

Finished work outlives the machine: after every stage the small result files of --work
(scores, metrics, search records, timings) are copied into --results/multi30k/ledger, to be
committed with the report, and a new invocation on a new machine copies them back, so a
finished training counts as done without its model file. --supernet needs only the run
folder's settings for the trainings; the ledger keeps them, puts them back on a new machine,
and there trains the SuperNet again from them (alone, before the stages that need its
weights: the estimator evaluations, timing and fine-tuning). Any finished stage whose big
output another machine made and a stage still to do needs (a search's candidates, for the
front) runs again. Where the machine keeps nothing between sessions, a stage cut off by the
session is lost: `--only 'train automoe-*-s1,eval *'` starts only the stages chosen to end
in the time at hand.

Library commands run as background processes, --jobs at a time with one thread each;
timing stages run alone. With --time-limit, nothing starts that cannot checkpoint before
the limit, trainings and searches get the time that is left, and what still runs at the
limit is stopped (its checkpoint is kept); the next invocation continues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS, machine_info
from multi30k import report, reused
from multi30k.plan import Inputs, Plan
from multi30k.results import Collector
from multi30k.settings import Layout, sizes_for
from staged.command import add_run_arguments, here, parse_seeds, run_plan

from automoe.argtypes import positive_int
from automoe.data.registry import resolve_dataset_dir
from automoe.errors import AutomoeError, run_cli
from automoe.files import locked_folder
from automoe.runs import RUN_FILE, read_run_file
from automoe.space import SearchSpace


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_multi30k.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="every stage at toy size (minutes)")
    p.add_argument("--work", type=Path, help="stage outputs (default runs/multi30k-bench[-quick])")
    p.add_argument(
        "--results",
        type=Path,
        help="report folder (default benchmarks/results; quick: WORK/results)",
    )
    p.add_argument("--space", default="multi30k", help="search space: preset or YAML file")
    p.add_argument(
        "--supernet",
        type=Path,
        help="reuse this SuperNet run folder (trained, or at least started)",
    )
    p.add_argument("--predictor", type=Path, help="reuse this latency predictor file")
    p.add_argument("--data-dir", help="folder holding multi30k/ (else $AUTOMOE_DATA_DIR)")
    p.add_argument("--evaluations", type=positive_int, help="per search (default 300)")
    p.add_argument("--final-steps", type=positive_int, help="updates per final model (3000)")
    p.add_argument("--seeds", help="comma-separated seeds of the final trainings (1,2)")
    p.add_argument("--estimator-points", type=positive_int, help="front points trained (4)")
    p.add_argument("--latency-threads", type=positive_int, default=2, help="threads when timing")
    add_run_arguments(p)
    return p


def _check_inputs(args: argparse.Namespace) -> None:
    """Refuse a missing corpus and reused stages that do not fit, before anything is written
    (otherwise every stage would start, fail on the same missing corpus and log it)."""
    resolve_dataset_dir(data_dir=args.data_dir)
    space = SearchSpace.load(args.space)
    if args.supernet is not None:
        if not (args.supernet / RUN_FILE).is_file():
            raise AutomoeError(
                f"--supernet {args.supernet}: no SuperNet run there (no {RUN_FILE}); give "
                "the folder of its training, or leave --supernet out to train one"
            )
        if read_run_file(args.supernet)["space"] != space.to_dict():
            raise AutomoeError(
                f"--supernet {args.supernet} was trained on another space than --space "
                f"{args.space}; pass the space it was trained on"
            )
    if args.predictor is not None and not args.predictor.is_file():
        raise AutomoeError(f"--predictor {args.predictor}: no such file")


def _shown(path: Path | None) -> str | None:
    """A reused input as the settings record it: relative to the working directory, links
    kept (the ledger carries the settings to other machines, where absolute paths differ)."""
    return None if path is None else str(here(path.absolute()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    sizes = sizes_for(
        args.quick,
        evaluations=args.evaluations,
        final_steps=args.final_steps,
        seeds=parse_seeds(args.seeds),
        estimator_points=args.estimator_points,
    )
    work = args.work or Path("runs/multi30k-bench-quick" if args.quick else "runs/multi30k-bench")
    layout = Layout(work, args.results or (work / "results" if args.quick else here(RESULTS)))
    if args.supernet is not None and reused.restore_settings(args.supernet, layout.ledger):
        print(f"restored the settings of SuperNet {args.supernet} from {layout.ledger}")
    _check_inputs(args)
    inputs = Inputs(
        args.space,
        args.supernet,
        args.predictor,
        args.data_dir,
        args.jobs,
        args.latency_threads,
    )
    settings = {
        "space": SearchSpace.load(args.space).to_dict(),
        "supernet": _shown(args.supernet),
        "predictor": _shown(args.predictor),
        "sizes": sizes.fixed(),
    }
    with locked_folder(work, "bench_multi30k.py"):  # two would train into the same runs
        plan = Plan(sizes, layout, inputs)
        return run_plan(
            plan,
            args,
            argv,
            "benchmarks/bench_multi30k.py",
            machine_info(args.latency_threads),
            lambda: Collector(plan).collect(),
            report.write,
            settings,
        )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
