"""`python -m automoe.plot RUN [RUN...]`: redraw a search's figures from its run folders.

Writes the quality-cost trade-off and the search progress (best feasible loss or BLEU,
hypervolume) as PNG and SVG; several runs (strategies, seeds) are overlaid on each figure.
`--storage URL --study NAME` reads a search kept in an Optuna storage (all of its workers'
evaluations), drawn first when run folders are given too.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from automoe.constraints import Constraint
from automoe.errors import AutomoeError, run_cli
from automoe.plot.figures import (
    MARGIN,
    RunRecord,
    cost_axis,
    default_reference,
    load_run,
    plot_progress,
    plot_tradeoff,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.plot", description=__doc__)
    p.add_argument("runs", nargs="*", metavar="RUN", help="search run folder(s)")
    p.add_argument(
        "--storage", metavar="URL", help="Optuna storage holding a shared search (with --study)"
    )
    p.add_argument("--study", help="the search's name in --storage")
    p.add_argument("--cost", default="latency_ms", help="latency_ms (default), flops or params")
    p.add_argument(
        "--out",
        help="folder for the figures (default: the first RUN's plots/; for --storage, "
        "runs/search-STUDY/plots)",
    )
    p.add_argument(
        "--reference",
        metavar="QUALITY,COST",
        help="hypervolume reference point: the worst loss (or BLEU) and COST in the stored unit "
        f"(ms, FLOPs, parameters); default: the first run's reference_point, else {MARGIN} x "
        f"the largest loss (the lowest BLEU / {MARGIN}) and cost",
    )
    return p


def parse_reference(text: str) -> tuple[float, float]:
    """`QUALITY,COST` as two finite numbers, the cost positive (every cost is)."""
    parts = text.split(",")
    try:
        loss, cost = (float(part) for part in parts)
    except ValueError:
        raise AutomoeError(f"--reference {text!r}: write QUALITY,COST, e.g. 9,200") from None
    if not (math.isfinite(loss) and math.isfinite(cost)):
        raise AutomoeError(f"--reference {text!r}: both numbers must be finite")
    if cost <= 0:
        raise AutomoeError(
            f"--reference {text!r}: the cost must be above 0, or no architecture improves on it"
        )
    return loss, cost


def load_study(url: str, name: str) -> RunRecord:
    """The search kept as study `name` in storage `url`, read like a run folder (whose place,
    for labels and the default output, is the one its workers' folders share)."""
    from automoe.search.storage import SharedStudy  # Optuna and SQLAlchemy: only when asked

    study = SharedStudy(url, name, worker="plot", existing=True)
    settings = study.attach()
    rows = study.rows()
    if not rows:
        raise AutomoeError(f"study {name!r} in {study.shown} has no evaluations yet")
    constraints = tuple(Constraint(**c) for c in settings["constraints"])
    return RunRecord(Path(f"runs/search-{name}"), settings, constraints, rows, study.references())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cost_axis(args.cost)  # an unknown cost fails before any folder is read
    if (args.storage is None) != (args.study is None):
        raise AutomoeError("--storage and --study go together: the storage and the search in it")
    if args.storage is None and not args.runs:
        raise AutomoeError("give search run folders, or --storage URL --study NAME")
    runs = [load_study(args.storage, args.study)] if args.storage else []
    runs += [load_run(run) for run in args.runs]
    if args.reference:
        reference, source = parse_reference(args.reference), "from --reference"
    else:
        reference, source = default_reference(runs, args.cost)
    quality, cost = reference
    print(
        f"hypervolume reference point: {runs[0].metric}={quality:g}, {args.cost}={cost:g} "
        f"({source})"
    )
    out = Path(args.out) if args.out else runs[0].path / "plots"
    written = plot_tradeoff(runs, out, args.cost) + plot_progress(runs, out, reference, args.cost)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
