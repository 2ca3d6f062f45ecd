"""Shared helpers for the benchmark scripts: threads, interleaved timing, machine facts, output.

Every benchmark times its variants A, B, ... interleaved in one process (A B C, B C A, C A B,
...), so slow drifts of a noisy machine hit all variants alike, and reports medians.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` without installing the package
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from automoe.cost.machine import cpu_model  # noqa: E402
from automoe.precision import Precision  # noqa: E402

# A round is "quiet" if other processes used fewer cores than this: 0.2 plus the cores our
# threads leave free (`set_threads` updates it), so a 1-thread run on 2 cores tolerates 1.
QUIET_CORES = 0.2


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per variant")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds per variant")
    p.add_argument(
        "--max-rounds", type=int, default=None, help="cap on rounds incl. contended (2 x repeats)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for <name>.json and <name>.md")
    p.add_argument("--no-write", action="store_true", help="print only, write no result files")
    return p


def set_threads(threads: int) -> None:
    """Fix intra-op threads (and inter-op to 1) before any timing."""
    global QUIET_CORES
    torch.set_num_threads(threads)
    QUIET_CORES = 0.2 + max(0, (os.cpu_count() or threads) - threads)
    with contextlib.suppress(RuntimeError):  # already set once work started: harmless
        torch.set_num_interop_threads(1)


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for fp32 matmul speed."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


_ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "MALLOC_", "LD_PRELOAD", "GOMP_")


def machine_info(threads: int, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Facts every result file records: command, versions, threads, CPU, date.

    `argv` (script first) is the command when a benchmark's `main` was called in-process
    with its own arguments; default the process's command line.
    """
    script, *rest = sys.argv if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in [_rel(script), *rest])
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "threads_requested": threads,
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
    }


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _busy_ticks() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process) from /proc."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return user + nice + system + irq + softirq + steal, int(mine[11]) + int(mine[12])


class CpuMonitor:
    """How many cores *other* processes kept busy while a block ran (0 = a quiet machine)."""

    def __init__(self) -> None:
        self.other_cores = float("nan")
        self.own_cores = float("nan")

    def __enter__(self) -> CpuMonitor:
        try:
            self._start = (time.perf_counter(), *_busy_ticks())
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start is None:
            return
        t0, busy0, own0 = self._start
        busy1, own1 = _busy_ticks()
        elapsed = max(time.perf_counter() - t0, 1e-9)
        hz = os.sysconf("SC_CLK_TCK")
        self.own_cores = (own1 - own0) / hz / elapsed
        self.other_cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / hz / elapsed


def wait_for_quiet(
    max_wait_s: float, threshold: float | None = None, window_s: float = 2.0
) -> dict:
    """Wait (up to max_wait_s) until other processes use < threshold cores; say what happened."""
    threshold = QUIET_CORES if threshold is None else threshold
    start = time.perf_counter()
    load = float("nan")
    while True:
        with CpuMonitor() as mon:
            time.sleep(window_s)
        load = mon.other_cores
        waited = time.perf_counter() - start
        if not load >= threshold or waited >= max_wait_s:
            return {"waited_s": round(waited, 1), "other_cores_before": round(load, 2)}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    max_rounds: int | None = None,
    wait_s: float = 60.0,
) -> dict[str, Any]:
    """Wall and process-CPU seconds per call of every variant, rounds interleaved.

    Round r runs the variants in an order rotated by r, so no variant always goes first.
    CPU time sums this process's threads. `other_cores[r]` is how many cores other processes
    kept busy during round r. On a shared machine a contended round measures the scheduler,
    so after one the run waits (up to `wait_s`) for quiet and adds rounds until it has
    `repeats` quiet ones or has run `max_rounds` (default 2 x repeats) in all.
    """
    names = list(variants)
    max_rounds = max(repeats, max_rounds or 2 * repeats)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, Any] = {n: {"wall": [], "cpu": []} for n in names}
    other: list[float] = []
    r = 0
    while r < max_rounds and (r < repeats or sum(x < QUIET_CORES for x in other) < repeats):
        k = r % len(names)
        with CpuMonitor() as mon:
            for name in names[k:] + names[:k]:
                c0, t0 = time.process_time(), time.perf_counter()
                variants[name]()
                t1, c1 = time.perf_counter(), time.process_time()
                times[name]["wall"].append(t1 - t0)
                times[name]["cpu"].append(c1 - c0)
        other.append(round(mon.other_cores, 3))
        if not other[-1] < QUIET_CORES and wait_s > 0:
            wait_for_quiet(wait_s)
        r += 1
    return {"variants": times, "other_cores": other}


def quiet_rounds(
    other_cores: Sequence[float], threshold: float = 0.2, minimum: int = 3
) -> list[int]:
    """Indices of rounds where other processes used < threshold cores (all if too few)."""
    quiet = [i for i, load in enumerate(other_cores) if not load >= threshold]
    return quiet if len(quiet) >= minimum else list(range(len(other_cores)))


def pick(samples: Sequence[float], rounds: Sequence[int]) -> list[float]:
    return [samples[i] for i in rounds]


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a[r] / b[r]: robust to slow drifts since rounds are adjacent."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread of one variant's timings, in seconds."""
    s = sorted(samples)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
    return {
        "median_s": statistics.median(s),
        "min_s": s[0],
        "max_s": s[-1],
        "q1_s": q[0],
        "q3_s": q[2],
        "n": len(s),
    }


def analyse(run: Mapping[str, Any], baseline: str) -> dict[str, Any]:
    """Per-variant medians and paired ratios to `baseline`, over quiet rounds and all rounds.

    The quiet-round figures are the headline ones: on a shared 2-core machine, a round in
    which another process held a core measures the scheduler rather than the code.
    """
    loads = run["other_cores"]
    quiet = quiet_rounds(loads)
    found = sum(1 for load in loads if load < QUIET_CORES)
    out: dict[str, Any] = {
        "rounds": len(loads),
        "quiet_rounds_found": found,
        "quiet_stats_use_all_rounds": len(quiet) == len(loads) and found < len(loads),
        "other_cores_per_round": loads,
        "variants": {},
    }
    base = run["variants"][baseline]
    for name, t in run["variants"].items():
        entry: dict[str, Any] = {}
        for label, rounds in (("quiet", quiet), ("all", list(range(len(loads))))):
            wall, cpu = pick(t["wall"], rounds), pick(t["cpu"], rounds)
            entry[label] = {
                "wall": summary(wall),
                "cpu": summary(cpu),
                "paired_ratio": paired_ratio(wall, pick(base["wall"], rounds)),
                "ratio_of_medians": statistics.median(wall)
                / statistics.median(pick(base["wall"], rounds)),
                "cpu_ratio": statistics.median(cpu) / statistics.median(pick(base["cpu"], rounds)),
            }
        entry["samples_wall_s"] = [round(x, 5) for x in t["wall"]]
        out["variants"][name] = entry
    return out


def matmul_rate(threads: int, sizes: Sequence[int] = (2048, 4096), repeats: int = 5) -> dict:
    """Measured fp32 GFLOP/s of large square matmuls (median per size, best size wins)."""
    set_threads(threads)
    out: dict[str, Any] = {"sizes": {}}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        rates = [
            2 * n**3 / timed(lambda a=a, b=b, c=c: torch.mm(a, b, out=c)) / 1e9
            for _ in range(repeats)
        ]
        out["sizes"][str(n)] = {"median_gflops": statistics.median(rates), "max_gflops": max(rates)}
    out["gflops"] = max(v["median_gflops"] for v in out["sizes"].values())
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_markdown(info: Mapping[str, Any]) -> str:
    return "\n".join(
        [
            f"- command: `{info['command']}`",
            f"- date (UTC): {info['date']}",
            f"- torch {info['torch']}, Python {info['python']}, {info['threads']} thread(s)",
            f"- CPU: {info['cpu_model']} ({info['logical_cpus']} logical CPUs; "
            f"flags {', '.join(info['cpu_flags']) or 'n/a'})",
            f"- load average at start: {info['loadavg_at_start']}",
            f"- environment: {info['env'] or 'no OMP_/MKL_/KMP_/MALLOC_ variables set'}",
        ]
    )


def precision_tag(precision: Precision) -> str:
    """The result-name part for a precision: none for fp32, so fp32 keeps the plain names."""
    return "" if precision.name == "fp32" else f".{precision.name}"


def write_results(out_dir: Path, name: str, payload: Mapping[str, Any], markdown: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"wrote {out_dir / (name + '.json')} and {out_dir / (name + '.md')}")
