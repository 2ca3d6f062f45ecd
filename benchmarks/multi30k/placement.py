"""Where the searched models put their experts, held against the AutoMoE paper's findings.

The paper's Table 5 architectures (our notes in ../shared/reference/papers-notes.md) show
patterns: most experts in the encoder, a decoder shallower than the encoder, the middle
encoder layers holding the most experts and the first the fewest, the decoder's first layer
the most, and layers of several experts that mix widths. Each pattern here is a check on one
architecture; the random search's winner, drawn from the same space under the same bound,
runs through the same checks as a control, so a pattern the control shares is read as the
space's and the bound's, not as something the search learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from multi30k.rows import SEARCHED

CONTROL = "random-half"


@dataclass(frozen=True)
class Layers:
    """Expert widths per layer of each side of an architecture."""

    encoder: list[list[int]]
    decoder: list[list[int]]

    @classmethod
    def of(cls, arch: dict[str, Any]) -> Layers:
        return cls(arch["encoder_ffn_dims"], arch["decoder_ffn_dims"])

    def counts(self, side: str) -> list[int]:
        return [len(layer) for layer in getattr(self, side)]

    @property
    def every_layer(self) -> list[list[int]]:
        return self.encoder + self.decoder


@dataclass(frozen=True)
class Check:
    """One of the paper's patterns: what the paper shows, and one model's value and verdict
    (None where the pattern cannot apply, as a one-layer decoder's fall-off)."""

    name: str
    paper: str
    test: Callable[[Layers], tuple[str, bool | None]]


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%} ({part} of {whole})"


def encoder_share(m: Layers) -> tuple[str, bool | None]:
    enc, total = sum(m.counts("encoder")), sum(m.counts("encoder") + m.counts("decoder"))
    return _share(enc, total), abs(enc / total - 0.71) <= 0.10


def shallow_decoder(m: Layers) -> tuple[str, bool | None]:
    enc, dec = len(m.encoder), len(m.decoder)
    return f"{dec} vs {enc} encoder layers", dec < enc


def _layers_with(counts: list[int], pick: int) -> list[int]:
    return [i for i, c in enumerate(counts) if c == pick]


def _encoder_layers(indices: list[int], counts: list[int]) -> str:
    return ", ".join(f"E{i + 1}" for i in indices) + f" ({counts[indices[0]]})"


def middle_most(m: Layers) -> tuple[str, bool | None]:
    counts = m.counts("encoder")
    top = _layers_with(counts, max(counts))
    middle = range(1, len(counts) - 1)
    return _encoder_layers(top, counts), all(i in middle for i in top)


def first_fewest(m: Layers) -> tuple[str, bool | None]:
    counts = m.counts("encoder")
    low = _layers_with(counts, min(counts))
    return _encoder_layers(low, counts), 0 in low and len(set(counts)) > 1


def decoder_falls(m: Layers) -> tuple[str, bool | None]:
    counts = m.counts("decoder")
    text = "-".join(map(str, counts))
    if len(counts) < 2:
        return text, None
    falls = all(a >= b for a, b in pairwise(counts))
    return text, falls and counts[0] > counts[-1]


def multi_expert_layers(m: Layers) -> tuple[str, bool | None]:
    layers = m.every_layer
    many = sum(len(layer) >= 2 for layer in layers)
    return _share(many, len(layers)), many / len(layers) >= 0.60


def mixed_widths(m: Layers) -> tuple[str, bool | None]:
    many = [layer for layer in m.every_layer if len(layer) >= 2]
    if not many:
        return "no layer of 2+ experts", None
    mixed = sum(len(set(layer)) > 1 for layer in many)
    return _share(mixed, len(many)), mixed / len(many) >= 0.75


CHECKS = (
    Check("experts in the encoder", "71% (61-81% agrees)", encoder_share),
    Check("decoder shallower than encoder", "4 vs 6 encoder layers", shallow_decoder),
    Check("encoder layers with the most experts", "middle (3rd, 5th of 6)", middle_most),
    Check("encoder layer with the fewest", "the first", first_fewest),
    Check("decoder experts per layer fall with depth", "first layer most", decoder_falls),
    Check("layers of 2+ experts", "70% (60% or more agrees)", multi_expert_layers),
    Check("multi-expert layers mixing widths", "over 75% (75% or more agrees)", mixed_widths),
)

_VERDICT = {True: "agrees", False: "differs", None: "n/a"}


def placement_md(collected: dict[str, Any]) -> str:
    """A table of the patterns per MoE search winner, and what agrees with the paper."""
    keys = [r.key for r in SEARCHED if not r.dense_only and r.key != CONTROL] + [CONTROL]
    rows = [collected["rows"][k] for k in keys if collected["rows"][k]["arch"] is not None]
    if not rows:
        return "Where the searches put their experts: pending (no MoE search is done)."
    layers = {row["key"]: Layers.of(row["arch"]) for row in rows}
    found = {key: [check.test(m) for check in CHECKS] for key, m in layers.items()}
    labels = [row["label"] + (" (control)" if row["key"] == CONTROL else "") for row in rows]
    lines = [
        "| pattern | paper (Table 5) | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(rows),
    ]
    for i, check in enumerate(CHECKS):
        cells = [f"{found[k][i][0]}: {_VERDICT[found[k][i][1]]}" for k in layers]
        lines.append(f"| {check.name} | {check.paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _paragraph(rows, found)


def _agreeing(results: list[tuple[str, bool | None]]) -> set[int]:
    return {i for i, (_, ok) in enumerate(results) if ok}


def _names(indices: set[int]) -> str:
    return "; ".join(CHECKS[i].name for i in sorted(indices))


def _paragraph(rows: list[dict[str, Any]], found: dict[str, list]) -> str:
    searched = [r for r in rows if r["key"] != CONTROL]
    parts = []
    for row in searched:
        results = found[row["key"]]
        applicable = sum(ok is not None for _, ok in results)
        agree = _agreeing(results)
        parts.append(
            f"{row['label']} agrees with the paper on {len(agree)} of {applicable} patterns"
            f" ({_names(agree) or 'none'})."
        )
    if CONTROL in found and searched:
        common = set.intersection(*(_agreeing(found[r["key"]]) for r in searched))
        control = _agreeing(found[CONTROL])
        applicable = sum(ok is not None for _, ok in found[CONTROL])
        label = next(r["label"] for r in rows if r["key"] == CONTROL)
        sentence = f"The control, {label}'s winner, agrees on {len(control)} of {applicable}."
        if common & control:
            sentence += (
                f" It shares with every AutoMoE winner {_names(common & control)}: at this "
                "scale those patterns say more about the space and the latency bound than "
                "about what the evolutionary search learned."
            )
        if common - control:
            sentence += f" Only {_names(common - control)} sets the AutoMoE winners apart."
        parts.append(sentence)
    return " ".join(parts)
