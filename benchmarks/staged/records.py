"""Reading stage outputs back for a report: None wherever a stage has not written yet."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from automoe.runs import RUN_FILE


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def seed_stats(values: list[float]) -> dict[str, Any] | None:
    """Mean and range over training seeds (the spread a difference must exceed)."""
    if not values:
        return None
    return {
        "mean": statistics.mean(values),
        "min": min(values),
        "max": max(values),
        "spread": max(values) - min(values),
        "values": values,
    }


def seeds_scored(*stats: dict[str, Any]) -> int:
    """Seeds scored in every one of `stats` (`seed_stats` results): a comparison of means is
    judged only once each side has all its seeds, since one seed has no spread."""
    return min(len(s["values"]) for s in stats)


def training_record(run: Path) -> dict[str, Any] | None:
    """Updates, training seconds and (estimated) target tokens of a finished training: one
    whose metrics reached its planned updates (its model may be on another machine:
    `staged.ledger` keeps the metrics, not the model)."""
    path, settings = run / "metrics.jsonl", read_json(run / RUN_FILE)
    if not path.is_file() or settings is None:
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows or rows[-1]["step"] < settings["train"]["max_steps"]:
        return None
    last = rows[-1]
    per_update = statistics.mean(r["tokens"] for r in rows)
    return {
        "steps": last["step"],
        "elapsed_s": last["elapsed_s"],
        "tokens": per_update * last["step"],
    }


def training_on(run: Path, cpu: str | None) -> dict[str, Any] | None:
    """`training_record` and the CPU the training ran on (`stage_cpus`; None: unknown)."""
    record = training_record(run)
    return None if record is None else {**record, "cpu": cpu}


def stage_cpus(stage_times: Path) -> dict[str, str]:
    """Stage -> the CPU model it ran on, where `StageTimes` recorded one."""
    data = read_json(stage_times) or {}
    return {name: entry["cpu"] for name, entry in data.items() if "cpu" in entry}


def last_metrics(run: Path) -> dict[str, Any] | None:
    """The last metrics row of a training (a SuperNet's, which writes no model.pt)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None
