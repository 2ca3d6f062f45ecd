"""What the benchmarks that time one training step done two ways share (bench_train_attention,
bench_train_loss): their options, batches with Multi30k-like lengths, the interleaved run, a
table per case of both ways' step times and the paired ratio, and the result files.

A benchmark names its variants f"{case} {way}", a case being a model in a precision
("dense bf16") or any other unit of work; the headline per case is the median over quiet rounds
of the per-round ratio candidate / baseline.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import common
from bench_elastic import make_batches

from automoe.precision import resolve_precision

PRECISIONS = ("fp32", "bf16")
Steps = dict[str, Callable[[], None]]
Variants = Callable[[list, float, int], tuple[Steps, dict[str, int]]]


@dataclass(frozen=True)
class Comparison:
    """One benchmark's result name and words; `ways` is (baseline, candidate)."""

    name: str
    title: str
    ways: tuple[str, str]
    cases: Sequence[str]
    describe: Sequence[str]
    precision_note: str
    closing: str


def summarise(comparison: Comparison, run: dict[str, Any]) -> dict[str, Any]:
    """Per case: both ways' step times and the ratio candidate / baseline."""
    rows: dict[str, Any] = {}
    for case in comparison.cases:
        pair = {way: run["variants"][f"{case} {way}"] for way in comparison.ways}
        both = {"variants": pair, "other_cores": run["other_cores"]}
        rows[case] = common.analyse(both, comparison.ways[0])
    return rows


def _ms(stats: dict[str, Any]) -> str:
    w = stats["quiet"]["wall"]
    return f"{w['median_s'] * 1e3:.0f} ({w['q1_s'] * 1e3:.0f}-{w['q3_s'] * 1e3:.0f})"


def markdown(comparison: Comparison, payload: dict[str, Any]) -> str:
    s, (base, new) = payload["settings"], comparison.ways
    table = []
    for case, stats in payload["results"].items():
        v, model = stats["variants"], case.rsplit(" ", 1)[0]
        params = payload["params"].get(model)
        table.append(
            [
                case,
                "" if params is None else f"{params:,}",
                _ms(v[base]),
                _ms(v[new]),
                f"{v[new]['quiet']['paired_ratio']:.3f}",
                f"{v[new]['all']['paired_ratio']:.3f}",
                f"{stats['quiet_rounds_found']} of {stats['rounds']}",
            ]
        )
    warning = (
        ["**WARNING: fewer than 3 quiet rounds; these numbers measure CPU contention.**"]
        if payload["contended"]
        else []
    )
    precisions = "; ".join(
        f"{k} -> {v['precision']} ({v['reason']})" for k, v in s["precisions"].items()
    )
    return "\n\n".join(
        [
            f"# {comparison.title}",
            *warning,
            common.machine_markdown(payload["machine"]),
            *comparison.describe,
            f"- precision asked for -> run in: {precisions}; {comparison.precision_note}",
            f"- batches: {s['batch_sizes']} sentences, {s['target_tokens']} target tokens, "
            f"lengths {s['lengths'][0]}-{s['lengths'][1]} drawn uniformly; Adam lr {s['lr']}",
            f"- {s['rounds']} rounds interleaved in rotating order after {s['warmup']} warm-up "
            "round(s); quiet rounds: other processes used less than "
            f"{s['quiet_cores']:.1f} cores",
            common.markdown_table(
                [
                    "case",
                    "params",
                    f"{base}: ms (IQR)",
                    f"{new}: ms (IQR)",
                    f"{new} / {base}, quiet rounds",
                    "all rounds",
                    "quiet rounds",
                ],
                table,
            ),
            comparison.closing,
        ]
    )


def parser(description: str) -> argparse.ArgumentParser:
    p = common.base_parser(description)
    p.set_defaults(threads=1)
    p.add_argument("--target-tokens", type=int, default=4000, help="target tokens per batch")
    p.add_argument("--batches", type=int, default=3, help="distinct batches, cycled")
    p.add_argument("--min-len", type=int, default=6)
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-5, help="Adam's; small keeps routing steady")
    p.add_argument("--wait-quiet", type=float, default=60.0, help="max s to wait for quiet CPUs")
    return p


def main(
    comparison: Comparison, variants: Variants, description: str, argv: list[str] | None
) -> int:
    """Build the variants on the batches, run them interleaved, print and write the results."""
    args = parser(description).parse_args(argv)
    repeats = args.repeats or 8
    warmup = 1 if args.warmup is None else args.warmup
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    batches = make_batches(args.batches, args.target_tokens, args.seed, args.min_len, args.max_len)
    steps, params = variants(batches, args.lr, args.seed)
    quiet = common.wait_for_quiet(args.wait_quiet)
    run = common.interleaved(steps, repeats, warmup, args.max_rounds, args.wait_quiet)
    found = sum(x < common.QUIET_CORES for x in run["other_cores"])
    payload = {
        "benchmark": comparison.name,
        "machine": info,
        "quiet_wait_before_run": quiet,
        "contended": found < 3,
        "settings": {
            "target_tokens": [int(b[3].ne(0).sum()) for b in batches],
            "batch_sizes": [int(b[0].shape[0]) for b in batches],
            "lengths": [args.min_len, args.max_len],
            "lr": args.lr,
            "precisions": {p: resolve_precision(p).record() for p in PRECISIONS},
            "rounds": len(run["other_cores"]),
            "repeats": repeats,
            "warmup": warmup,
            "quiet_cores": common.QUIET_CORES,
            "seed": args.seed,
        },
        "params": params,
        "results": summarise(comparison, run),
    }
    md = markdown(comparison, payload)
    print(md)
    if not args.no_write:
        name = comparison.name + (".contended" if payload["contended"] else "")
        common.write_results(args.out, name, payload, md)
    return 0
