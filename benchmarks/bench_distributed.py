"""Training on one process or two (torchrun, gloo): updates/s and tokens/s on this machine.

Every variant trains the same SuperNet (the `--space` preset, Multi30k en-de) from scratch with
the same global batch, two batches of `--max-tokens` per update:

- `1 process`: `python -m automoe.train --update-freq 2 --threads 1`;
- `2 processes`: `torchrun --nproc_per_node 2 -m automoe.train --update-freq 1 --threads 1`,
  one batch per process and the gradients summed over gloo;
- `1 process, 2 threads`: `--update-freq 2 --threads 2`, the same two cores used by torch's
  intra-op threads instead of by two processes.

Rates come from rank 0's metrics (`metrics.jsonl`, one row per update) over the updates after
`--skip`: the trainer's own clock around each update (forward, backward, gradient all-reduce,
optimiser step, and a process's wait for its peer), not start-up, validation or checkpoints.
Variants run as fresh subprocesses, interleaved in rotating order for `--repeats` rounds; the
reported figure is the median over the rounds in which other processes held < 0.2 cores (all
rounds if fewer than 3 were), with the per-round paired ratio to `1 process`.

With `--device cuda` the variants train on the GPU (two processes need two GPUs: NCCL); the
device is recorded either way. `--quick` is a smoke run at toy size (writes `*.quick.*`).

Usage: python benchmarks/bench_distributed.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import common
import torch

NAME = "distributed_training"
BASELINE = "1 process"
QUIET = 0.2
# (full measurement, --quick); an option given on the command line wins
SIZES = {"steps": (40, 8), "skip": (5, 3), "max_tokens": (4096, 1024), "repeats": (5, 2)}


def variants(device: str) -> dict[str, tuple[list[str], list[str]]]:
    """Name -> (launcher, the variant's own flags); the global batch is 2 batches in all."""
    python = [sys.executable, "-m", "automoe.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    out = {
        BASELINE: (python, ["--update-freq=2", "--threads=1"]),
        "2 processes": (
            [*torchrun, "--nproc_per_node=2", "-m", "automoe.train"],
            ["--update-freq=1", "--threads=1"],
        ),
        "1 process, 2 threads": (python, ["--update-freq=2", "--threads=2"]),
    }
    if device == "cuda" and torch.cuda.device_count() < 2:
        del out["2 processes"]
    return out


def steady_rates(rows: Sequence[Mapping[str, Any]], skip: int) -> dict[str, float]:
    """Updates/s and tokens/s over the updates after the first `skip`, by the trainer's clock
    (`elapsed_s` sums the time of every update so far)."""
    rows = sorted(rows, key=lambda row: row["step"])
    start = next(row for row in rows if row["step"] == skip)
    timed = [row for row in rows if row["step"] > skip]
    seconds = timed[-1]["elapsed_s"] - start["elapsed_s"]
    return {
        "updates_per_s": len(timed) / seconds,
        "tokens_per_s": sum(row["tokens"] for row in timed) / seconds,
        "updates": len(timed),
    }


def run_variant(
    launcher: list[str], flags: list[str], common_flags: list[str], skip: int
) -> dict[str, Any]:
    """One fresh training run; its rates and how many cores other processes held meanwhile."""
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as folder:
        run = Path(folder) / "run"
        cmd = [*launcher, f"--run-dir={run}", *common_flags, *flags, "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        busy0, children0, t0 = _busy(), _children_cpu(), time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        other = max(0.0, _busy() - busy0 - (_children_cpu() - children0)) / wall
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {**steady_rates(rows, skip), "other_cores": round(other, 3), "wall_s": round(wall, 2)}


def _busy() -> float:
    """CPU seconds the whole machine has been busy."""
    return common._busy_ticks()[0] / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds of the finished subprocesses (torchrun's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    names = list(rounds[0])
    loads = [max(r[name]["other_cores"] for name in names) for r in rounds]
    chosen = common.quiet_rounds(loads, threshold=QUIET)
    out: dict[str, Any] = {
        "rounds": len(rounds),
        "quiet_rounds": sum(load < QUIET for load in loads),
        "rounds_used": chosen,
        "variants": {},
    }
    for name in names:
        entry: dict[str, Any] = {}
        for key in ("updates_per_s", "tokens_per_s"):
            values = [rounds[i][name][key] for i in chosen]
            base = [rounds[i][BASELINE][key] for i in chosen]
            entry[key] = statistics.median(values)
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
            entry[f"{key}_ratio"] = common.paired_ratio(values, base)
        out["variants"][name] = entry
    return out


def markdown(payload: Mapping[str, Any]) -> str:
    summary, s = payload["summary"], payload["settings"]
    rows = [
        [
            name,
            v["updates_per_s"],
            f"{v['updates_per_s_min']:.3g}-{v['updates_per_s_max']:.3g}",
            v["tokens_per_s"],
            f"{v['updates_per_s_ratio']:.2f}x",
        ]
        for name, v in summary["variants"].items()
    ]
    header = ["variant", "updates/s", "range", "tokens/s", "vs 1 process (paired)"]
    quick = " (`--quick`: toy size, a smoke run, not a figure to quote)" if s["quick"] else ""
    loads = [r[name]["other_cores"] for r in payload["rounds"] for name in r]
    notes = "\n".join(
        [
            f"- SuperNet of the `{s['space']}` space on Multi30k en-de ({s['train_limit']} "
            f"training pairs), vocabulary {s['vocab_size']}, dropout 0.1, fp32; every update "
            f"is 2 batches of at most {s['max_tokens']} tokens (the same global batch in every "
            f"variant); {s['steps']} updates per run, rates over updates {s['skip'] + 1}-"
            f"{s['steps']} by the trainer's clock (no start-up, validation or checkpoints).",
            f"- device: {payload['device']}; {summary['rounds']} rounds interleaved in rotating "
            f"order, {summary['quiet_rounds']} quiet (other processes < {QUIET} cores); "
            f"medians over rounds {summary['rounds_used']}; other processes held "
            f"{statistics.mean(loads):.2f} cores on average while a variant ran.",
            f"- NCCL/CUDA: {payload['cuda_note']}",
            common.machine_markdown(payload["machine"]),
        ]
    )
    title = f"# Distributed training: one process or two{quick}"
    return "\n\n".join([title, common.markdown_table(header, rows), notes])


def main(argv: list[str] | None = None) -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="toy sizes: a smoke run")
    p.add_argument("--space", default="multi30k")
    p.add_argument("--steps", type=int, help="updates per run (40; quick 8)")
    p.add_argument("--skip", type=int, help="warm-up updates left out of the rates (5; quick 3)")
    p.add_argument("--max-tokens", type=int, help="tokens per batch (4096; quick 1024)")
    p.add_argument("--train-limit", type=int, default=4000, help="training pairs read")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--data-dir", help="folder holding multi30k/ (else $AUTOMOE_DATA_DIR)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args(argv)
    size = {k: getattr(args, k, None) or v[int(args.quick)] for k, v in SIZES.items()}
    common.set_threads(1)
    info = common.machine_info(1, argv and [sys.argv[0], *argv])
    flags = [
        f"--space={args.space}",
        f"--max-steps={size['steps']}",
        f"--max-tokens={size['max_tokens']}",
        f"--train-limit={args.train_limit}",
        f"--vocab-size={args.vocab_size}",
        "--valid-size=50",
        f"--validate-every={size['steps']}",
        f"--checkpoint-every={size['steps']}",
        "--log-every=1",
        f"--device={args.device}",
        f"--seed={args.seed}",
        *([f"--data-dir={args.data_dir}"] if args.data_dir else []),
    ]
    chosen = variants(args.device)
    names = list(chosen)
    rounds = []
    for r in range(size["repeats"]):
        result = {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            launcher, own = chosen[name]
            result[name] = run_variant(launcher, own, flags, size["skip"])
            print(f"round {r + 1} {name}: {result[name]}", flush=True)
        rounds.append({name: result[name] for name in names})
    cuda = torch.cuda.is_available()
    payload = {
        "machine": info,
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (gloo)",
        "cuda_note": (
            "no CUDA device on this machine: not measured"
            if not cuda
            else f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
            + ("" if args.device == "cuda" else "; this run used the CPU (--device cuda for it)")
        ),
        "settings": {
            **size,
            "quick": args.quick,
            "space": args.space,
            "train_limit": args.train_limit,
            "vocab_size": args.vocab_size,
        },
        "rounds": rounds,
        "summary": summarise(rounds),
    }
    md = markdown(payload)
    print(md)
    if not args.no_write:
        common.write_results(args.out, NAME + (".quick" if args.quick else ""), payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
