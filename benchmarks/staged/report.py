"""Report pieces the staged benchmarks share: what is pending and why, and CPU time spent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from staged.stages import Outcome, Stage


def pending_lines(stages: Sequence[Stage], outcome: Outcome) -> list[str]:
    """One line per stage not done, with why (failed, paused, waiting for what)."""
    lines = []
    for s in stages:
        if s.done():
            continue
        why = outcome.failed.get(s.name) and f"FAILED: {outcome.failed[s.name]}"
        why = why or ("paused (resumes)" if s.name in outcome.paused else "")
        why = why or outcome.waiting.get(s.name, "")
        lines.append(f"- {s.name}{f' ({why})' if why else ''}")
    return lines


PENDING = "pending"


def fmt(value: float | None, spec: str = ".2f", scale: float = 1.0) -> str:
    """A figure, or "pending" while its stage has not run."""
    return PENDING if value is None else format(value / scale, spec)


def over_seeds(stats: dict[str, Any] | None) -> str:
    """Mean over seeds with their range (`records.seed_stats`)."""
    if stats is None:
        return PENDING
    if len(stats["values"]) < 2:
        return f"{stats['mean']:.2f}"
    return f"{stats['mean']:.2f} ({stats['min']:.2f}-{stats['max']:.2f})"


def status_line(pending: int, quick: bool) -> str:
    """The report's first line: complete or how much is pending; a quick run says so."""
    status = "complete" if not pending else f"{pending} stage(s) pending (see the end)"
    toy = " QUICK RUN (--quick): toy sizes, the figures mean nothing." if quick else ""
    return f"Status: {status}.{toy}"


def sentences_scored(eval_limit: int) -> str:
    return f"first {eval_limit}" if eval_limit else "all 1,000"


@dataclass(frozen=True)
class SpeedChange:
    """A change of the training code that made an update cheaper without changing its result."""

    what: str
    date: str
    gain: str
    results: str


SPEED_CHANGES = {
    "attention": SpeedChange(
        "bf16 training computed attention in plain matmuls",
        "2026-12-01",
        "1.13-1.15x",
        "train_attention.md",
    ),
    "loss": SpeedChange(
        "the label-smoothed loss was fused per slice of rows",
        "2026-12-02",
        "1.22-1.38x in bf16 (1.07-1.12x in fp32)",
        "train_loss.md",
    ),
}


def speed_notes(before: Mapping[str, Sequence[str]], quick: bool) -> list[str]:
    """Per change in `SPEED_CHANGES`, the trainings of this benchmark's long run that predate
    it: their CPU-hours are not comparable as they stand with those of later ones."""
    if quick:
        return []
    lines = []
    for key, trainings in before.items():
        if not trainings:
            continue
        c = SPEED_CHANGES[key]
        lines += [
            "",
            f"Trainings {', '.join(trainings)} ran before {c.what} ({c.date}); later ones spend "
            f"{c.gain} less time per update on the same work ([{c.results}]({c.results})): "
            "compare CPU-hours with that in mind.",
        ]
    return lines
