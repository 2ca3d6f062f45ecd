"""The routing search's figure: the granularity each layer of each Pareto-front architecture
chose (matplotlib's object API, Agg, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

MODES = ("dense", "token", "sentence", "task")
COLOURS = ("#d9d9d9", "#4c72b0", "#dd8452", "#55a868")
ABSENT = -1  # a layer the architecture does not have (shallower decoder)


def routing_grid(search: dict[str, Any] | None, out: Path) -> Path | None:
    """Rows: front points from the fastest to the most accurate; columns: encoder then
    decoder layers; colour: the layer's routing (grey: dense; white: no such layer)."""
    if not search or not search["front"]:
        return None
    front = search["front"]
    enc = max(len(p["routing"]["encoder"]) for p in front)
    dec = max(len(p["routing"]["decoder"]) for p in front)
    grid = []
    for point in front:
        r = point["routing"]
        cells = [MODES.index(m) for m in r["encoder"]] + [ABSENT] * (enc - len(r["encoder"]))
        cells += [MODES.index(m) for m in r["decoder"]] + [ABSENT] * (dec - len(r["decoder"]))
        grid.append(cells)
    fig = Figure(figsize=(1.2 + 0.55 * (enc + dec), 1.2 + 0.3 * len(front)))
    ax = fig.add_subplot()
    cmap = ListedColormap(["white", *COLOURS])
    ax.imshow(
        [[c + 1 for c in row] for row in grid], cmap=cmap, vmin=0, vmax=len(MODES), aspect="auto"
    )
    ax.set_xticks(
        range(enc + dec), [f"E{i + 1}" for i in range(enc)] + [f"D{i + 1}" for i in range(dec)]
    )
    ax.set_yticks(
        range(len(front)),
        [f"{p['latency_ms']:.0f} ms, loss {p['loss']:.2f}" for p in front],
        fontsize=7,
    )
    ax.axvline(enc - 0.5, color="black", lw=1)
    for mode, colour in zip(MODES, COLOURS, strict=True):
        ax.plot([], [], "s", color=colour, label=mode)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    ax.set_title("Routing per layer, Pareto front (fastest at top)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out
