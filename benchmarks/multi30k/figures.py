"""The report's figures, drawn with matplotlib's object API (Agg, headless): BLEU against
latency, where the searched models put their experts, and the SuperNet as an estimator.
Each returns the PNG written, or None while its figures are pending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

SIDES = ("encoder", "decoder")


def bleu_latency(collected: dict[str, Any], out: Path) -> Path | None:
    """Every model a point (mean BLEU, seed range as error bar) at its measured median
    latency; the AutoMoE@1/2 search's front points (trained from scratch) as a line."""
    rows = [r for r in collected["rows"].values() if r["bleu"] and r["latency"]]
    largest = collected["largest"]
    if not rows:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for row in rows:
        bleu, ms = row["bleu"], row["latency"]["median"]
        err = [[bleu["mean"] - bleu["min"]], [bleu["max"] - bleu["mean"]]]
        marker = "s" if row["key"] in ("dense", "switch") else "o"
        ax.errorbar(ms, bleu["mean"], yerr=err, fmt=marker, capsize=3, label=row["label"])
    if largest["bleu"] and largest["latency"]:
        ax.plot(largest["latency"]["median"], largest["bleu"]["mean"], "k^", label=largest["label"])
    front = sorted(
        (p for p in collected["front"] if p["bleu"] is not None and p["latency_ms"] is not None),
        key=lambda p: p["latency_ms"],
    )
    if front:
        ax.plot(
            [p["latency_ms"] for p in front],
            [p["bleu"] for p in front],
            "--",
            marker=".",
            color="grey",
            label="AutoMoE@1/2 search front (from scratch)",
        )
    dense = collected["rows"]["dense"]["latency"]
    if dense:
        for frac, text in ((1 / 2, "1/2"), (1 / 3, "1/3")):
            ax.axvline(dense["median"] * frac, color="grey", lw=0.6, ls=":")
            ax.text(dense["median"] * frac, ax.get_ylim()[0], f" {text} dense", fontsize=7)
    ax.set_xlabel("CPU latency, median (ms)")
    ax.set_ylabel("test_2016_flickr BLEU")
    ax.set_title("Multi30k en-de: quality against latency")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def experts(collected: dict[str, Any], out: Path) -> Path | None:
    """One panel per model: each layer's experts as bars, height = the expert's FFN width."""
    rows = [r for r in collected["rows"].values() if r["arch"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(9, 1.6 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    top = max(
        w for r in rows for side in SIDES for layer in r["arch"][f"{side}_ffn_dims"] for w in layer
    )
    span = max(
        len(r["arch"]["encoder_ffn_dims"]) + len(r["arch"]["decoder_ffn_dims"]) for r in rows
    )
    span += 0.8  # the gap between the encoder and the decoder
    for ax, row in zip(axes, rows, strict=True):
        x, ticks, labels = 0.0, [], []
        for side, colour in zip(SIDES, ("tab:blue", "tab:orange"), strict=True):
            for i, layer in enumerate(row["arch"][f"{side}_ffn_dims"]):
                step = 0.8 / len(layer)
                for j, width in enumerate(layer):
                    ax.bar(x + j * step, width, step * 0.9, align="edge", color=colour)
                ticks.append(x + 0.4)
                labels.append(f"{side[0].upper()}{i + 1}\n{len(layer)}x")
                x += 1
            x += 0.5
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_xlim(-0.2, span)
        ax.set_ylim(0, top * 1.1)
        ax.set_ylabel("width", fontsize=7)
        arch = row["arch"]
        ax.set_title(
            f"{row['label']}: embed {arch['encoder_embed_dim']}/{arch['decoder_embed_dim']}",
            fontsize=8,
            loc="left",
        )
    fig.suptitle(
        "Experts per layer (E = encoder, D = decoder; bar = one expert, height = FFN width)"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def estimator(collected: dict[str, Any], out: Path) -> Path | None:
    """Inherited-weight BLEU (SuperNet) against from-scratch BLEU, one point per arch."""
    est = collected["estimator"]
    points = [p for p in est["points"] if None not in (p["inherited_bleu"], p["scratch_bleu"])]
    if not points:
        return None
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    xs = [p["inherited_bleu"] for p in points]
    ys = [p["scratch_bleu"] for p in points]
    ax.scatter(xs, ys)
    for p in points:
        ax.annotate(p["key"], (p["inherited_bleu"], p["scratch_bleu"]), fontsize=7)
    low, high = min(xs + ys), max(xs + ys)
    ax.plot([low, high], [low, high], color="grey", lw=0.6, ls=":", label="y = x")
    tau = est.get("tau_bleu")
    gap = est.get("mean_abs_gap")
    ax.set_title(
        f"SuperNet as estimator: tau {'n/a' if tau is None else f'{tau:.2f}'}, "
        f"mean |gap| {gap:.2f} BLEU",
        fontsize=9,
    )
    ax.set_xlabel("BLEU with inherited weights (SuperNet)")
    ax.set_ylabel("BLEU trained from scratch (first seed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def draw_all(collected: dict[str, Any], folder: Path) -> dict[str, str | None]:
    folder.mkdir(parents=True, exist_ok=True)
    drawn = {
        "bleu_latency": bleu_latency(collected, folder / "bleu_latency.png"),
        "experts": experts(collected, folder / "experts.png"),
        "estimator": estimator(collected, folder / "estimator.png"),
    }
    return {k: None if v is None else str(v) for k, v in drawn.items()}
