"""`python -m automoe.predictors`: fit, apply and compare cost predictors on CSV tables.

    fit        fit a predictor on a cost CSV and save it (the model chosen by CV by default)
    predict    predict the cost of every row of a CSV with a saved predictor
    benchmark  k-fold table of every model (RMSE, MAPE, Kendall tau, R2, speed) and plots

Feature columns: every column except the target, --drop columns, arch, arch_key, weights,
runs and any column ending in _ms or _std (see automoe.predictors.data).

A predictor records the search space its training architectures come from (read from a
latency dataset's sidecar, or given with --space) and the number format its latencies were
measured in (the sidecar's, else fp32); a search over another space, or in another format,
refuses it (see automoe.predictors.scope).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from automoe.argtypes import nonnegative_int, positive_int
from automoe.errors import AutomoeError, run_cli
from automoe.predictors.benchmark import markdown, run_benchmark, table_text
from automoe.predictors.data import read_table
from automoe.predictors.models import AUTO, MODELS, check_model_names
from automoe.predictors.plots import learning_curves, scatter
from automoe.predictors.predictor import CostPredictor
from automoe.space import SearchSpace


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _drop(values: list[str] | None) -> list[str]:
    return [name for value in values or [] for name in _names(value)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m automoe.predictors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    models = "; ".join(f"{name}: {spec.summary}" for name, spec in MODELS.items())
    drop = "column(s) that are not features, comma-separated or repeated"

    f = sub.add_parser("fit", help="fit a predictor on a cost CSV and save it")
    f.add_argument("--data", required=True, type=Path, help="training CSV")
    f.add_argument("--target", default="latency_ms", help="cost column (default latency_ms)")
    f.add_argument("--out", required=True, type=Path, help="file to save the predictor to")
    f.add_argument("--model", default=AUTO, help=f"{AUTO} (lowest CV MAPE) or one of: {models}")
    f.add_argument("--cv", type=positive_int, default=5, help="cross-validation folds (default 5)")
    f.add_argument("--seed", type=nonnegative_int, default=0)
    f.add_argument("--drop", action="append", help=drop)
    f.add_argument(
        "--space",
        help="search space (preset or YAML) the architectures come from, for a CSV without a "
        "latency-dataset sidecar (which records it)",
    )

    r = sub.add_parser("predict", help="predict the cost of every row of a CSV")
    r.add_argument("--model", required=True, type=Path, help="a predictor saved by fit")
    r.add_argument("--data", required=True, type=Path, help="CSV with the model's features")
    r.add_argument("--out", required=True, type=Path, help="CSV to write: one target column")
    r.add_argument("--drop", action="append", help=drop)
    r.add_argument(
        "--train-data", type=Path, help="the training CSV's new location, if it moved (for a refit)"
    )

    b = sub.add_parser("benchmark", help="compare models by k-fold cross-validation")
    b.add_argument("--data", required=True, type=Path, help="cost CSV")
    b.add_argument("--target", default="latency_ms", help="cost column (default latency_ms)")
    b.add_argument("--folds", type=positive_int, default=5)
    b.add_argument("--seed", type=nonnegative_int, default=0)
    b.add_argument("--models", default=",".join(MODELS), help="comma-separated (default all)")
    b.add_argument("--drop", action="append", help=drop)
    b.add_argument("--out", type=Path, help="folder for the results (default DATA-benchmark/)")
    return p


def fit(args: argparse.Namespace) -> int:
    predictor = CostPredictor(
        model=args.model, target=args.target, cv=args.cv, random_state=args.seed
    )
    space = SearchSpace.load(args.space) if args.space else None
    predictor.fit_csv(args.data, drop=_drop(args.drop), space=space)
    predictor.save(args.out)
    how = "chosen by" if args.model == AUTO else "scored by"
    print(f"model: {predictor.model_} ({how} {args.cv}-fold CV MAPE)")
    print("| model | CV MAPE (%) | CV RMSE |\n|---|---|---|")
    for name, scores in predictor.cv_results_.items():
        print(f"| {name} | {scores['mape_pct']:.2f} | {scores['rmse']:.4g} |")
    fitted_on = f"space {predictor.space_.name!r}" if predictor.space_ else "no recorded space"
    print(
        f"saved {args.out} ({predictor.n_features_in_} features, target {args.target}, "
        f"{fitted_on}, measured in {predictor.precision_})"
    )
    return 0


def predict(args: argparse.Namespace) -> int:
    predictor = CostPredictor.load(args.model, data=args.train_data)
    values = predictor.predict_csv(args.data, drop=_drop(args.drop))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([predictor.target])
            writer.writerows([repr(float(v))] for v in values)
    except OSError as err:
        raise AutomoeError(f"cannot write {args.out}: {err.strerror}") from None
    print(f"wrote {len(values)} predictions of {predictor.target} to {args.out}")
    return 0


def benchmark(args: argparse.Namespace) -> int:
    names = check_model_names(_names(args.models))
    table = read_table(args.data, args.target, _drop(args.drop))
    result = run_benchmark(table, names, args.folds, args.seed)
    out = args.out or args.data.with_name(f"{args.data.stem}-benchmark")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.json").write_text(json.dumps(result.report, indent=2) + "\n")
        (out / "benchmark.md").write_text(markdown(result.report))
        scatter(result, out / "predicted_vs_measured.png")
        learning_curves(result, out / "learning_curve.png")
    except OSError as err:
        raise AutomoeError(f"cannot write the results to {out}: {err.strerror}") from None
    print(table_text(result.report))
    print(f"best: {result.report['best']}; results in {out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"fit": fit, "predict": predict, "benchmark": benchmark}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
