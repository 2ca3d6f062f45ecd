"""The benchmark's figures, read back from the stages' outputs; None wherever one is pending."""

from __future__ import annotations

import statistics
from typing import Any

from staged.records import read_json, seed_stats, stage_cpus, training_on, training_record

from automoe.search.results import SearchResult
from automoe.space import ArchConfig
from task_moe.plan import ROWS, SEARCHED, Plan

# Layer -> routing shown for a layer: "dense" when it has one expert.
DENSE = "dense"


def layer_routing(arch: ArchConfig) -> dict[str, list[str]]:
    """Per side, each layer's routing granularity, or "dense" for a one-expert layer."""
    out = {}
    for side in ("encoder", "decoder"):
        experts = getattr(arch, f"{side}_experts")
        modes = getattr(arch, f"{side}_routing")
        out[side] = [DENSE if e == 1 else m for e, m in zip(experts, modes, strict=True)]
    return out


class Collector:
    """Reads every output of a plan into plain dicts for the report and the JSON."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.layout = plan.layout
        self.stages = {s.name: s for s in plan.stages()}
        self.cpus = stage_cpus(self.layout.stage_times)

    def scores(self, row: str, seed: int) -> dict[str, dict[str, float]] | None:
        """Pair -> test BLEU/chrF of one seed, once every pair is scored."""
        name, pairs = f"{row}-s{seed}", self.plan.sizes.pairs
        if self.plan.exported(row):
            found = [read_json(self.layout.evaluation(name, pair)) for pair in pairs]
            results = [r["results"][0] for r in found if r is not None]
        else:
            found = read_json(self.layout.evaluation(name))
            results = [] if found is None else found["results"]
        by_pair = {r["pair"]: {"bleu": r["bleu"], "chrf": r["chrf"]} for r in results}
        return by_pair if set(by_pair) == set(pairs) else None

    def row(self, row: str) -> dict[str, Any]:
        seeds = {}
        for seed in self.plan.sizes.seeds:
            seeds[seed] = {
                "scores": self.scores(row, seed),
                "training": training_on(
                    self.layout.train(f"{row}-s{seed}"), self.cpus.get(f"train {row}-s{seed}")
                ),
            }
        scored = [s["scores"] for s in seeds.values() if s["scores"] is not None]
        pairs = self.plan.sizes.pairs
        per_pair = {
            pair: {
                metric: seed_stats([s[pair][metric] for s in scored]) for metric in ("bleu", "chrf")
            }
            for pair in pairs
        }
        means = [statistics.mean(s[p]["bleu"] for p in pairs) for s in scored]
        arch = self.plan.arch(row)
        return {
            "arch": None if arch is None else arch.to_dict(),
            "routing": None if arch is None else layer_routing(arch),
            "seeds": seeds,
            "pairs": per_pair,
            "mean_bleu": seed_stats(means),
            "deployment": (read_json(self.layout.deployment) or {}).get(row),
        }

    def search(self) -> dict[str, Any] | None:
        """The routing search: its bound, winner and the routing of every front point."""
        if not self.plan.arch(SEARCHED):
            return None
        result = SearchResult.load(self.layout.search)
        front = [
            {
                "arch_key": p["arch_key"],
                "loss": p["loss"],
                "latency_ms": p["latency_ms"],
                "routing": layer_routing(p["arch"]),
            }
            for p in result.front
        ]
        summary = result.summary
        return {
            "command": self.stages["search routing"].shown(),
            "bound_ms": float(self.plan.bound()),
            "question": result.question,
            "evaluations": summary["evaluations"],
            "feasible": summary["feasible"],
            "wall_s": summary.get("wall_s"),
            "winner": layer_routing(result.best) if result.best else None,
            "front": front,
            "finding": paper_finding(front),
        }

    def collect(self) -> dict[str, Any]:
        return {
            "rows": {row: self.row(row) for row in ROWS},
            "throughput": read_json(self.layout.throughput),
            "memory": read_json(self.layout.memory),
            "search": self.search(),
            "supernet": training_record(self.layout.supernet),
        }


def paper_finding(front: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the front's MoE layers route as the paper found best: by token in the
    encoder, by task in the decoder (dense layers do not count)."""
    counts: dict[str, dict[str, int]] = {"encoder": {}, "decoder": {}}
    for point in front:
        for side in counts:
            for mode in point["routing"][side]:
                if mode != DENSE:
                    counts[side][mode] = counts[side].get(mode, 0) + 1
    share = {
        side: (c.get(want, 0) / sum(c.values()) if c else None)
        for side, c, want in (
            ("encoder", counts["encoder"], "token"),
            ("decoder", counts["decoder"], "task"),
        )
    }
    return {
        "moe_layers": counts,
        "encoder_token_share": share["encoder"],
        "decoder_task_share": share["decoder"],
    }
