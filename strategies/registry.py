"""Strategies by name: the built-in ones, those added with `register`, and third-party ones that
packages declare under the `automoe.strategies` entry-point group.

Built-ins are named by import path and imported on first use, so listing strategies does not
import Optuna or Nevergrad.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from automoe.errors import AutomoeError
from automoe.strategies.base import Strategy

ENTRY_POINT_GROUP = "automoe.strategies"

STRATEGIES: dict[str, type[Strategy] | str] = {
    "random": "automoe.strategies.random_search:RandomSearch",
    "evolution": "automoe.strategies.evolution:EvolutionarySearch",
    "optuna-tpe": "automoe.strategies.optuna_strategy:OptunaTPE",
    "optuna-nsga2": "automoe.strategies.optuna_strategy:OptunaNSGA2",
    "nevergrad": "automoe.strategies.nevergrad_strategy:NevergradStrategy",
}


def _checked(name: str, cls: object) -> type[Strategy]:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise AutomoeError(f"strategy {name!r} is {cls!r}, not a subclass of Strategy")
    return cls


def register(name: str, cls: type[Strategy]) -> None:
    """Make `cls` available as `get_strategy(name)`; a name already taken is refused."""
    if not isinstance(name, str) or not name:
        raise AutomoeError(f"a strategy name must be a non-empty string, got {name!r}")
    _checked(name, cls)
    if STRATEGIES.get(name, cls) is not cls:
        raise AutomoeError(f"strategy name {name!r} is already taken by {STRATEGIES[name]!r}")
    STRATEGIES[name] = cls


def available() -> list[str]:
    """Names `get_strategy` accepts: registered ones and installed entry points."""
    return sorted(set(STRATEGIES) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class called `name`; AutomoeError listing the choices if there is none."""
    target = STRATEGIES.get(name)
    if isinstance(target, str):
        module, attr = target.split(":")
        STRATEGIES[name] = target = _checked(name, getattr(import_module(module), attr))
    if target is not None:
        return target
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        STRATEGIES[name] = cls = _checked(name, ep.load())
        return cls
    raise AutomoeError(f"unknown strategy {name!r}; choose one of: {', '.join(available())}")
