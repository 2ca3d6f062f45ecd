"""One search shared by 1, 2 and 3 workers: architectures scored per minute, same budget.

    python benchmarks/bench_search_workers.py --supernet runs/pipeline/supernet \\
        --predictor runs/pipeline/latency.predictor
    python benchmarks/bench_search_workers.py --quick     # a tiny SuperNet, toy budget (~1 min)

For each worker count N, N `python -m automoe.search --storage sqlite:///... --study ...`
processes start together on a fresh SQLite file, one thread each, with the same strategy,
seed, budget and batch. Reported per N: the wall time of the whole run (process start-up
included) and of the search itself (first claim to last result, as the study records them),
architectures scored per minute of the latter, the distinct architectures in the study, how
many each worker scored, claims lost to another worker, and whether the record is the one a
single worker writes (it should be: the strategy's state is a function of the record). On a
machine with fewer cores than workers the extra workers share cores; the report says how many
there are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from common import (
    REPO,
    RESULTS,
    base_parser,
    machine_info,
    machine_markdown,
    markdown_table,
    write_results,
)
from matplotlib.figure import Figure
from optuna.trial import TrialState

from automoe.search.storage import LOST

QUICK_SPACE = """\
name: bench-tiny
qkv_dim: 32
max_experts: 2
fractional_experts: true
identity_experts: false
encoder: {embed_dim: [24, 32], layers: [2], ffn_dim: [32, 64], heads: [2, 4], experts: [1, 2],
          top_k: [1]}
decoder: {embed_dim: [24, 32], layers: [1, 2], ffn_dim: [32, 64], self_heads: [2, 4],
          cross_heads: [2, 4], cross_layers: [1, 2], experts: [1, 2], top_k: [1]}
"""


def _tiny_supernet(work: Path, data_dir: str | None) -> Path:
    """A SuperNet trained for seconds on a tiny space (the test suite's), reused once there."""
    from automoe.train.__main__ import main as train_main

    run = work / "supernet"
    if (run / "supernet.pt").is_file():
        return run
    space = work / "tiny.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(QUICK_SPACE)
    flags = [
        f"--run={run}",
        f"--space={space}",
        "--train-limit=400",
        "--valid-size=30",
        "--vocab-size=400",
        "--max-tokens=512",
        "--max-steps=30",
        "--warmup-steps=5",
        "--lr=3e-3",
        "--threads=1",
        "--no-progress",
    ]
    train_main([*flags, *([f"--data-dir={data_dir}"] if data_dir else [])])
    return run


def _search(workers: int, flags: list[str], work: Path) -> dict[str, Any]:
    """N workers on a fresh SQLite file, started together; what the study then holds."""
    db = work / f"workers{workers}.db"
    for path in work.glob(f"workers{workers}.db*"):
        path.unlink()
    url = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automoe.search",
                *flags,
                f"--storage={url}",
                f"--study=bench{workers}",
                f"--worker=w{i}",
                f"--run={work / f'workers{workers}' / f'w{i}'}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a worker failed:\n{out}")
    wall = time.perf_counter() - started
    trials = optuna.load_study(study_name=f"bench{workers}", storage=url).get_trials()
    done = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.user_attrs["index"]
    )
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in trials)
    search_s = span.total_seconds()
    return {
        "workers": workers,
        "wall_s": wall,
        "search_s": search_s,
        "scored": len(done),
        "distinct": len({t.user_attrs["arch_key"] for t in done}),
        "per_minute": 60 * len(done) / search_s,
        "by_worker": dict(sorted(Counter(t.user_attrs["worker"] for t in done).items())),
        "lost_claims": sum(t.user_attrs.get("fail_reason") == LOST for t in trials),
        "keys": [t.user_attrs["arch_key"] for t in done],
    }


def _figure(results: list[dict[str, Any]], path: Path) -> None:
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    counts = [r["workers"] for r in results]
    ax.plot(counts, [r["per_minute"] for r in results], marker="o", label="measured")
    one = results[0]["per_minute"] / results[0]["workers"]
    ax.plot(counts, [one * n for n in counts], linestyle="--", color="grey", label="linear")
    for r in results:
        ax.annotate(
            f"{r['distinct']} distinct",
            (r["workers"], r["per_minute"]),
            textcoords="offset points",
            xytext=(6, -12),
        )
    ax.set_xticks(counts)
    ax.set_xlabel("workers (one thread each)")
    ax.set_ylabel("architectures scored per minute")
    ax.set_title(f"One shared search, {results[0]['scored']} evaluations; {os.cpu_count()} cores")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="a tiny SuperNet and a toy budget")
    p.add_argument("--supernet", help="SuperNet run folder or file (not with --quick)")
    p.add_argument("--predictor", help="latency predictor (with a latency objective)")
    p.add_argument("--data-dir", help="folder holding multi30k/")
    p.add_argument("--strategy", default="evolution")
    p.add_argument("--evaluations", type=int, help="the budget (default 120; quick 48)")
    p.add_argument("--batch", type=int, help="architectures per round (default 25; quick 12)")
    p.add_argument("--valid-size", type=int, help="validation sentences (default 100; quick 30)")
    p.add_argument("--workers", default="1,2,3", help="worker counts to compare")
    p.add_argument("--work", type=Path, help="databases and run folders (default runs/...)")
    args = p.parse_args()
    if args.quick == bool(args.supernet):
        raise SystemExit("give --supernet (and --predictor), or --quick")
    work = args.work or REPO / "runs" / ("search-workers-quick" if args.quick else "search-workers")
    out = work / "results" if args.quick and args.out == RESULTS else args.out
    supernet = _tiny_supernet(work, args.data_dir) if args.quick else Path(args.supernet)
    evaluations = args.evaluations or (48 if args.quick else 120)
    objectives = "loss,flops" if args.quick or not args.predictor else "loss,latency_ms"
    flags = [
        f"--strategy={args.strategy}",
        f"--supernet={supernet}",
        f"--evaluations={evaluations}",
        f"--batch={args.batch or (12 if args.quick else 25)}",
        f"--valid-size={args.valid_size or (30 if args.quick else 100)}",
        f"--objectives={objectives}",
        f"--seed={args.seed}",
        "--threads=1",
        "--no-progress",
        *([f"--predictor={args.predictor}"] if args.predictor else []),
        *([f"--data-dir={args.data_dir}"] if args.data_dir else []),
    ]
    info = machine_info(1)
    results = [_search(int(n), flags, work) for n in args.workers.split(",")]
    same = all(r["keys"] == results[0]["keys"] for r in results)
    _figure(results, out / "search_workers.png")
    base = results[0]["per_minute"]
    rows = [
        [
            r["workers"],
            f"{r['wall_s']:.1f}",
            f"{r['search_s']:.1f}",
            f"{r['per_minute']:.1f}",
            f"{r['per_minute'] / base:.2f}x",
            f"{r['scored']} / {r['distinct']}",
            ", ".join(f"{w} {n}" for w, n in r["by_worker"].items()),
            r["lost_claims"],
        ]
        for r in results
    ]
    lines = [
        "# One search shared by several workers (`--storage`)",
        "",
        machine_markdown(info),
        "",
        f"- `python -m automoe.search {' '.join(flags)} --storage sqlite:///... --study ...`, "
        f"started together N times on a fresh SQLite file, {os.cpu_count()} logical CPUs.",
        "- search s: the study's first claim to its last result (process start-up excluded); "
        "per minute: architectures scored per minute of it.",
        f"- Every worker count recorded {'the same' if same else 'DIFFERENT'} architectures in "
        "the same order as one worker.",
        "",
        markdown_table(
            [
                "workers",
                "wall s",
                "search s",
                "archs / min",
                "speed-up",
                "scored / distinct",
                "by worker",
                "lost claims",
            ],
            rows,
        ),
        "",
        "![architectures per minute against workers](search_workers.png)",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    payload = {**info, "flags": flags, "same_record": same, "results": results}
    if not args.no_write:
        write_results(out, "search_workers", payload, markdown)


if __name__ == "__main__":
    main()
