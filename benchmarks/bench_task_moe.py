"""Task-MoE at a real budget on Multi30k en-de/fr/cs: what task routing buys on a CPU, and a
search that chooses each layer's routing granularity. One command, resumable.

    python benchmarks/bench_task_moe.py --time-limit 150
    python benchmarks/bench_task_moe.py --quick          # every stage at toy size (minutes)

Rows (benchmarks/task_moe/archs.py; all architectures of benchmarks/task_moe/space.yaml):
dense; token-, sentence- and task-routed MoE (4 top-1 experts in every layer); mixed (token-
routed encoder, task-routed decoder); and the routing search's winner. Every model trains
from scratch on all pairs with one budget and --seeds; a model routing any layer by task is
exported per pair (`python -m automoe.export --task`) and scored as exported.

The routing search trains a SuperNet of the space on all pairs (on every core), measures the
dense model's latency as its sub-network, and searches (evolution, latency measured) for the
lowest validation loss and latency under that bound; its winner trains like the other rows.
Sizes, throughput and memory are measured on each row's architecture as an untrained model,
deployed as its trained seeds are, decoding at forced lengths (benchmarks/task_moe/timing.py):
they do not need the trained models, which stay on the machine that trained them.

The full run costs about 30 CPU-hours: 12 trainings of 3000 updates (1 thread: about 2.6 s
per update for dense on an EPYC), a SuperNet (about an hour on 2 cores), one search, 30
beam-4 evaluations, and the timing runs. Repeat the same command until it says every stage
is done; each invocation writes the report (benchmarks/results/task_moe.md and .json), and
the ledger beside it keeps every finished stage's results for the next machine.

Library commands run as background processes, --jobs at a time with one thread each; the
SuperNet, the timing stages and the search (it measures latency) run alone. With
--time-limit, nothing starts that cannot checkpoint before the limit, and what still runs at
the limit is stopped with its checkpoint; the next invocation continues on the same machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS, machine_info
from staged.command import add_run_arguments, here, parse_seeds, run_plan
from task_moe import report
from task_moe.plan import SPACE, Inputs, Plan
from task_moe.results import Collector
from task_moe.settings import Layout, sizes_for

from automoe.argtypes import positive_int
from automoe.data.registry import resolve_dataset_dir
from automoe.errors import AutomoeError, run_cli
from automoe.files import locked_folder
from automoe.space import SearchSpace


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_task_moe.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="every stage at toy size (minutes)")
    p.add_argument("--work", type=Path, help="stage outputs (default runs/task-moe-bench[-quick])")
    p.add_argument(
        "--results", type=Path, help="report folder (default benchmarks/results; quick: WORK)"
    )
    p.add_argument("--space", type=Path, default=SPACE, help="the space (a YAML file)")
    p.add_argument("--data-dir", help="folder holding multi30k/ (else $AUTOMOE_DATA_DIR)")
    p.add_argument("--final-steps", type=positive_int, help="updates per model (3000)")
    p.add_argument("--seeds", help="comma-separated seeds of the trainings (1,2)")
    p.add_argument("--timing-threads", type=positive_int, default=2, help="threads when timing")
    add_run_arguments(p)
    return p


def _check_inputs(args: argparse.Namespace) -> SearchSpace:
    """Refuse a missing corpus and a space the models do not fit, before anything runs."""
    resolve_dataset_dir(data_dir=args.data_dir)
    space = SearchSpace.load(str(args.space))
    missing = {"task", "token"} - set(space.routing_modes())
    if missing:
        raise AutomoeError(
            f"--space {args.space} offers no {' or '.join(sorted(missing))} routing; the "
            "comparison needs routing: [token, sentence, task] on both sides"
        )
    return space


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    sizes = sizes_for(
        args.quick, final_steps=args.final_steps, seeds=parse_seeds(args.seeds, minimum=2)
    )
    work = args.work or Path("runs/task-moe-bench-quick" if args.quick else "runs/task-moe-bench")
    layout = Layout(work, args.results or (work if args.quick else here(RESULTS)))
    space = _check_inputs(args)
    inputs = Inputs(here(args.space), args.data_dir, args.jobs, args.timing_threads)
    with locked_folder(work, "bench_task_moe.py"):
        plan = Plan(sizes, layout, inputs)
        return run_plan(
            plan,
            args,
            argv,
            "benchmarks/bench_task_moe.py",
            machine_info(args.timing_threads),
            lambda: Collector(plan).collect(),
            report.write,
            {"space": space.to_dict(), "sizes": sizes.fixed()},
        )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
