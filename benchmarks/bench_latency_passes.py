"""How much of a latency predictor's error is noise in its labels.

Takes two or more latency datasets of the same architectures measured with the same protocol
at different times (e.g. `python -m automoe.latency dataset ... --out a.csv` and again with
`--out b.csv`, reusing the first's `--reference-ms`; `python -m automoe.latency merge` writes
their mean). Reports how far the passes disagree per
architecture (the noise in any one pass) and the cross-validated error of the predictors on
each pass alone and on the per-architecture mean of all passes. If averaging the labels
lowers the error, the labels' noise, not the features, is what limits the predictor.
"""

from __future__ import annotations

import csv
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

from common import base_parser, machine_info, machine_markdown, markdown_table, write_results

from automoe.errors import AutomoeError
from automoe.latency.__main__ import merge_passes
from automoe.predictors.benchmark import run_benchmark
from automoe.predictors.data import read_table


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("datasets", nargs="+", type=Path, help="latency CSVs of the same archs")
    p.add_argument("--target", default="latency_ms")
    p.add_argument("--models", default="linear,gbm", help="predictors to cross-validate")
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mean_csv = Path(tmp) / "mean.csv"
        try:
            count = merge_passes(args.datasets, mean_csv)
        except AutomoeError as err:
            sys.exit(str(err))
        passes = []
        for path in args.datasets:
            with path.open(newline="") as f:
                passes.append({r["arch_key"]: float(r[args.target]) for r in csv.DictReader(f)})
        pairs = []
        for (i, a), (j, b) in itertools.combinations(enumerate(passes), 2):
            diffs = [abs(a[k] - b[k]) / ((a[k] + b[k]) / 2) for k in a]
            pairs.append(
                {
                    "passes": [i, j],
                    "median_abs_rel_diff": statistics.median(diffs),
                    "max": max(diffs),
                }
            )
        names = args.models.split(",")
        scores = {}
        labels = {f"pass {i}": path for i, path in enumerate(args.datasets)}
        labels[f"mean of {len(passes)} passes"] = mean_csv
        for label, path in labels.items():
            report = run_benchmark(read_table(path, args.target), names, args.folds, args.seed)
            scores[label] = {
                name: {key: m[key] for key in ("mape_pct", "mape_pct_std", "kendall_tau")}
                for name, m in report.report["models"].items()
            }
    info = machine_info(args.threads)
    payload = {
        **info,
        "datasets": [str(path) for path in args.datasets],
        "target": args.target,
        "architectures": count,
        "pass_differences": pairs,
        "cross_validation": scores,
    }
    pair_rows = [
        [f"{a} vs {b}", f"{d['median_abs_rel_diff'] * 100:.2f}%", f"{d['max'] * 100:.2f}%"]
        for d in pairs
        for a, b in [d["passes"]]
    ]
    score_rows = [
        [label, name, f"{m['mape_pct']:.2f} +- {m['mape_pct_std']:.2f}", f"{m['kendall_tau']:.3f}"]
        for label, models in scores.items()
        for name, m in models.items()
    ]
    md = "\n\n".join(
        [
            f"# Latency label noise: {len(passes)} passes over {count} architectures",
            machine_markdown(info),
            "Datasets: " + ", ".join(f"`{path}`" for path in args.datasets),
            "## Passes against each other\n\n"
            + markdown_table(["passes", "median abs. relative difference", "largest"], pair_rows),
            f"## {args.folds}-fold cross-validation on each set of labels\n\n"
            + markdown_table(["labels", "model", "MAPE (%)", "Kendall tau"], score_rows),
        ]
    )
    print(md)
    if not args.no_write:
        write_results(args.out, "latency_passes", payload, md)


if __name__ == "__main__":
    main()
