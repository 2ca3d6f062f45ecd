"""Does bf16 training cost quality? SuperNets trained alike in fp32 (two seeds: the spread
any difference must beat) and in bf16, scored on the same sentences.

    python benchmarks/bench_precision_quality.py \
        --runs runs/m30k-ende runs/prec-fp32-s2 runs/prec-bf16-s1

For every run, the largest and smallest sub-networks (inherited weights): validation loss
(all 1,014 sentences) and test_2016_flickr BLEU and chrF (beam 4, all 1,000 sentences), each
computed in fp32, and also in the run's own precision when it trained in another. The
verdict compares each bf16 figure with the fp32 seed-1 run's, against the fp32 seeds' spread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import (
    base_parser,
    machine_info,
    machine_markdown,
    markdown_table,
    set_threads,
    write_results,
)

from automoe.evaluate.__main__ import main as evaluate_main

ARCHS = ("largest", "smallest")
FIGURES = ("val_loss", "bleu", "chrf")


def _evaluate(run: Path, arch: str, split: str, precision: str, threads: int, beam: int) -> dict:
    """One evaluation, kept in the run folder: a rerun (or a run over more folders) reuses it."""
    target = run / f"precision_quality_{arch}_{split}_{precision}.json"
    if target.is_file():
        return json.loads(target.read_text())["results"][0]
    extra = ["--no-bleu"] if split == "val" else [f"--beam={beam}"]
    evaluate_main(
        [
            f"--model={run}",
            f"--arch={arch}",
            f"--split={split}",
            f"--threads={threads}",
            f"--precision={precision}",
            f"--out={target}",
            *extra,
        ]
    )
    return json.loads(target.read_text())["results"][0]


def score_run(run: Path, threads: int, beam: int) -> list[dict[str, Any]]:
    """One row per (sub-network, evaluation precision) of a trained SuperNet run."""
    settings = json.loads((run / "run.json").read_text())
    trained = settings.get("precision", {}).get("precision", "fp32")
    rows = []
    for precision in dict.fromkeys(("fp32", trained)):
        for arch in ARCHS:
            val = _evaluate(run, arch, "val", precision, threads, beam)
            test = _evaluate(run, arch, "test_2016_flickr", precision, threads, beam)
            rows.append(
                {
                    "run": str(run),
                    "trained": trained,
                    "seed": settings["train"]["seed"],
                    "evaluated": precision,
                    "arch": arch,
                    "val_loss": val["loss"],
                    "bleu": test["bleu"],
                    "chrf": test["chrf"],
                    "bleu_signature": test["bleu_signature"],
                    "translate_s": test["translate_seconds"],
                }
            )
    return rows


def verdict(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per sub-network and figure: the fp32 seeds' spread, and each bf16 run's distance from
    the fp32 run of the same seed (both evaluated in fp32): within the spread or not."""
    out = []
    fp32 = [r for r in rows if r["trained"] == "fp32" and r["evaluated"] == "fp32"]
    bf16 = [r for r in rows if r["trained"] == "bf16" and r["evaluated"] == "fp32"]
    for arch in ARCHS:
        seeds = {r["seed"]: r for r in fp32 if r["arch"] == arch}
        if len(seeds) < 2:
            continue
        for figure in FIGURES:
            values = [r[figure] for r in seeds.values()]
            spread = max(values) - min(values)
            for row in (r for r in bf16 if r["arch"] == arch and r["seed"] in seeds):
                gap = abs(row[figure] - seeds[row["seed"]][figure])
                out.append(
                    [
                        arch,
                        figure,
                        f"{spread:.3f}",
                        f"{gap:.3f}",
                        "yes" if gap <= spread else f"no ({gap / max(spread, 1e-9):.1f}x)",
                    ]
                )
    return out


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="trained SuperNet runs")
    p.add_argument("--beam", type=int, default=4)
    args = p.parse_args()
    set_threads(args.threads)  # what every evaluation runs with, recorded as such
    info = machine_info(args.threads)
    rows = [row for run in args.runs for row in score_run(run, args.threads, args.beam)]
    table = markdown_table(
        ["run", "trained", "seed", "evaluated", "sub-network", "val loss", "BLEU", "chrF"],
        [
            [
                r["run"],
                r["trained"],
                r["seed"],
                r["evaluated"],
                r["arch"],
                f"{r['val_loss']:.3f}",
                f"{r['bleu']:.2f}",
                f"{r['chrf']:.2f}",
            ]
            for r in rows
        ],
    )
    checks = markdown_table(
        ["sub-network", "figure", "fp32 seed spread", "bf16 - fp32 (same seed)", "within"],
        verdict(rows),
    )
    md = "\n".join(
        [
            "# bf16 vs fp32 SuperNet training: quality on Multi30k en-de",
            "",
            machine_markdown(info),
            "",
            table,
            "",
            checks,
            "",
            f"BLEU: {rows[0]['bleu_signature']}, beam {args.beam}, detokenised, 1,000 "
            "test_2016_flickr sentences; val loss: label-smoothed (0.1) per token, 1,014 "
            "sentences.",
        ]
    )
    print(md)
    if not args.no_write:
        write_results(args.out, "precision_quality", {**info, "rows": rows}, md)


if __name__ == "__main__":
    main()
