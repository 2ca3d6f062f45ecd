"""The architectures and constraints the comparison is about.

Baselines: `dense` is the largest dense architecture of the space (every layer one expert of
the widest FFN, as the search's own "dense" reference is built); `switch` is the same shape
with 4 equal experts, top-1 token routing, in every other FFN layer of the encoder and the
decoder (Switch Transformer), or as many experts as the space allows if fewer. The HAT-style
space is the space with one expert per layer: HAT's dense search in AutoMoE's space.

Constraints are fractions of the dense model's latency (the predictor's figure, beside the
measured one); a bound that too few architectures of a searched space meet (by the latency
predictor) is raised to the latency that `min_share` of them meet, and the report says so.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import yaml
from staged.archs import arch_yaml, dense_arch

from automoe.files import write_text_atomic
from automoe.predictors import CostPredictor
from automoe.predictors.data import read_sidecar
from automoe.space import ArchConfig, SearchSpace

SWITCH_EXPERTS = 4
SAMPLES = 1000  # architectures drawn to estimate the share of a space under a bound


def switch_arch(space: SearchSpace) -> ArchConfig:
    """The dense shape with equal top-1 experts in every other layer (the 2nd, 4th, ...)."""
    arch = dense_arch(space).to_dict()
    for side in ("encoder", "decoder"):
        experts = min(SWITCH_EXPERTS, max(space.to_dict()[side]["experts"]))
        arch[f"{side}_ffn_dims"] = [
            layer * experts if i % 2 == 1 else layer
            for i, layer in enumerate(arch[f"{side}_ffn_dims"])
        ]
    return ArchConfig.from_dict(arch)


def dense_space(space: SearchSpace) -> dict[str, Any]:
    """The space with one expert per layer on both sides (HAT's search space)."""
    data = space.to_dict()
    data["name"] = f"{data['name']}-dense"
    for side in ("encoder", "decoder"):
        data[side]["experts"] = [1]
    return data


def write_baselines(space: SearchSpace, dense: Path, switch: Path, hat_space: Path) -> None:
    """Write the two baseline architectures and the HAT space, each checked against the space."""
    for arch, path in ((dense_arch(space), dense), (switch_arch(space), switch)):
        space.validate(arch)
        write_text_atomic(path, arch_yaml(arch))
    hat = dense_space(space)
    SearchSpace.from_dict(hat, source=str(hat_space))  # refuses a space that does not load
    write_text_atomic(hat_space, yaml.safe_dump(hat, sort_keys=False))


def _quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


SMALLEST_MARGIN = 1.01


def write_constraints(
    dense_json: Path,
    dense_file: Path,
    predictor_path: Path,
    spaces: dict[str, list[SearchSpace]],
    fractions: dict[str, tuple[int, int]],
    min_share: float,
    out: Path,
) -> None:
    """Bounds at each fraction of the dense model's latency as the latency predictor gives
    it: the searches compare predicted latencies, so a predictor off in scale (measured at
    another moment of a drifting machine) moves the bounds with it and leaves the fractions
    right. `latency measure`'s figure for the dense model is recorded beside it.

    `spaces[fraction]` are the spaces searched at that fraction; each must keep at least
    `min_share` of its architectures (by the predictor) under the bound, else it is raised.
    """
    measured = json.loads(dense_json.read_text())
    predictor = CostPredictor.load(predictor_path)
    dense_ms = float(predictor.predict_archs([ArchConfig.load(dense_file)])[0])
    floors: dict[str, float] = {}
    for space in {s.name: s for group in spaces.values() for s in group}.values():
        rng = random.Random(0)
        predicted = predictor.predict_archs([space.sample(rng) for _ in range(SAMPLES)])
        # The search refuses a bound that the space's smallest architecture breaks, and a
        # predictor need not be monotone: its smallest can sit above the sampled quantile.
        # 1% above it, since the search predicts it again (in its own batch, not bit-equal).
        smallest = SMALLEST_MARGIN * float(predictor.predict_archs([space.smallest()])[0])
        floors[space.name] = max(_quantile([float(v) for v in predicted], min_share), smallest)
    bounds: dict[str, Any] = {}
    for key, (num, den) in fractions.items():
        wanted = dense_ms * num / den
        floor = max(floors[space.name] for space in spaces[key])
        bounds[key] = {
            "fraction": f"{num}/{den}",
            "wanted_ms": wanted,
            "bound_ms": max(wanted, floor),
            "raised": floor > wanted,
            "floor_ms": floor,
        }
    record = {
        "dense_predicted_ms": dense_ms,
        "dense_measured_ms": float(measured["latency_ms"]),
        "dense_measured_median_ms": measured.get("median_ms"),
        "dense_measured_iqr_ms": measured.get("iqr_ms"),
        "protocol": measured.get("protocol"),
        "min_share": min_share,
        "bounds": bounds,
    }
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")


def front_rows(search: Path) -> list[dict[str, Any]]:
    """The search's latency Pareto front over its feasible candidates, fastest first."""
    keys = json.loads((search / "pareto.json").read_text()).get("latency_ms", [])
    rows = {}
    for line in (search / "evaluations.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["arch_key"]] = row
    return sorted((rows[k] for k in keys if k in rows), key=lambda r: r["latency_ms"])


def spread_over_latency(front: list[dict[str, Any]], points: int) -> list[int]:
    """Indices of the `points` rows (fastest first) nearest to latencies evenly spaced from
    the fastest to the slowest, each row once. Spread by value, not by rank: an evolution's
    front crowds near the bound, and rank would pick near-twins there."""
    if len(front) <= points:
        return list(range(len(front)))
    low, high = front[0]["latency_ms"], front[-1]["latency_ms"]
    chosen: list[int] = []
    for i in range(points):
        wanted = low + (high - low) * i / max(points - 1, 1)
        free = [j for j in range(len(front)) if j not in chosen]
        chosen.append(min(free, key=lambda j: abs(front[j]["latency_ms"] - wanted)))
    return sorted(chosen)


def write_front(search: Path, exclude: set[str], points: int, folder: Path, out: Path) -> None:
    """`points` front architectures spread over latency, none already a row of the table."""
    front = [r for r in front_rows(search) if r["arch_key"] not in exclude]
    chosen = [front[i] for i in spread_over_latency(front, points)]
    listed = []
    for i, row in enumerate(chosen, start=1):
        name = f"front-{i:02d}"
        path = folder / f"{name}.yaml"
        write_text_atomic(path, arch_yaml(ArchConfig.from_dict(row["arch"])))
        listed.append(
            {
                "name": name,
                "file": str(path),
                "arch_key": row["arch_key"],
                "predicted_ms": row["latency_ms"],
                "loss": row["loss"],
            }
        )
    write_text_atomic(out, json.dumps({"front_size": len(front), "points": listed}, indent=2))


def write_predicted(predictor_path: Path, models: dict[str, ArchConfig], out: Path) -> None:
    """The latency predictor's figure for every timed model (`models`; the space's smallest
    among them, to show how far latency can fall at all), and where the predictor's
    latencies were timed: the searches bound this figure, the timing stage measures the
    real one, and a report sets them side by side on any machine (a small file the ledger
    keeps, where the predictor itself may not travel)."""
    predictor = CostPredictor.load(predictor_path)
    names = list(models)
    predicted = predictor.predict_archs([models[n] for n in names])
    machine = None
    data = predictor.training_data_
    if data and Path(data["path"]).is_file():
        sidecar = read_sidecar(Path(data["path"]))
        if sidecar.get("machine"):
            machine = {
                "cpu_model": sidecar["machine"].get("cpu_model"),
                "threads": sidecar.get("protocol", {}).get("threads"),
            }
    record = {
        "predictor": str(predictor_path),
        "measured_on": machine,
        "models": {n: float(v) for n, v in zip(names, predicted, strict=True)},
    }
    write_text_atomic(out, json.dumps(record, indent=2))


def arch_key(path: Path) -> str | None:
    """The architecture's key if its file exists (a search may not have written it yet)."""
    return ArchConfig.load(path).key() if path.is_file() else None
