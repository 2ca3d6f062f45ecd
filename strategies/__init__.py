"""Search strategies over a `SearchSpace` (installed as `automoe.strategies`).

Every strategy follows the ask/tell protocol of `Strategy`; pick one by name with
`get_strategy` ("random", "evolution", "optuna-tpe", "optuna-nsga2", "nevergrad", or a
third-party one registered with `register` or declared under the `automoe.strategies`
entry-point group). `automoe.strategies.conformance.check_strategy` tests any of them.
"""

from automoe.strategies.base import Strategy
from automoe.strategies.evolution import EvolutionarySearch
from automoe.strategies.random_search import RandomSearch
from automoe.strategies.registry import STRATEGIES, available, get_strategy, register
from automoe.strategies.results import Result

__all__ = [
    "STRATEGIES",
    "EvolutionarySearch",
    "RandomSearch",
    "Result",
    "Strategy",
    "available",
    "get_strategy",
    "register",
]
