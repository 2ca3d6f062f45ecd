"""Repeatability of measured latency: the same architectures in two separate processes.

Runs `python -m automoe.latency dataset` twice (fresh processes, same seed, so the same
architectures) and reports the median absolute relative difference per architecture.
Target: at most 5%.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, base_parser, machine_info, machine_markdown, markdown_table, write_results


def _latencies(path: Path) -> dict[str, float]:
    with path.open(newline="") as f:
        return {row["arch_key"]: float(row["latency_ms"]) for row in csv.DictReader(f)}


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--supernet", help="run folder of a trained SuperNet (trained routers)")
    p.add_argument("--space", default="multi30k")
    p.add_argument("--runs", type=int, default=20, dest="latency_runs")
    args = p.parse_args()
    info = machine_info(args.threads)
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in ("first", "second"):
            out = Path(tmp) / f"{attempt}.csv"
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
                "--no-progress",
            ]
            if args.supernet:
                cmd.append(f"--supernet={Path(args.supernet).resolve()}")  # runs in REPO
            subprocess.run(cmd, check=True, cwd=REPO)
            tables.append(_latencies(out))
    first, second = tables
    keys = sorted(first)
    diffs = [abs(first[k] - second[k]) / ((first[k] + second[k]) / 2) for k in keys]
    median_diff = statistics.median(diffs)
    payload = {
        **info,
        "architectures": len(keys),
        "latency_runs_per_arch": args.latency_runs,
        "supernet": args.supernet,
        "median_abs_rel_diff": median_diff,
        "max_abs_rel_diff": max(diffs),
        "target": 0.05,
        "met": median_diff <= 0.05,
        "per_arch": {k: {"first_ms": first[k], "second_ms": second[k]} for k in keys},
    }
    rows = [
        [k, f"{first[k]:.2f}", f"{second[k]:.2f}", f"{d * 100:.2f}%"]
        for k, d in zip(keys, diffs, strict=True)
    ]
    md = (
        "# Latency repeatability: two separate measurement processes\n\n"
        + machine_markdown(info)
        + f"\n**Median absolute relative difference over {len(keys)} architectures: "
        f"{median_diff * 100:.2f}% (target at most 5%: {'met' if payload['met'] else 'missed'})**; "
        f"largest {max(diffs) * 100:.2f}%.\n\n"
        + markdown_table(["arch", "first ms", "second ms", "difference"], rows)
    )
    print(md)
    if not args.no_write:
        write_results(args.out, "latency_repeatability", payload, md)


if __name__ == "__main__":
    main()
