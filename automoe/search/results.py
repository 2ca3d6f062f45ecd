"""The end of a search: the answer to the question it was asked, written and printed.

With several objectives the answer is the Pareto front ("the best model for each budget"):
every front point is written as `front/NN.yaml`, numbered from the cheapest (in the first
cost objective) to the most accurate, and a few points spread along it are printed. With one
objective it is the best feasible architecture. Either way `best.yaml` is the lowest loss
(highest BLEU) among feasible architectures, which on a front is its most accurate point.
Every file is written atomically; `summary.json` also says which question was answered and
how the search ended.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automoe.constraints import COST_METRICS, Constraint
from automoe.errors import AutomoeError
from automoe.files import write_text_atomic
from automoe.plot.figures import default_reference, load_run, plot_progress, plot_tradeoff
from automoe.search.loop import SearchLoop, evaluation_log
from automoe.space import ArchConfig

FRONT_DIR = "front"
SHOWN = 5  # front points printed, spread from the cheapest to the most accurate
BEST_MEANS = (
    "the feasible architecture with the best {metric} (on a front: its most accurate point)"
)


def question(settings: dict[str, Any]) -> str:
    """The question a search with these settings answers, in words."""
    metric, costs = settings["objectives"][0], settings["objectives"][1:]
    constraints = [str(Constraint(**c)) for c in settings["constraints"]]
    under = f" under {', '.join(constraints)}" if constraints else ""
    if costs:
        return f"the best {metric} for each {' and '.join(costs)} budget{under} (Pareto front)"
    if constraints:
        return f"the best {metric}{under}"
    return f"the best {metric} with no cost limit (expect one of the largest sub-networks)"


def spread(n: int, shown: int = SHOWN) -> list[int]:
    """Up to `shown` indices evenly spread over range(n), both ends included."""
    if n <= shown:
        return list(range(n))
    return sorted({round(i * (n - 1) / (shown - 1)) for i in range(shown)})


def _write_front(run: Path, front: Sequence[dict[str, Any]]) -> list[str]:
    """`front/01.yaml`... one file per point, in the given order; stale files go."""
    folder = run / FRONT_DIR
    width = max(2, len(str(len(front))))
    names = [f"{FRONT_DIR}/{i + 1:0{width}d}.yaml" for i in range(len(front))]
    for name, row in zip(names, front, strict=True):
        write_text_atomic(run / name, yaml.safe_dump(row["arch"], sort_keys=False))
    if folder.is_dir():
        for path in folder.glob("*.yaml"):
            if f"{FRONT_DIR}/{path.name}" not in names:
                path.unlink()
    return names


def _table(rows: Sequence[dict[str, Any]], labels: Sequence[str], metric: str) -> list[str]:
    width = max(len(label) for label in labels)
    lines = [f"{'':{width}} {metric:>8} {'latency_ms':>10} {'flops':>10} {'params':>10}"]
    for label, row in zip(labels, rows, strict=True):
        lat = row.get("latency_ms")
        lines.append(
            f"{label:{width}} {row[metric]:8.4f} {'-' if lat is None else f'{lat:.2f}':>10} "
            f"{row['flops']:10.3g} {row['params']:10.3g}"
        )
    return lines


def write_results(loop: SearchLoop, run: Path, settings: dict[str, Any], wall: float) -> None:
    """pareto.json, best.yaml, front/, summary.json and plots."""
    rows = loop.rows
    metric = settings["metric"]
    costs = settings["objectives"][1:]
    measured = [c for c in COST_METRICS if any(r.get(c) is not None for r in rows)]
    fronts = {cost: loop.front(cost) for cost in measured}
    write_text_atomic(
        run / "pareto.json",
        json.dumps({cost: [r["arch_key"] for r in front] for cost, front in fronts.items()}),
    )
    front = sorted(loop.front(*costs), key=lambda r: (r[costs[0]], r["objective"])) if costs else []
    files = _write_front(run, front) if costs else []
    best = front[-1] if front else loop.best()  # the same score; on a front, the cheaper of ties
    if best is not None:
        write_text_atomic(run / "best.yaml", yaml.safe_dump(best["arch"], sort_keys=False))
    ending = loop.ending()
    summary = {
        "question": question(settings),
        "objectives": settings["objectives"],
        "ending": ending,
        "evaluations": len(rows),
        "feasible": sum(1 for r in rows if r["feasible"]),
        "best_means": BEST_MEANS.format(metric=metric),
        "best": None if best is None else {k: v for k, v in best.items() if k != "arch"},
        "front": [
            {"file": name, **{k: row.get(k) for k in ("arch_key", metric, *COST_METRICS)}}
            for name, row in zip(files, front, strict=True)
        ],
        "front_sizes": {cost: len(points) for cost, points in fronts.items()},
        "strategy": settings["strategy"],
        "precision": settings.get("precision_used"),
        "wall_s": wall,
        "ms_per_evaluation": 1000 * sum(r["eval_s"] for r in rows) / max(len(rows), 1),
    }
    write_text_atomic(run / "summary.json", json.dumps(summary, indent=2) + "\n")
    if metric == "loss" and rows:
        record = load_run(run)
        for cost in measured:
            plot_tradeoff([record], run / "plots", cost=cost)
        if "latency_ms" in measured:
            reference, _ = default_reference([record], "latency_ms")
            plot_progress([record], run / "plots", reference, cost="latency_ms")


@dataclass(frozen=True)
class SearchResult:
    """A finished (or stopped) search read back from its run folder: what `search()` returns
    and what a notebook opens later with `SearchResult.load(run)`.

    `evaluations` holds every scored architecture (scores, costs, feasibility, `arch` as an
    `ArchConfig`); `front` the Pareto front points from the cheapest to the most accurate (empty
    for a single objective); `best` the feasible architecture with the best score (None if no
    architecture was feasible); `plots` the figures written.
    """

    run: Path
    question: str
    objectives: list[str]
    evaluations: list[dict[str, Any]]
    front: list[dict[str, Any]]
    best: ArchConfig | None
    summary: dict[str, Any]
    plots: list[Path]

    @classmethod
    def load(cls, run: str | Path) -> SearchResult:
        run = Path(run)
        path = run / "summary.json"
        if not path.is_file():
            raise AutomoeError(
                f"{run} holds no finished search (no summary.json); run or resume the search"
            )
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise AutomoeError(f"{path} is not valid JSON ({err}); resume the search") from None
        rows = [
            {**row, "arch": ArchConfig.from_dict(row["arch"])} for row in evaluation_log(run).read()
        ]
        by_key = {row["arch_key"]: row for row in rows}
        front = [{**point, **by_key[point["arch_key"]]} for point in summary["front"]]
        best = summary["best"]
        return cls(
            run=run,
            question=summary["question"],
            objectives=summary["objectives"],
            evaluations=rows,
            front=front,
            best=None if best is None else by_key[best["arch_key"]]["arch"],
            summary=summary,
            plots=sorted((run / "plots").glob("*.png")),
        )


def report_lines(result: SearchResult) -> list[str]:
    """The answer in a few lines, as the command prints it."""
    summary = result.summary
    metric = result.objectives[0]
    lines = [
        f"{summary['strategy']}: {summary['evaluations']} architectures scored, "
        f"{summary['feasible']} feasible",
        f"question: {result.question}",
        summary["ending"]["text"],
    ]
    if result.best is None:
        return [*lines, "no feasible architecture found"]
    front = result.front
    if front:
        costs = result.objectives[1:]
        shown = spread(len(front))
        lines.append(
            f"front: {len(front)} points, {len(shown)} shown from the lowest {costs[0]} "
            f"to the best {metric}"
        )
        lines += _table([front[i] for i in shown], [front[i]["file"] for i in shown], metric)
        lines.append(f"best.yaml = {front[-1]['file']}, the most accurate point")
    else:
        lines += _table([summary["best"]], ["best.yaml"], metric)
    written = "best.yaml, front/, " if front else "best.yaml, "
    lines.append(f"wrote {result.run}/{written}evaluations.csv, pareto.json, summary.json")
    return lines
