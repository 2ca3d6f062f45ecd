"""Every stage of the comparison, in the order the scheduler prefers them.

Order: the SuperNet, the latency predictor and the dense latency (the searches need them),
the four searches and the estimator's own run of the AutoMoE@1/2 search (its front), then
what else needs the SuperNet's weights (the SuperNet-as-estimator evaluations, minutes, and
the timing of every architecture, alone on the machine), then every row's first-seed
training (each training's evaluation is preferred as soon as it can run), the later seeds
with the rows the targets compare first, the search's front points, and last the fine-tuned
side column. A SuperNet then serves its stages in one session, and trainings, which need
only its settings, run in any later one; the targets' verdicts come before the estimator
study. The plan is rebuilt after each stage: the bounds come from the dense latency, the
estimator's front points from a search.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from staged import ledger
from staged.stages import Stage

from automoe.runs import SUPERNET_FILE, read_run_file
from automoe.space import SearchSpace
from multi30k import archs, model_stages, search_stages
from multi30k.rows import (
    BASELINES,
    FINETUNED,
    FRONT_PREFIX,
    LARGEST,
    ROWS,
    SEARCHED,
    SEED_ORDER,
)
from multi30k.settings import Layout, Sizes


@dataclass(frozen=True)
class Inputs:
    """What the command line fixes: the space, reused stages, data, cores and threads."""

    space: str
    supernet: Path | None
    predictor: Path | None
    data_dir: str | None
    jobs: int
    latency_threads: int


class Plan:
    """Builds the stage list from the sizes, the folders and what earlier stages wrote."""

    def __init__(self, sizes: Sizes, layout: Layout, inputs: Inputs) -> None:
        self.sizes = sizes
        self.layout = layout
        self.inputs = inputs
        self.space = SearchSpace.load(inputs.space)
        self.supernet = inputs.supernet or layout.supernet
        self.predictor = inputs.predictor or layout.predictor

    def arch_file(self, key: str) -> Path:
        """A row's or front point's architecture file."""
        if key in BASELINES:
            return self.layout.figures / f"{key}.yaml"
        if key.startswith(FRONT_PREFIX):
            return self.layout.estimator / f"{key}.yaml"
        return self.layout.search(key) / "best.yaml"

    @property
    def hat_space(self) -> Path:
        return self.layout.figures / "hat_space.yaml"

    def front_points(self) -> list[dict]:
        """The search's front points chosen for the estimator study (none before it ends)."""
        path = self.layout.front
        return json.loads(path.read_text())["points"] if path.is_file() else []

    def data_flags(self) -> list[str]:
        """The SuperNet's data settings, so every model reads the same text the same way."""
        if self.inputs.supernet is None:
            return list(self.sizes.data_flags)
        data = read_run_file(self.supernet)["data"]
        return [
            f"--pairs={','.join(data['pairs'])}",
            f"--vocab-size={data['vocab_size']}",
            f"--max-len={data['max_len']}",
            f"--max-tokens={data['max_tokens']}",
            f"--train-limit={data['train_limit']}",
            f"--valid-size={data['valid_size']}",
        ]

    def common_flags(self) -> list[str]:
        return [f"--data-dir={self.inputs.data_dir}"] if self.inputs.data_dir else []

    def stages(self) -> list[Stage]:
        out = [search_stages.baselines(self)]
        if self.inputs.supernet is None:
            out.append(model_stages.supernet_training(self))
        elif (self.supernet / SUPERNET_FILE).is_file():
            out.append(search_stages.reused("supernet", self.supernet / SUPERNET_FILE))
        else:
            out.append(model_stages.supernet_again(self))
        if self.inputs.predictor is None:
            out += [search_stages.latency_dataset(self), search_stages.predictor_fit(self)]
        else:
            out.append(search_stages.reused("latency predictor", self.predictor))
        out += [search_stages.dense_latency(self), search_stages.constraints(self)]
        out += [search_stages.search(self, row) for row in SEARCHED]
        out += [
            search_stages.front_search(self),
            search_stages.front(self),
            model_stages.evaluation(self, LARGEST, ("supernet",)),
        ]
        first, *later = self.sizes.seeds
        rows = [model_stages.training(self, key, first) for key in _keys()]
        seeds = [model_stages.training(self, key, seed) for seed in later for key in SEED_ORDER]
        fronts = [model_stages.training(self, p["name"], first) for p in self.front_points()]
        tuned = [model_stages.training(self, key, first, finetune=True) for key in FINETUNED]
        out += [
            model_stages.evaluation(self, t.name.removeprefix("train "), (t.name,))
            for t in rows + seeds + fronts + tuned
        ]
        out += [s for key in self.estimator_keys() for s in model_stages.inherited(self, key)]
        out += [search_stages.predicted(self), *model_stages.timings(self)]
        out += rows + seeds + fronts
        return ledger.mark(out + tuned, self.layout.ledger)

    def estimator_keys(self) -> list[str]:
        """Rows and front points with distinct architectures (the first name kept)."""
        keys, seen = [], set()
        for key in [*_keys(), *(p["name"] for p in self.front_points())]:
            arch = archs.arch_key(self.arch_file(key))
            if arch is None or arch not in seen:
                keys.append(key)
                seen.add(arch)
        return keys

    def timed_models(self) -> dict[str, tuple[Path, str | None]]:
        """Name -> (model, arch) of every model timed: each row and front point, and the
        SuperNet's largest sub-network, all with the SuperNet's inherited weights.

        The trained models have the same layers and shapes, so the same compute per token;
        timing the inherited ones needs no trained model on the machine (the trainings are
        spread over sessions, and their models do not outlive the machine: `staged.ledger`).
        """
        keys = [*_keys(), *(p["name"] for p in self.front_points())]
        models: dict[str, tuple[Path, str | None]] = {
            key: (self.supernet, str(self.arch_file(key))) for key in keys
        }
        models[LARGEST] = (self.supernet, "largest")
        return models


def _keys() -> list[str]:
    return [row.key for row in ROWS]
