"""The models of the table: two baselines and the winners of four searches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One model of the table: a baseline file, or the winner of a search."""

    key: str
    label: str
    strategy: str = ""  # the search that picks it ("" for a baseline)
    fraction: str = ""  # the latency fraction it is searched under (settings.FRACTIONS)
    dense_only: bool = False  # searched in the HAT space (one expert per layer)


ROWS = (
    Row("dense", "Dense (largest)"),
    Row("switch", "Switch (4 experts, every other layer)"),
    Row("hat-half", "HAT@1/2 (dense search)", "evolution", "half", dense_only=True),
    Row("random-half", "Random search@1/2", "random", "half"),
    Row("automoe-half", "AutoMoE@1/2", "evolution", "half"),
    Row("automoe-third", "AutoMoE@1/3", "evolution", "third"),
)
BASELINES = ("dense", "switch")
SEARCHED = tuple(r for r in ROWS if r.strategy)
# The order later seeds train in: the rows the targets compare first, the Switch baseline
# (in no target, and the slowest to train) last.
SEED_ORDER = ("automoe-half", "dense", "random-half", "hat-half", "automoe-third", "switch")
FINETUNED = ("automoe-half", "automoe-third")  # also fine-tuned from the SuperNet's weights
# The estimator study's front points come from a search run of its own with the settings of
# FRONT_OF's: the row's search then never runs twice, so a SuperNet trained again on a new
# machine can give the study its front without touching the rows' architectures.
FRONT_OF = "automoe-half"
FRONT_SEARCH = "front"  # that run's name (search/front)
FRONT_PREFIX = "front-"
LARGEST = "supernet-largest"  # the SuperNet's largest sub-network, inherited weights
