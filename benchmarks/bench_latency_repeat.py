"""Repeatability of measured latency: the same architectures in two separate processes.

Runs `python -m automoe.latency dataset` twice per clock (fresh processes, same seed, so the
same architectures; wall and CPU clock passes interleaved) and reports the median absolute
relative difference per architecture. Target: at most 5%.

With `--reference smallest` every pass times that sub-network beside each run and reports at
one reference speed; the second pass reuses the first's (`--reference-ms`), as resuming or
extending a dataset does, so the comparison measures the drift the pairing leaves.
"""

from __future__ import annotations

import argparse
import csv
import json
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


def _reference_ms(out: Path) -> float:
    return json.loads(out.with_suffix(out.suffix + ".json").read_text())["reference"]["ms"]


def _measure(
    args: argparse.Namespace, out: Path, clock: str, reference_ms: float | None
) -> dict[str, float]:
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
    if args.reference:
        cmd.append(f"--reference={args.reference}")
    if reference_ms is not None:
        cmd.append(f"--reference-ms={reference_ms}")
    subprocess.run(cmd, check=True, cwd=REPO)
    return _latencies(out)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--supernet", help="run folder of a trained SuperNet (trained routers)")
    p.add_argument("--space", default="multi30k")
    p.add_argument("--runs", type=int, default=20, dest="latency_runs")
    p.add_argument("--clocks", default="wall,cpu", help="clocks to compare, comma-separated")
    p.add_argument("--reference", help="largest, smallest or an arch file (drift pairing)")
    args = p.parse_args()
    info = machine_info(args.threads)
    clocks = args.clocks.split(",")
    tables: dict[str, list[dict[str, float]]] = {c: [] for c in clocks}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in ("first", "second"):
            for clock in clocks:  # interleaved, so both clocks see the same machine
                loads.append(os.getloadavg()[0])
                first = Path(tmp) / f"{clock}-first.csv"
                speed = _reference_ms(first) if args.reference and attempt == "second" else None
                out = Path(tmp) / f"{clock}-{attempt}.csv"
                tables[clock].append(_measure(args, out, clock, speed))
    payload = {
        **info,
        "architectures": args.count,
        "latency_runs_per_arch": args.latency_runs,
        "supernet": args.supernet,
        "reference": args.reference,
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
            "# Latency repeatability: two separate measurement processes per clock"
            + (f", timed beside the {args.reference} reference" if args.reference else ""),
            machine_markdown(info),
            f"Passes run in the order {' '.join(f'{c}' for c in clocks)} twice; the 1-minute "
            f"load average before each pass: {loads}. A load above {args.threads} means other "
            "processes competed for the cores.",
            *parts,
        ]
    )
    print(md)
    if not args.no_write:
        name = "latency_repeatability" + (".reference" if args.reference else "")
        write_results(args.out, name, payload, md)


if __name__ == "__main__":
    main()
