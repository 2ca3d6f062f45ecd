"""task_moe.md and task_moe.json: the table, the targets, the routing search, compute per
stage, commands, machine and date; every figure not yet computed reads "pending"."""

from __future__ import annotations

import json
import shutil
import statistics
from typing import Any

from common import machine_markdown, markdown_table
from staged.records import last_metrics, seeds_scored
from staged.report import (
    PENDING,
    fmt,
    over_seeds,
    pending_lines,
    sentences_scored,
    speed_notes,
    status_line,
)
from staged.stages import Outcome, StageTimes

from automoe.files import write_text_atomic
from task_moe import figures
from task_moe.plan import ROWS, SEARCHED, Plan

LABELS = {
    "dense": "dense",
    "token": "token-MoE",
    "sentence": "sentence-MoE",
    "task": "task-MoE (exported per pair)",
    "mixed": "mixed: token encoder, task decoder (exported per pair)",
    SEARCHED: "routing search winner",
}
DENSE_BLEU_TARGET = 25.0  # the budget must make the dense model translate (en-de)
BLEU_GAP = 0.5  # task-MoE's mean BLEU within this of token-MoE's
DENSE_SPEED = 0.95  # task-MoE's throughput at least this share of dense, every batch size
TOKEN_SPEED = 1.2  # and this multiple of token-MoE's at the small batch sizes
TOKEN_SPEED_BATCHES = (1, 16)
# The trainings of the long run that predate each change of `staged.report.SPEED_CHANGES`
SLOWER_TRAININGS = {
    "attention": ("dense-s1",),
    "loss": ("dense-s1", "token-s1", "sentence-s1", "the routing SuperNet"),
}


def quality_table(plan: Plan, collected: dict[str, Any]) -> str:
    pairs = plan.sizes.pairs
    header = ["model", *(f"BLEU {p}" for p in pairs), "mean BLEU", *(f"chrF {p}" for p in pairs)]
    rows = []
    for row in ROWS:
        data = collected["rows"][row]
        rows.append(
            [
                LABELS[row],
                *(over_seeds(data["pairs"][p]["bleu"]) for p in pairs),
                over_seeds(data["mean_bleu"]),
                *(over_seeds(data["pairs"][p]["chrf"]) for p in pairs),
            ]
        )
    return markdown_table(header, rows)


def _speed(collected: dict[str, Any], row: str, size: int) -> dict[str, Any] | None:
    record = collected["throughput"]
    if record is None or row not in record["models"]:
        return None
    return record["models"][row]["batch"].get(str(size))


def _per_pair(deploy: dict[str, Any] | None, key: str, spec: str) -> str:
    """One figure when every pair deploys the same size, else the range over pairs."""
    if deploy is None:
        return PENDING
    values = sorted(d[key] for d in deploy["pairs"].values())
    low, high = format(values[0], spec), format(values[-1], spec)
    return low if low == high else f"{low}-{high}"


def deployment_table(plan: Plan, collected: dict[str, Any]) -> str:
    pair = plan.sizes.pairs[0]
    sizes = plan.sizes.batch_sizes
    header = [
        "model",
        "total params",
        "deployed params per pair",
        "deployed file MiB per pair",
        f"peak RSS MiB ({pair})",
        *(f"sent/s @{b} (x dense)" for b in sizes),
    ]
    memory = collected["memory"]
    rows = []
    for row in ROWS:
        deploy = collected["rows"][row]["deployment"]
        rss = None if memory is None else memory["models"].get(row, {}).get("peak_rss_mib")
        cells = [
            LABELS[row],
            PENDING if deploy is None else f"{deploy['total_params']:,}",
            _per_pair(deploy, "params", ","),
            _per_pair(deploy, "file_mib", ".1f"),
            fmt(rss, ".0f"),
        ]
        for size in sizes:
            speed = _speed(collected, row, size)
            cells.append(
                PENDING
                if speed is None
                else f"{speed['sentences_per_s']:.1f} ({speed['vs_dense']:.2f}x)"
            )
        rows.append(cells)
    return markdown_table(header, rows)


def _verdict(met: bool | None, text: str, by: str = "", why: str = "") -> dict[str, Any]:
    """`by`: how far a missed target is off; `why`: what the figures say caused it."""
    return {
        "met": met,
        "text": text,
        "by": by if met is False else "",
        "why": why if met is False else "",
    }


def _seeds_scored(planned: int, *stats: dict[str, Any]) -> str:
    """Empty once every planned seed of each row is scored, else how far it has got."""
    scored = seeds_scored(*stats)
    return "" if scored >= planned else f" so far ({scored} of {planned} seeds scored)"


def _token_overhead_why(collected: dict[str, Any], sizes: list[int]) -> str:
    """Why task-MoE's lead over token-MoE shrinks with the batch, from token-MoE's own speed."""
    token = [(b, _speed(collected, "token", b)) for b in sizes]
    shown = ", ".join(f"{s['vs_dense']:.2f}x at {b}" for b, s in token if s is not None)
    return (
        f"token-MoE itself runs at {shown} the dense model's throughput: its routing work "
        "(the router, sorting tokens to experts, one smaller product per expert) is paid per "
        "decoding step and a larger batch shares it, so a task-MoE at the dense model's speed "
        "leads it less as the batch grows"
    )


def targets(plan: Plan, collected: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: met, missed by how much, or pending."""
    rows = collected["rows"]
    pair = plan.sizes.pairs[0]
    out = []
    dense_de = rows["dense"]["pairs"][pair]["bleu"]
    out.append(
        _verdict(
            None if dense_de is None else dense_de["mean"] >= DENSE_BLEU_TARGET,
            f"budget: dense reaches >= {DENSE_BLEU_TARGET:g} BLEU on {pair}: "
            + (PENDING if dense_de is None else f"{dense_de['mean']:.2f}"),
        )
    )
    task, token, dense = (rows[r]["mean_bleu"] for r in ("task", "token", "dense"))
    planned = len(plan.sizes.seeds)
    within = f"task-MoE mean BLEU within {BLEU_GAP} of token-MoE's"
    if task and token:
        gap = task["mean"] - token["mean"]
        scored = _seeds_scored(planned, task, token)
        out.append(
            _verdict(
                None if scored else gap >= -BLEU_GAP,
                f"{within}: {gap:+.2f}{scored}",
                by=f"{-gap - BLEU_GAP:.2f} BLEU",
            )
        )
    else:
        out.append(_verdict(None, f"{within}: pending"))
    beats = "task-MoE beats dense by more than the seed spread"
    if task and dense:
        gain, spread = task["mean"] - dense["mean"], max(task["spread"], dense["spread"])
        scored = _seeds_scored(planned, task, dense)
        out.append(
            _verdict(
                None if scored else gain > spread,
                f"{beats}: {gain:+.2f} BLEU"
                + (scored if scored else f" against a spread of {spread:.2f}"),
                by=f"{spread - gain:.2f} BLEU",
            )
        )
    else:
        out.append(_verdict(None, f"{beats}: pending"))
    deploy_task, deploy_dense = rows["task"]["deployment"], rows["dense"]["deployment"]
    if deploy_task and deploy_dense:
        sizes = {p: d["params"] for p, d in deploy_task["pairs"].items()}
        base = deploy_dense["pairs"][pair]["params"]
        worst = max(sizes.values())
        out.append(
            _verdict(
                worst <= base,
                f"task-MoE deploys at the dense model's size: {worst:,} parameters per pair "
                f"at most, dense {base:,}",
                by=f"{worst - base:,} parameters",
            )
        )
    else:
        out.append(_verdict(None, "task-MoE deploys at the dense model's size: pending"))
    for size in plan.sizes.batch_sizes:
        speed = _speed(collected, "task", size)
        vs_dense = None if speed is None else speed["vs_dense"]
        out.append(
            _verdict(
                None if vs_dense is None else vs_dense >= DENSE_SPEED,
                f"task-MoE throughput >= {DENSE_SPEED}x dense at batch {size}: "
                + fmt(vs_dense)
                + ("" if vs_dense is None else "x"),
                by="" if vs_dense is None else f"{DENSE_SPEED - vs_dense:.2f}x",
            )
        )
        if size in TOKEN_SPEED_BATCHES:
            vs_token = None if speed is None else speed["vs_token"]
            out.append(
                _verdict(
                    None if vs_token is None else vs_token >= TOKEN_SPEED,
                    f"task-MoE throughput >= {TOKEN_SPEED}x token-MoE at batch {size}: "
                    + fmt(vs_token)
                    + ("" if vs_token is None else "x"),
                    by="" if vs_token is None else f"{TOKEN_SPEED - vs_token:.2f}x",
                    why=_token_overhead_why(collected, plan.sizes.batch_sizes),
                )
            )
    return out


def targets_md(found: list[dict[str, Any]]) -> str:
    mark = {True: "met", False: "**MISSED**", None: "pending"}
    lines = []
    for t in found:
        verdict = mark[t["met"]] + (f" by {t['by']}" if t.get("by") else "")
        lines.append(f"- {t['text']} ({verdict})" + (f". Why: {t['why']}" if t.get("why") else ""))
    return "\n".join(lines)


def search_md(collected: dict[str, Any], figure: str | None) -> str:
    search = collected["search"]
    if search is None:
        return "The routing search is pending."
    winner = search["winner"]
    finding = search["finding"]
    enc, dec = finding["encoder_token_share"], finding["decoder_task_share"]
    agrees = enc is not None and dec is not None and enc > 0.5 and dec > 0.5
    lines = [
        f"- `{search['command']}`",
        f"- question: {search['question']}; {search['evaluations']} architectures scored, "
        f"{search['feasible']} under the bound ({search['bound_ms']:.2f} ms: the dense "
        "model's latency, measured the same way)",
        "- winner (the front's most accurate point): encoder "
        + (" / ".join(winner["encoder"]) if winner else "none")
        + ", decoder "
        + (" / ".join(winner["decoder"]) if winner else "none"),
        f"- MoE layers on the front: encoder {finding['moe_layers']['encoder']}, decoder "
        f"{finding['moe_layers']['decoder']}; token routing in {fmt(enc, '.0%')} of the "
        f"encoder's, task routing in {fmt(dec, '.0%')} of the decoder's: the paper's finding "
        f"(token encoder, task decoder) is {'reproduced' if agrees else 'not reproduced'}",
        "",
        "| front point | latency ms | val loss | encoder | decoder |",
        "|---|---|---|---|---|",
    ]
    for i, p in enumerate(search["front"], 1):
        lines.append(
            f"| {i} | {p['latency_ms']:.1f} | {p['loss']:.3f} | "
            f"{' / '.join(p['routing']['encoder'])} | {' / '.join(p['routing']['decoder'])} |"
        )
    if figure:
        lines += ["", f"![routing per layer]({figure})"]
    return "\n".join(lines)


def compute_md(times: StageTimes) -> str:
    """Wall and CPU hours per kind of stage (CPU = wall x threads)."""
    kinds: dict[str, list[float]] = {}
    for name, entry in times.data.items():
        kind = name.split(" ")[0]
        kinds.setdefault(kind, []).append(entry["seconds"] * entry["threads"])
    rows = [[kind, str(len(v)), f"{sum(v) / 3600:.2f}"] for kind, v in kinds.items()]
    total = sum(sum(v) for v in kinds.values()) / 3600
    rows.append(["total", "", f"{total:.2f}"])
    return markdown_table(["stage kind", "stages", "CPU-hours (so far)"], rows)


def _budget(plan: Plan, collected: dict[str, Any]) -> str:
    s = plan.sizes
    text = f"{s.final_steps} updates of {s.max_tokens} tokens"
    records = [
        seed["training"]
        for row in collected["rows"].values()
        for seed in row["seeds"].values()
        if seed["training"]
    ]
    if records:
        hours = statistics.median(r["elapsed_s"] for r in records) / 3600
        tokens = statistics.median(r["tokens"] for r in records) / 1e6
        cpus = sorted({r["cpu"] or "a CPU not recorded" for r in records})
        text += (
            f" (about {tokens:.1f} M target tokens, a median {hours:.2f} CPU-hours each, "
            f"on {' and '.join(cpus)})"
        )
    return text


def intro(plan: Plan, collected: dict[str, Any], quick: bool, pending: int) -> str:
    s = plan.sizes
    sentences = sentences_scored(s.eval_limit)
    return (
        f"{status_line(pending, quick)}\n\n"
        f"One-to-many training on {', '.join(s.pairs)} (balanced sampling), every model from "
        f"scratch with the same budget: {_budget(plan, collected)}, seeds {list(s.seeds)}, "
        f"dropout {s.dropout}, bf16. BLEU and chrF: sacrebleu on test_2016_flickr "
        f"({sentences} sentences per pair), beam {s.beam}, mean over seeds (range). A model "
        "that routes any layer by task is deployed as `python -m automoe.export --task PAIR` "
        "per pair (and scored so); the others deploy whole. Sizes, throughput and memory are "
        "those of each row's architecture as an untrained model (one update of `automoe.train "
        "--arch`, exported as above): they do not depend on the weights, so they hold for every "
        f"seed. Throughput: beam-{s.beam} decoding of the same {s.pairs[0]} test sentences at "
        "each batch size, every sentence forced to its source length times the references' "
        "target/source token ratio (the work trained models do on these references, whatever "
        "the weights), every model interleaved in one run, median over quiet rounds, 'x dense' "
        f"the median per-round ratio{_timed_on(collected)}. Peak RSS: `python -m "
        f"automoe.translate` of {s.memory_sentences} sentences, whole process; untrained "
        "outputs run to the length limit, so it bounds a trained model's from above."
    )


def _timed_on(collected: dict[str, Any]) -> str:
    """The machine of the throughput run, which may not be the one writing the report."""
    record = collected["throughput"]
    if record is None:
        return ""
    machine, threads = record["machine"], record["settings"]["threads"]
    return f" (timed on {machine['cpu_model']}, {threads} thread(s), {machine['date'][:10]})"


def write(
    plan: Plan,
    collected: dict[str, Any],
    outcome: Outcome,
    times: StageTimes,
    info: dict[str, Any],
    cont: str,
    quick: bool,
) -> None:
    layout = plan.layout
    layout.figures.mkdir(parents=True, exist_ok=True)
    figure = figures.routing_grid(collected["search"], layout.figures / "routing_front.png")
    shown = None if figure is None else f"{layout.figures.name}/{figure.name}"
    _copy_search(plan)
    found = targets(plan, collected)
    stages = plan.stages()
    pending = [s.name for s in stages if not s.done()]
    memory = collected["memory"]
    floor = (
        ""
        if memory is None
        else f"\nPeak RSS is the whole process; one that only imports the command peaks at "
        f"{memory['import_only_mib']:.0f} MiB."
    )
    supernet = last_metrics(layout.supernet)
    md = [
        "# Task-MoE at a real budget: quality, deployed size and CPU throughput by routing",
        "",
        machine_markdown(info),
        "",
        intro(plan, collected, quick, len(pending)),
        "",
        "## Quality",
        "",
        quality_table(plan, collected),
        "",
        "## Deployed for one pair",
        "",
        deployment_table(plan, collected),
        floor,
        "",
        "## Targets",
        "",
        targets_md(found),
        "",
        "## The routing search",
        "",
        "Every encoder and decoder layer of the space "
        f"(`{plan.inputs.space.name}`, {', '.join(plan.space.routing_modes())}) chooses its "
        "routing; the SuperNet was trained on all pairs"
        + ("" if supernet is None else f" ({supernet['step']} updates)")
        + ". Its winner is trained from scratch as the last row of the tables.",
        "",
        search_md(collected, shown),
        "",
        "## Compute",
        "",
        compute_md(times),
        *speed_notes(SLOWER_TRAININGS, quick),
        "",
        "## Commands",
        "",
        *[f"- {s.name}: `{s.shown()}`" for s in stages if _shown(plan, s.name)],
        "",
        "## Pending",
        "",
        *(
            [
                f"{len(pending)} stage(s) pending:",
                *pending_lines(stages, outcome),
                "",
                f"Continue with: `{cont}`",
            ]
            if pending
            else ["All stages are done."]
        ),
    ]
    write_text_atomic(layout.report_md, "\n".join(md) + "\n")
    payload = {
        "machine": info,
        "sizes": plan.sizes.fixed(),
        "collected": collected,
        "targets": found,
        "figures": {"routing_front": shown},
        "ran": outcome.done,
        "failed": outcome.failed,
        "pending": pending,
        "stage_times": times.data,
        "continue": cont,
    }
    write_text_atomic(layout.report_json, json.dumps(payload, indent=2, default=str) + "\n")


def _shown(plan: Plan, name: str) -> bool:
    """The commands the report lists: the search's, and the first seed's of every row
    (its training, export and evaluation on the first pair); the others differ only in seed
    and pair."""
    first = f"-s{plan.sizes.seeds[0]}"
    return name in ("supernet", "latency dense", "search routing") or name.endswith(
        (first, f"{first} {plan.sizes.pairs[0]}")
    )


def _copy_search(plan: Plan) -> None:
    """The routing search's record beside the report (committed; its folder is not)."""
    if plan.arch(SEARCHED) is None:
        return
    out = plan.layout.figures / "routing_search"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("best.yaml", "summary.json", "evaluations.csv", "pareto.json"):
        source = plan.layout.search / name
        if source.is_file():
            shutil.copyfile(source, out / name)
