"""Repeatability of measured latency: the same architectures in two separate processes.

Runs `python -m automoe.latency dataset` twice per clock (fresh processes, same seed, so the
same architectures; wall and CPU clock passes interleaved) and reports the median absolute
relative difference per architecture. Target: at most 5%.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, base_parser, machine_info, machine_markdown, markdown_table, write_results


def _latencies(path: Path) -> dict[str, float]:
    with path.open(newline="") as f:
        return {row["arch_key"]: float(row["latency_ms"]) for row in csv.DictReader(f)}


def _measure(args: argparse.Namespace, out: Path, clock: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "automoe.latency",
        "dataset",
        f"--out={out}",
        f"--space={args.space}",
        f"--count={args.count}",
        f"--seed={args.seed}",
        f"--threads={args.threads}",
        f"--runs={args.latency_runs}",
        f"--clock={clock}",
        "--no-progress",
    ]
    if args.supernet:
        cmd.append(f"--supernet={Path(args.supernet).resolve()}")  # runs in REPO
    subprocess.run(cmd, check=True, cwd=REPO)
    return _latencies(out)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--supernet", help="run folder of a trained SuperNet (trained routers)")
    p.add_argument("--space", default="multi30k")
    p.add_argument("--runs", type=int, default=20, dest="latency_runs")
    p.add_argument("--clocks", default="wall,cpu", help="clocks to compare, comma-separated")
    args = p.parse_args()
    info = machine_info(args.threads)
    clocks = args.clocks.split(",")
    tables: dict[str, list[dict[str, float]]] = {c: [] for c in clocks}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in ("first", "second"):
            for clock in clocks:  # interleaved, so both clocks see the same machine
                loads.append(os.getloadavg()[0])
                tables[clock].append(_measure(args, Path(tmp) / f"{clock}-{attempt}.csv", clock))
    payload = {
        **info,
        "architectures": args.count,
        "latency_runs_per_arch": args.latency_runs,
        "supernet": args.supernet,
        "load_average_before_each_pass": loads,
        "target": 0.05,
        "clocks": {},
    }
    parts = []
    for clock, (first, second) in tables.items():
        keys = sorted(first)
        diffs = [abs(first[k] - second[k]) / ((first[k] + second[k]) / 2) for k in keys]
        median_diff = statistics.median(diffs)
        payload["clocks"][clock] = {
            "median_abs_rel_diff": median_diff,
            "max_abs_rel_diff": max(diffs),
            "met": median_diff <= 0.05,
            "per_arch": {k: {"first_ms": first[k], "second_ms": second[k]} for k in keys},
        }
        rows = [
            [k, f"{first[k]:.2f}", f"{second[k]:.2f}", f"{d * 100:.2f}%"]
            for k, d in zip(keys, diffs, strict=True)
        ]
        parts.append(
            f"## clock: {clock}\n\n**Median absolute relative difference over {len(keys)} "
            f"architectures: {median_diff * 100:.2f}% (target at most 5%: "
            f"{'met' if median_diff <= 0.05 else 'missed'})**; largest {max(diffs) * 100:.2f}%."
            "\n\n" + markdown_table(["arch", "first ms", "second ms", "difference"], rows)
        )
    md = "\n\n".join(
        [
            "# Latency repeatability: two separate measurement processes per clock",
            machine_markdown(info),
            f"Passes run in the order {' '.join(f'{c}' for c in clocks)} twice; the 1-minute "
            f"load average before each pass: {loads}. A load above {args.threads} means other "
            "processes competed for the cores.",
            *parts,
        ]
    )
    print(md)
    if not args.no_write:
        write_results(args.out, "latency_repeatability", payload, md)


if __name__ == "__main__":
    main()
