"""automoe: search efficient Mixture-of-Experts Transformers for translation under a budget.

The notebook API, one import away (heavy parts load on first use, so commands start fast):

    import automoe
    space = automoe.SearchSpace.load("multi30k")
    automoe.train("runs/m30k", space="multi30k", max_steps=1500)   # a SuperNet
    result = automoe.search("evolution", supernet="runs/m30k", constraints=["latency_ms<=80"])
    automoe.train("runs/best", arch=result.run / "best.yaml")       # the winner, from scratch
"""

from importlib import import_module
from typing import Any

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace

_LAZY = {
    "SuperNet": "automoe.supernet.supernet",
    "Transformer": "automoe.supernet.model",
    "Trainer": "automoe.train",
    "TrainSettings": "automoe.train",
    "TrainResult": "automoe.train",
    "train": None,  # the package `automoe.train`, which is also callable
    "SearchRequest": "automoe.search",
    "SearchResult": "automoe.search",
    "search": None,  # the package `automoe.search`, which is also callable
}

__all__ = ["ArchConfig", "AutomoeError", "SearchSpace", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'automoe' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        return import_module(f"automoe.{name}")
    return getattr(import_module(module), name)
