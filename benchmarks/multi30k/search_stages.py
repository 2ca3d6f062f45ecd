"""The stages before the final trainings: baselines, latency predictor, the dense model's
latency and the bounds from it, the four searches and the front points they leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from staged.search import resumable_search
from staged.stages import ALL, Stage

from automoe.space import ArchConfig, SearchSpace
from multi30k import archs
from multi30k.rows import FRONT_OF, FRONT_SEARCH, ROWS, SEARCHED, Row
from multi30k.settings import FRACTIONS

if TYPE_CHECKING:
    from multi30k.plan import Plan


def reused(name: str, path: Path) -> Stage:
    """A stage given on the command line: done, never run."""
    return Stage(name, path, about=f"reused: {path}", slots=0, finished=path.exists)


def baselines(plan: Plan) -> Stage:
    files = (plan.arch_file("dense"), plan.arch_file("switch"), plan.hat_space)
    return Stage(
        "baselines",
        files[0],
        action=lambda: archs.write_baselines(plan.space, *files),
        about="dense and Switch architectures and the HAT space, from the space "
        "(benchmarks/multi30k/archs.py)",
        slots=0,
        finished=lambda: all(f.is_file() for f in files),
    )


def latency_dataset(plan: Plan) -> Stage:
    """Measured latencies of sampled sub-networks; a stop keeps the rows measured so far."""
    s, threads, csv = plan.sizes, plan.inputs.latency_threads, plan.layout.latency_csv
    command = (
        "automoe.latency",
        "dataset",
        f"--out={csv}",
        f"--supernet={plan.supernet}",
        f"--count={s.latency_archs}",
        f"--runs={s.latency_runs}",
        f"--warmup={s.latency_warmup}",
        f"--threads={threads}",
        "--no-progress",
        *plan.common_flags(),
    )
    return Stage(
        "latency dataset",
        csv,
        ("supernet",),
        command,
        slots=ALL,
        threads=threads,
        checkpoints=True,
        finished=lambda: plan.predictor.is_file() or _rows(csv) >= s.latency_archs,
    )


def predictor_fit(plan: Plan) -> Stage:
    command = (
        "automoe.predictors",
        "fit",
        f"--data={plan.layout.latency_csv}",
        "--target=latency_ms",
        f"--out={plan.layout.predictor}",
    )
    return Stage(
        "latency predictor",
        plan.layout.predictor,
        ("latency dataset",),
        command,
        minutes=plan.sizes.fit_minutes,
    )


def dense_latency(plan: Plan) -> Stage:
    """`latency measure` of the dense architecture on the SuperNet; its stdout is the JSON."""
    s, threads = plan.sizes, plan.inputs.latency_threads
    command = (
        "automoe.latency",
        "measure",
        f"--model={plan.supernet}",
        f"--arch={plan.arch_file('dense')}",
        f"--runs={s.measure_runs}",
        f"--warmup={s.latency_warmup}",
        f"--threads={threads}",
        *plan.common_flags(),
    )
    return Stage(
        "dense latency",
        plan.layout.dense_latency,
        ("supernet", "baselines"),
        command,
        slots=ALL,
        threads=threads,
        minutes=s.measure_minutes,
        stdout=True,
    )


def constraints(plan: Plan) -> Stage:
    def action() -> None:
        hat = SearchSpace.load(plan.hat_space)
        spaces: dict[str, list[SearchSpace]] = {key: [] for key in FRACTIONS}
        for row in SEARCHED:
            spaces[row.fraction].append(hat if row.dense_only else plan.space)
        archs.write_constraints(
            plan.layout.dense_latency,
            plan.arch_file("dense"),
            plan.predictor,
            spaces,
            FRACTIONS,
            plan.sizes.min_feasible_share,
            plan.layout.constraints,
        )

    return Stage(
        "constraints",
        plan.layout.constraints,
        ("dense latency", "latency predictor", "baselines"),
        action=action,
        about="bounds at 1/2 and 1/3 of the dense latency (benchmarks/multi30k/archs.py)",
        slots=0,
    )


SMALLEST = "smallest"  # the space's smallest architecture, in the predictions only


def predicted(plan: Plan) -> Stage:
    def action() -> None:
        models = {
            name: plan.space.largest() if arch == "largest" else ArchConfig.load(arch)
            for name, (_, arch) in plan.timed_models().items()
            if arch is not None
        }
        models[SMALLEST] = plan.space.smallest()
        archs.write_predicted(plan.predictor, models, plan.layout.predicted)

    return Stage(
        "predicted latency",
        plan.layout.predicted,
        ("latency predictor", "baselines", "front", *(f"search {row.key}" for row in SEARCHED)),
        action=action,
        about="the latency predictor's figure for every timed model and the space's smallest "
        "(benchmarks/multi30k/archs.py)",
        slots=0,
    )


def bound(plan: Plan, fraction: str) -> str:
    """The latency bound of a fraction, or a placeholder until the constraints exist."""
    if not plan.layout.constraints.is_file():
        return f"<{FRACTIONS[fraction][0]}/{FRACTIONS[fraction][1]} of the dense latency>"
    bounds = json.loads(plan.layout.constraints.read_text())["bounds"]
    return f"{bounds[fraction]['bound_ms']:.2f}"


def search(plan: Plan, row: Row, name: str | None = None) -> Stage:
    """The paper's search: the lowest validation loss under the latency bound (`name`: a run
    of the row's settings under another name)."""
    name = name or row.key
    s, run = plan.sizes, plan.layout.search(name)
    command = (
        "automoe.search",
        f"--strategy={row.strategy}",
        f"--run={run}",
        f"--supernet={plan.supernet}",
        f"--predictor={plan.predictor}",
        f"--constraint=latency_ms<={bound(plan, row.fraction)}",
        *([f"--space={plan.hat_space}"] if row.dense_only else []),
        f"--evaluations={s.evaluations}",
        f"--valid-size={s.search_valid}",
        f"--batch={s.search_batch}",
        "--seed=0",
        "--threads=1",
        "--no-progress",
        *plan.common_flags(),
    )

    deps = ("constraints", "supernet", "latency predictor")
    return resumable_search(f"search {name}", run, command, plan.common_flags(), deps)


def front_search(plan: Plan) -> Stage:
    """The estimator study's own run of FRONT_OF's search, whose candidates give the front."""
    return search(plan, next(r for r in SEARCHED if r.key == FRONT_OF), FRONT_SEARCH)


def front(plan: Plan) -> Stage:
    def action() -> None:
        keys = {archs.arch_key(plan.arch_file(r.key)) for r in ROWS}
        archs.write_front(
            plan.layout.search(FRONT_SEARCH),
            {k for k in keys if k is not None},
            plan.sizes.estimator_points,
            plan.layout.estimator,
            plan.layout.front,
        )

    return Stage(
        "front",
        plan.layout.front,
        (f"search {FRONT_SEARCH}", "baselines"),
        action=action,
        about=f"{plan.sizes.estimator_points} points spread over the latency front of the "
        f"candidates of a run of the {FRONT_OF} search (benchmarks/multi30k/archs.py)",
        slots=0,
        inputs=tuple(
            plan.layout.search(FRONT_SEARCH) / f for f in ("pareto.json", "evaluations.jsonl")
        ),
    )


def _rows(csv: Path) -> int:
    if not csv.is_file():
        return 0
    return max(0, sum(1 for line in csv.read_text().splitlines() if line.strip()) - 1)
