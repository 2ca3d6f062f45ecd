"""Report pieces the staged benchmarks share: what is pending and why, and CPU time spent."""

from __future__ import annotations

from collections.abc import Sequence
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


def attention_note(trainings: Sequence[str], quick: bool) -> list[str]:
    """The trainings of this benchmark's long run that predate bf16 attention in plain matmuls:
    their CPU-hours are not comparable as they stand with those of later ones."""
    if quick or not trainings:
        return []
    return [
        "",
        f"Trainings {', '.join(trainings)} ran before bf16 training computed attention in plain "
        "matmuls (2026-12-01); later ones spend 1.13-1.15x less time per update on the same "
        "work ([train_attention.md](train_attention.md)): compare CPU-hours with that in mind.",
    ]
