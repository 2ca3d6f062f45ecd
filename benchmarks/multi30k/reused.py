"""What the benchmark keeps of a reused SuperNet (`--supernet DIR`), which lies outside the
work folder and so outside the ledger: its settings (`run.json`) and its furthest metrics row.
A new machine then puts the settings back, trains the SuperNet again from them (`automoe.train
--resume` starts a run that has no checkpoint from its first update), and the report counts
the time of every training that made it and says which weights scored what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from staged.records import last_metrics, read_json

from automoe.files import write_text_atomic
from automoe.runs import RUN_FILE

KEPT = "supernet.json"


def keep(supernet: Path, work: Path) -> dict[str, Any] | None:
    """Record the SuperNet's folder, settings and furthest metrics row in `work`; returns
    that row (None before any)."""
    path = work / KEPT
    kept = read_json(path) or {}
    before = dict(kept)
    kept["folder"] = str(supernet)
    if (supernet / RUN_FILE).is_file():
        kept["run"] = json.loads((supernet / RUN_FILE).read_text())
    last, old = last_metrics(supernet), kept.get("metrics")
    if last is not None and old is not None and last["step"] == old["step"] and last != old:
        kept.setdefault("earlier", []).append(old)  # trained again, on a new machine
        kept["metrics"] = last
    elif last is not None and last["step"] > (-1 if old is None else old["step"]):
        kept["metrics"] = last
    if kept != before:
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(kept, indent=1) + "\n")
    return kept.get("metrics")


def earlier(work: Path) -> list[dict[str, Any]]:
    """The last metrics rows of the SuperNet's earlier trainings from the same settings, whose
    weights were lost with their machines (oldest first)."""
    return (read_json(work / KEPT) or {}).get("earlier", [])


def restore_settings(supernet: Path, ledger: Path) -> bool:
    """Put the recorded `run.json` back into the SuperNet folder the ledger names when it
    lacks one (a new machine); True when it did."""
    kept = read_json(ledger / KEPT)
    target = supernet / RUN_FILE
    if target.is_file() or kept is None or "run" not in kept or kept["folder"] != str(supernet):
        return False
    supernet.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, json.dumps(kept["run"], indent=2) + "\n")
    return True
