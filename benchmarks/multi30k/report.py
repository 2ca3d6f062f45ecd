"""`multi30k.md` and `multi30k.json`: the table, the targets, the estimator study, compute per
stage, figures, commands, machine and date; every figure not yet computed reads "pending"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import machine_markdown, markdown_table
from staged import ledger
from staged.records import last_metrics, read_json, training_record
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
from multi30k import figures, reused
from multi30k.placement import placement_md
from multi30k.plan import Plan
from multi30k.rows import FINETUNED, FRONT_SEARCH, LARGEST, ROWS

# The trainings of the long run that predate each change of `staged.report.SPEED_CHANGES`
SLOWER_TRAININGS = {
    "attention": ("dense-s1", "switch-s1"),
    "loss": tuple(
        f"{row}-s{seed}"
        for seed in (1, 2)
        for row in ("dense", "switch", "hat-half", "random-half", "automoe-half", "automoe-third")
    ),
}


def _train_hours(row: dict[str, Any]) -> str:
    """Each seed's hours apart: seeds may have trained on different CPUs."""
    runs = [s["training"] for s in row.get("seeds", {}).values() if s["training"]]
    if not runs:
        return PENDING
    return " / ".join(f"{r['elapsed_s'] / 3600:.2f}" for r in runs)


def _cpus(collected: dict[str, Any]) -> str:
    """Which CPU each seed's trainings ran on, for the hours column."""
    by_seed: dict[str, set[str]] = {}
    for row in collected["rows"].values():
        for seed, data in row.get("seeds", {}).items():
            if data["training"]:
                by_seed.setdefault(str(seed), set()).add(data["training"]["cpu"] or "not recorded")
    parts = [f"seed {seed} on {', '.join(sorted(cpus))}" for seed, cpus in sorted(by_seed.items())]
    return "; ".join(parts) if parts else "pending"


def table(collected: dict[str, Any]) -> str:
    dense = collected["rows"]["dense"]
    rows = []
    for row in [*collected["rows"].values(), collected["largest"]]:
        costs, lat, thr = row["costs"], row["latency"], row["throughput"]
        flops_ratio = None
        if costs and dense["costs"]:
            flops_ratio = costs["flops"] / dense["costs"]["flops"]
        finetuned = row.get("finetuned")
        rows.append(
            [
                row["label"],
                over_seeds(row["bleu"]),
                over_seeds(row["chrf"]),
                (fmt(finetuned["bleu"]) if finetuned else PENDING)
                if row["key"] in FINETUNED
                else "",
                PENDING if lat is None else f"{lat['median']:.1f} ({lat['iqr']:.1f})",
                fmt(None if lat is None else lat["vs_dense"]),
                fmt(None if costs is None else costs["flops"], ".3f", 1e9),
                fmt(flops_ratio),
                PENDING
                if costs is None
                else f"{costs['params_active'] / 1e6:.2f} / {costs['params_total'] / 1e6:.2f}",
                fmt(None if thr is None else thr["sentences_per_s"], ".1f"),
                _train_hours(row) if row["key"] != LARGEST else "",
            ]
        )
    header = [
        "model",
        "BLEU (seed range)",
        "chrF",
        "BLEU fine-tuned",
        "latency ms (IQR)",
        "x dense",
        "GFLOPs",
        "x dense",
        "params M active / total",
        "sent/s",
        "train h (per seed)",
    ]
    return markdown_table(header, rows)


def compute(plan: Plan, collected: dict[str, Any], times: StageTimes) -> list[list[str]]:
    """Wall and CPU hours per stage (CPU = wall x threads), and their total."""
    rows: list[tuple[str, float | None, int | None, str]] = []
    finished = ledger.recorded(plan.layout.ledger)

    def stage(name: str, note: str = "") -> None:
        entry = times.data.get(name)
        if entry is None:
            # Done before stage times were kept: its hours are unknown, not still to come.
            rows.append((name, None, None, note or ("done" if name in finished else "")))
        else:
            rows.append((name, entry["seconds"], entry["threads"], note))

    supernet = (
        reused.keep(plan.supernet, plan.layout.work)
        if plan.inputs.supernet
        else last_metrics(plan.supernet)
    )
    for old in reused.earlier(plan.layout.work):
        note = "the same settings; its weights were lost with that machine"
        rows.append(("SuperNet training (an earlier machine)", old["elapsed_s"], None, note))
    again = times.data.get("supernet")  # trained again here from the reused settings
    rows.append(
        (
            "SuperNet training",
            None if supernet is None else supernet["elapsed_s"],
            again["threads"] if again else (None if plan.inputs.supernet else plan.inputs.jobs),
            f"reused: {plan.supernet}" if plan.inputs.supernet else "",
        )
    )
    for name in ("latency dataset", "latency predictor"):
        stage(name, "reused" if plan.inputs.predictor else "")
    stage("dense latency")
    for row in ROWS:
        if row.strategy:
            search = collected["rows"][row.key]["search"]["summary"]
            note = "" if search is None else f"{search['evaluations']} evaluations"
            wall = None if search is None else search["wall_s"]
            rows.append((f"search {row.key} (scoring)", wall, 1, note))
    front = read_json(plan.layout.search(FRONT_SEARCH) / "summary.json")
    note = "the estimator's front" + (
        "" if front is None else f", {front['evaluations']} evaluations"
    )
    rows.append(
        (f"search {FRONT_SEARCH} (scoring)", None if front is None else front["wall_s"], 1, note)
    )
    first = plan.sizes.seeds[0]
    names = [f"{r.key}-s{s}" for r in ROWS for s in plan.sizes.seeds]
    names += [f"{k}-ft-s{first}" for k in FINETUNED]
    names += [f"{p['name']}-s{first}" for p in plan.front_points()]
    for name in names:
        record = training_record(plan.layout.train(name))
        cpu = times.data.get(f"train {name}", {}).get("cpu", "")
        rows.append((f"train {name}", None if record is None else record["elapsed_s"], 1, cpu))
    for prefix, label in (("eval ", "evaluations"), ("inherited ", "inherited evaluations")):
        spent = [v["seconds"] for k, v in times.data.items() if k.startswith(prefix)]
        rows.append((label, sum(spent) if spent else None, 1, f"{len(spent)} stages"))
    stage("timing latency")
    stage("timing throughput")
    out = []
    total = 0.0
    for name, seconds, threads, note in rows:
        if seconds is None and note.startswith(("reused", "done")):
            out.append([name, "not recorded", "?", "?", note])
            continue
        cpu = None if seconds is None or threads is None else seconds * threads
        total += cpu or 0.0
        shown_cpu = "?" if seconds is not None and threads is None else fmt(cpu, ".2f", 3600)
        out.append([name, fmt(seconds, ".2f", 3600), str(threads or "?"), shown_cpu, note])
    out.append(["total (stages done, where recorded)", "", "", f"{total / 3600:.2f}", ""])
    return out


def targets_md(collected: dict[str, Any]) -> str:
    lines = []
    for check in collected["targets"]:
        mark = {True: "MET", False: "MISSED", None: "PENDING"}[check["met"]]
        lines.append(f"- **{mark}** {check['text']}")
    return "\n".join(lines)


def estimator_md(collected: dict[str, Any]) -> str:
    est = collected["estimator"]
    rows = [
        [
            p["label"],
            fmt(p["latency_ms"], ".1f"),
            fmt(p["inherited_val_loss"], ".3f"),
            fmt(p["inherited_bleu"]),
            fmt(p["scratch_bleu"]),
            PENDING
            if None in (p["inherited_bleu"], p["scratch_bleu"])
            else f"{p['inherited_bleu'] - p['scratch_bleu']:+.2f}",
        ]
        for p in est["points"]
    ]
    header = [
        "architecture",
        "latency ms",
        "inherited val loss",
        "inherited BLEU",
        "from-scratch BLEU",
        "gap",
    ]

    def tau(key: str) -> str:
        if est["complete"] < 3:
            return PENDING if est["complete"] < len(est["points"]) else "n/a (under 3 points)"
        value = est.get(key)
        return "n/a (a constant ranking)" if value is None else f"{value:.2f}"

    retrained = (
        f"The SuperNet was trained {est['trainings']} times from the same settings and seed "
        "(its weights do not outlive the machine that trained them): the searches of the "
        "table's rows and the SuperNet-largest BLEU used the first training's weights, the "
        "front search and the inherited scores here the last's. "
        if est["trainings"] > 1
        else ""
    )
    summary = retrained + (
        f"{est['complete']} of {len(est['points'])} architectures complete. Mean absolute BLEU "
        f"gap {fmt(est.get('mean_abs_gap'))}; Kendall tau (inherited BLEU vs from-scratch BLEU) "
        f"{tau('tau_bleu')}; Kendall tau (minus inherited validation loss vs from-scratch "
        f"BLEU) {tau('tau_loss')}."
    )
    return markdown_table(header, rows) + "\n\n" + summary


def constraints_md(collected: dict[str, Any]) -> str:
    c = collected["constraints"]
    if c is None:
        return f"Dense latency and search bounds: {PENDING}."
    ratio = c["dense_predicted_ms"] / c["dense_measured_ms"]
    lines = [
        f"Dense model: `latency measure` on the SuperNet gives {c['dense_measured_ms']:.2f} ms "
        f"(trimmed mean; median {fmt(c['dense_measured_median_ms'])}, IQR "
        f"{fmt(c['dense_measured_iqr_ms'])}), the latency predictor {c['dense_predicted_ms']:.2f} "
        f"ms ({ratio:.2f}x). The searches compare predicted latencies, so the bounds are "
        "fractions of the predictor's figure: a predictor off in scale moves them with it.",
        "",
    ]
    for key, b in c["bounds"].items():
        raised = (
            f", raised from {b['wanted_ms']:.2f} ms: fewer than {c['min_share']:.0%} of the "
            "searched space's architectures are predicted under it"
            if b["raised"]
            else ""
        )
        lines.append(f"- {key} ({b['fraction']}): `latency_ms<={b['bound_ms']:.2f}`{raised}")
    return "\n".join(lines)


def commands_md(plan: Plan, collected: dict[str, Any]) -> str:
    stages = {s.name: s for s in plan.stages()}
    lines = []
    for name in ("supernet", "latency dataset", "latency predictor", "dense latency"):
        if name in stages:
            lines.append(f"- {name}: `{stages[name].shown()}`")
    for row in collected["rows"].values():
        lines.append(f"- **{row['label']}**")
        if row["search"]:
            lines.append(f"  - search: `{row['search']['command']}`")
        for what, command in row["commands"].items():
            if command:
                lines.append(f"  - {what}: `{command}`")
    seeds = ", ".join(map(str, plan.sizes.seeds))
    lines.append(f"- every seed ({seeds}): the same commands with `--seed S` and `-sS` folders")
    lines.append(f"- SuperNet largest: `{collected['largest']['commands']['evaluate']}`")
    inherited = [s for s in stages.values() if s.name.startswith("inherited ")]
    if inherited:
        lines.append(
            f"- inherited evaluations (one per architecture and split), e.g. "
            f"`{inherited[0].shown()}`"
        )
    lines.append(f"- search {FRONT_SEARCH}: `{stages[f'search {FRONT_SEARCH}'].shown()}`")
    for name in ("timing latency", "timing throughput", "front", "constraints", "baselines"):
        lines.append(f"- {name}: {stages[name].shown()}")
    return "\n".join(lines)


def pending_md(plan: Plan, outcome: Outcome, cont: str) -> tuple[str, list[str]]:
    pending = [s.name for s in plan.stages() if not s.done()]
    if not pending:
        return "All stages are done.", []
    lines = [f"{len(pending)} stage(s) pending:", *pending_lines(plan.stages(), outcome)]
    if plan.front_points() == [] and not plan.layout.front.is_file():
        lines.append(
            "- and the trainings and evaluations of the search's front points, "
            "known once its search is done"
        )
    lines.append(f"\nContinue with: `{cont}`")
    return "\n".join(lines), pending


def _budget(plan: Plan, collected: dict[str, Any]) -> str:
    """The common training budget in updates, target tokens and CPU-hours."""
    text = f"{plan.sizes.final_steps} updates"
    for row in collected["rows"].values():
        for seed in row["seeds"].values():
            if seed["training"]:
                record = seed["training"]
                return text + (
                    f" (about {record['tokens'] / 1e6:.1f} M target tokens; {row['label']}: "
                    f"{record['elapsed_s'] / 3600:.2f} CPU-hours on 1 thread of "
                    f"{record['cpu'] or 'a CPU not recorded'})"
                )
    return text


def intro(plan: Plan, collected: dict[str, Any], quick: bool, pending: int) -> str:
    """Status, and how every column is measured."""
    s = plan.sizes
    sentences = sentences_scored(s.eval_limit)
    return (
        f"{status_line(pending, quick)}\n\n"
        "Every model is trained from scratch with the same budget: "
        f"{_budget(plan, collected)}, seeds {list(s.seeds)}, dropout {s.dropout}. BLEU and "
        f"chrF: sacrebleu on test_2016_flickr ({sentences} sentences), beam {s.beam}, mean "
        "over seeds (range). Latency: the paper's protocol (batch 1, 30-token source, 30 "
        "cached decoder steps, beam 5), every model measured interleaved in one run, median "
        "(IQR) and the median per-round ratio to dense. GFLOPs and parameters as the search "
        "counts them (30/30-token pair, no output projection, uniform routing; parameters "
        "without embeddings; active = one token's). Throughput: "
        f"beam-{s.beam} decoding of test sentences in batches of {s.throughput_batch}. The "
        f"searches: {s.evaluations} evaluations each, validation loss with inherited weights "
        "under the latency bound. Training hours: one thread, per seed (the trainings ran in "
        f"several sessions: {_cpus(collected)})."
    )


def timing_md(collected: dict[str, Any]) -> str:
    """When and how loaded the machine was while the timing stage ran (stages run in
    several sessions; the line above is this invocation's)."""
    timing = collected["timing_machine"]
    if timing is None:
        return ""
    return (
        f"- latency measured {timing['date']} with {timing['threads']} thread(s), load average "
        f"at its start {timing['loadavg_at_start']}; rounds used: quiet ones when at least 3 "
        "were (see multi30k.json)"
    )


def write(
    plan: Plan,
    collected: dict[str, Any],
    outcome: Outcome,
    times: StageTimes,
    info: dict[str, Any],
    cont: str,
    quick: bool,
) -> None:
    layout, sizes = plan.layout, plan.sizes
    drawn = figures.draw_all(collected, layout.figures)
    _copy_winners(plan)
    pending, names = pending_md(plan, outcome, cont)
    compute_rows = compute(plan, collected, times)

    def fig(key: str, title: str) -> str:
        path = drawn[key]
        if path is None:
            return f"{title}: {PENDING}"
        return f"![{title}]({Path(path).relative_to(layout.results)})"

    md = "\n".join(
        [
            "# AutoMoE on Multi30k en-de: the headline comparison",
            "",
            intro(plan, collected, quick, len(names)),
            "",
            table(collected),
            "",
            "## Targets",
            "",
            targets_md(collected),
            "",
            "## Search constraints",
            "",
            constraints_md(collected),
            "",
            "## SuperNet as an estimator",
            "",
            estimator_md(collected),
            "",
            fig("estimator", "inherited vs from-scratch BLEU"),
            "",
            "## Figures",
            "",
            fig("bleu_latency", "BLEU against latency"),
            "",
            fig("experts", "experts per layer"),
            "",
            "### Where the searches put their experts",
            "",
            placement_md(collected),
            "",
            "## Compute per stage",
            "",
            markdown_table(["stage", "wall h", "threads", "CPU h", "note"], compute_rows),
            *speed_notes(SLOWER_TRAININGS, quick),
            "",
            "## Commands",
            "",
            commands_md(plan, collected),
            "",
            "## Machine",
            "",
            machine_markdown(info),
            timing_md(collected),
            "",
            "## Pending",
            "",
            pending,
        ]
    )
    payload = {
        "machine": info,
        "sizes": sizes.to_dict(),
        **collected,
        "compute": compute_rows,
        "figures": drawn,
        "stages": [
            {"name": s.name, "command": s.shown(), "done": s.done(), "output": str(s.output)}
            for s in plan.stages()
        ],
        "pending": names,
        "ran": outcome.done,
        "paused": outcome.paused,
        "failed": outcome.failed,
        "continue": cont,
    }
    write_text_atomic(layout.report_json, json.dumps(payload, indent=2, default=str) + "\n")
    write_text_atomic(layout.report_md, md + "\n")


def _copy_winners(plan: Plan) -> None:
    """Each search winner's architecture beside the report, to commit with it."""
    for row in ROWS:
        source = plan.arch_file(row.key)
        target = plan.layout.figures / f"{row.key}.yaml"
        if row.strategy and source.is_file():
            text = source.read_text()
            if not target.is_file() or target.read_text() != text:
                write_text_atomic(target, text)
