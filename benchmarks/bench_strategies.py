"""All search strategies on one SuperNet, predictor, subset and constraint, several seeds.

Each (strategy, seed) is a real `python -m automoe.search` run in its own folder under
`--runs-dir` (finished runs are reused, so the benchmark resumes). Reported per strategy, as
median and interquartile range over seeds: hypervolume of the feasible (loss, latency) points
against one fixed reference point, best loss under the constraint, feasible count, scoring
time per architecture and the strategy's own decision time per proposal; plus hypervolume
against evaluations, and how scoring time grows with the validation subset.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

from common import REPO, base_parser, machine_info, machine_markdown, markdown_table, write_results
from matplotlib.figure import Figure

from automoe.pareto import hypervolume_curve
from automoe.search.__main__ import main as search_main
from automoe.search.scoring import ArchScorer, ScoringSettings
from automoe.strategies.evolution import EvolutionarySearch, paper_schedule


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


def _quartiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2]}


def _scaling(supernet: str, sizes: list[int], archs: int, threads: int) -> list[dict]:
    """Milliseconds to score one architecture for each validation subset size."""
    out = []
    for size in sizes:
        scorer = ArchScorer(ScoringSettings(supernet, valid_size=size, threads=threads))
        rng = random.Random(0)
        sample = [scorer.net.space.sample(rng) for _ in range(archs)]
        scorer(sample[0])
        started = time.perf_counter()
        for arch in sample:
            scorer(arch)
        ms = 1000 * (time.perf_counter() - started) / archs
        out.append(
            {
                "valid_sentences": size,
                "ms_per_arch": ms,
                "tokens": sum(b.num_tokens for b in scorer.batches),
            }
        )
    return out


def _evolution_sizes(population: int | None, evaluations: int) -> str:
    """The sizes evolution ran with, in words for the report."""
    if population:
        return (
            f"- evolution: population {population}, parents {population // 5}, mutants and "
            f"crossovers {(2 * population) // 5} each (given with --evolution-population)."
        )
    sizes = paper_schedule(evaluations, EvolutionarySearch.defaults["iterations"])
    return (
        f"- evolution: the search's default for a budget of {evaluations}, the paper's "
        f"125/25/50/50 and {sizes['iterations']} iterations scaled down: population "
        f"{sizes['population']}, parents {sizes['parents']}, {sizes['mutations']} mutants, "
        f"{sizes['crossovers']} crossovers."
    )


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--supernet", required=True)
    p.add_argument("--predictor", required=True)
    p.add_argument("--constraint", required=True, help="e.g. latency_ms<=60")
    p.add_argument("--evaluations", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--seeds-of",
        action="append",
        default=[],
        metavar="STRATEGY=N",
        help="fewer (or more) seeds for one strategy, e.g. optuna-tpe=1 when it is too slow; "
        "the report names every such exception",
    )
    p.add_argument("--valid-size", type=int, default=100)
    p.add_argument("--strategies", default="random,evolution,optuna-tpe,optuna-nsga2,nevergrad")
    p.add_argument(
        "--evolution-population",
        type=int,
        help="explicit evolution sizes (parents, mutants, crossovers in the paper's 1:2:2 ratio "
        "to it); default: the search's own scaling of the paper's setting to the budget",
    )
    p.add_argument(
        "--objectives",
        default="loss,latency_ms",
        help="what every strategy optimises; the default matches the hypervolume measured",
    )
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "bench-strategies")
    p.add_argument("--scaling-sizes", default="50,100,200,400,1000")
    args = p.parse_args()
    info = machine_info(args.threads)
    bound = float(args.constraint.split("<=")[1])
    strategies = args.strategies.split(",")
    seeds_of = {name: int(n) for name, n in (item.split("=") for item in args.seeds_of)}
    runs: dict[str, list[Path]] = {}
    for strategy in strategies:
        for seed in range(seeds_of.get(strategy, args.seeds)):
            run = args.runs_dir / f"{strategy}-s{seed}"
            runs.setdefault(strategy, []).append(run)
            if (run / "summary.json").exists():
                continue
            extra = []
            if strategy == "evolution" and args.evolution_population:
                pop = args.evolution_population
                extra = [
                    f"--option=population={pop}",
                    f"--option=parents={pop // 5}",
                    f"--option=mutations={(2 * pop) // 5}",
                    f"--option=crossovers={(2 * pop) // 5}",
                    "--option=iterations=100",
                ]
            flags = [
                f"--strategy={strategy}",
                f"--supernet={args.supernet}",
                f"--predictor={args.predictor}",
                f"--constraint={args.constraint}",
                f"--evaluations={args.evaluations}",
                f"--valid-size={args.valid_size}",
                f"--objectives={args.objectives}",
                f"--seed={seed}",
                f"--threads={args.threads}",
                f"--run={run}",
                "--no-progress",
                *extra,
            ]
            if (run / "search.json").exists():
                flags.append("--resume")
            search_main(flags)
    first_reference = json.loads((runs[strategies[0]][0] / "reference.json").read_text())
    reference = (first_reference["smallest"]["loss"] + 1.0, bound)
    table, curves, payload = [], {}, {}
    for strategy, folders in runs.items():
        per_seed = []
        for run in folders:
            rows = _rows(run)
            points = [
                (r["loss"], r["latency_ms"]) if r["feasible"] else (float("nan"),) * 2 for r in rows
            ]
            curve = hypervolume_curve(points, reference)
            feasible = [r for r in rows if r["feasible"]]
            per_seed.append(
                {
                    "run": str(run),
                    "evaluations": len(rows),
                    "hypervolume": curve[-1],
                    "best_loss": min(r["loss"] for r in feasible),
                    "feasible": len(feasible),
                    "ms_per_eval": 1000 * statistics.mean(r["eval_s"] for r in rows),
                    "ask_ms": 1000 * statistics.mean(r["ask_s"] for r in rows),
                    "curve": curve,
                }
            )
        curves[strategy] = [
            statistics.median(seed["curve"][i] for seed in per_seed)
            for i in range(min(len(s["curve"]) for s in per_seed))
        ]
        summary = {
            key: _quartiles([s[key] for s in per_seed])
            for key in ("hypervolume", "best_loss", "feasible", "ms_per_eval", "ask_ms")
        }
        payload[strategy] = {"seeds": per_seed, "summary": summary}
        hv, best = summary["hypervolume"], summary["best_loss"]
        table.append(
            [
                strategy,
                f"{hv['median']:.4f} [{hv['q1']:.4f}, {hv['q3']:.4f}]",
                f"{best['median']:.4f} [{best['q1']:.4f}, {best['q3']:.4f}]",
                f"{summary['feasible']['median']:.0f}",
                f"{summary['ms_per_eval']['median']:.1f}",
                f"{summary['ask_ms']['median']:.2f}",
            ]
        )
    sizes = [int(s) for s in args.scaling_sizes.split(",")]
    scaling = _scaling(args.supernet, sizes, 10, args.threads)
    figure = Figure(figsize=(7, 4.5))
    ax = figure.subplots()
    for strategy, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=strategy)
    ax.set_xlabel("architectures scored")
    ax.set_ylabel("hypervolume (median over seeds)")
    ax.set_title(f"reference point: loss {reference[0]:.3f}, latency {reference[1]:g} ms")
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out / "strategies_hypervolume.png", dpi=120)
    random_hv = (
        payload["random"]["summary"]["hypervolume"]["median"] if "random" in payload else None
    )
    lines = [
        "# Search strategies: same SuperNet, predictor, subset and constraint",
        "",
        machine_markdown(info),
        "",
        f"- SuperNet `{args.supernet}`, predictor `{args.predictor}`, constraint "
        f"`{args.constraint}`, {args.evaluations} architectures scored per run (each once), "
        f"{args.seeds} seeds"
        + "".join(f" ({name}: {n} only)" for name, n in seeds_of.items())
        + f", validation subset of {args.valid_size} sentences; every "
        f"strategy optimises `{args.objectives}`.",
        f"- Hypervolume of the feasible (loss, latency) points against the fixed reference "
        f"point (loss {reference[0]:.4f} = smallest sub-network's loss + 1, latency "
        f"{reference[1]:g} ms = the bound); larger is better.",
        _evolution_sizes(args.evolution_population, args.evaluations),
        "",
        markdown_table(
            [
                "strategy",
                "hypervolume median [IQR]",
                "best loss median [IQR]",
                "feasible",
                "ms / eval",
                "ask ms / arch",
            ],
            table,
        ),
        "",
    ]
    if random_hv is not None:
        for strategy in payload:
            if strategy != "random":
                hv = payload[strategy]["summary"]["hypervolume"]["median"]
                lines.append(f"- {strategy} vs random: median hypervolume {hv / random_hv:.3f}x")
    lines += [
        "",
        "Scoring time per architecture against the validation subset size:",
        "",
        markdown_table(
            ["sentences", "target tokens", "ms / arch"],
            [[s["valid_sentences"], s["tokens"], f"{s['ms_per_arch']:.1f}"] for s in scaling],
        ),
        "",
        "![hypervolume vs evaluations](strategies_hypervolume.png)",
    ]
    md = "\n".join(lines)
    print(md)
    result = {**info, "reference_point": reference, "strategies": payload, "scaling": scaling}
    if not args.no_write:
        write_results(args.out, "strategies", result, md)


if __name__ == "__main__":
    main()
