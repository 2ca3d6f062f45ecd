"""`nevergrad`: any optimizer of Nevergrad's registry (`NGOpt` by default, `DE`,
`DiscreteOnePlusOne`, ...) over a fixed-size parametrization of the space.

Every gene of `genome.genes(space)` gets a slot: one per layer of the deepest stack and per
expert of the largest layer, each an ordered `ng.p.TransitionChoice` over its indices because
every dimension is ordered (mutations then move to neighbouring widths and depths). Genes with
the same number of options share one vectorised TransitionChoice (`repetitions`): it behaves
the same and asks an order of magnitude faster than one parameter per gene. Slots of layers
or experts an architecture lacks are ignored when decoding, so Nevergrad also sees these
inactive dimensions; they drift freely and cost it some efficiency, nothing more.

Nevergrad 1.0.12's `tell(candidate, loss, constraint_violation=...)` treats a violation > 0 as
infeasible and adds a penalty; that is our convention too (feasible when <= 0), so violations
pass unchanged. Several objectives are told as a list of losses, which Nevergrad turns into a
hypervolume-based loss. A failed evaluation, and an architecture `is_feasible` refuses, is
told the loss `FAILED_LOSS` (below 5e20, where Nevergrad clips losses) on every objective and
no violation: Nevergrad's penalty scales with the loss, so a violation on top would overflow
into clipping. `recommend()` is not used: `best()`/`front()` come from the strategy's own
history of what was actually scored.

Nevergrad optimizers cannot be saved without pickle, so the state holds the sequence of asks
and tells and `load_state_dict` replays it into a freshly seeded optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import nevergrad as ng
import numpy as np

from automoe.arch import ArchConfig
from automoe.errors import AutomoeError
from automoe.strategies import genome
from automoe.strategies.external import ExternalStrategy
from automoe.strategies.results import Result

FAILED_LOSS = 1.0e20
_SUGGESTED = ("NGOpt", "DE", "TwoPointsDE", "DiscreteOnePlusOne", "PortfolioDiscreteOnePlusOne")


class NevergradStrategy(ExternalStrategy):
    """Options: `optimizer` (a name in `ng.optimizers.registry`), `budget` (the evaluation
    budget the optimizer plans for, None = unknown) and `num_workers` (how many evaluations
    may run at once)."""

    name = "nevergrad"
    defaults: ClassVar[Mapping[str, Any]] = {"optimizer": "NGOpt", "budget": None, "num_workers": 1}

    def _setup(self, state: Mapping[str, Any] | None) -> None:
        super()._setup(state)
        optimizer = self._options["optimizer"]
        if not isinstance(optimizer, str) or optimizer not in ng.optimizers.registry:
            raise AutomoeError(
                f"unknown Nevergrad optimizer {optimizer!r}; try one of {', '.join(_SUGGESTED)} "
                f"(any of the {len(ng.optimizers.registry)} names in ng.optimizers.registry)"
            )
        slots = genome.genes(self.space)
        if not slots:
            raise AutomoeError(
                f"space {self.space.name!r} holds one architecture: nothing to search"
            )
        groups: dict[int, list[str]] = {}
        for gene, n in slots.items():
            groups.setdefault(n, []).append(gene)
        # Where each gene sits: (its group's key, its position in the group's vector).
        self._slots = {
            gene: (f"x{n}", i) for n, genes in groups.items() for i, gene in enumerate(genes)
        }
        parametrization = ng.p.Dict(
            **{
                f"x{n}": ng.p.TransitionChoice(n, repetitions=len(genes))
                for n, genes in groups.items()
            }
        )
        parametrization.random_state = np.random.RandomState(self.seed % 2**32)
        self._optimizer = ng.optimizers.registry[optimizer](
            parametrization=parametrization,
            budget=self._int_option("budget", 1, optional=True),
            num_workers=self._int_option("num_workers", 1),
        )
        self._live: dict[int, ng.p.Parameter] = {}
        self._asked = 0
        self._events: list[list[Any]] = []
        for event in (state or {}).get("events", []):
            if event[0] == "ask":
                arch, _ = self._external_ask()
                if arch.key() != event[1]:
                    raise AutomoeError(
                        "replaying the saved Nevergrad run gave a different architecture; "
                        "was it saved with another Nevergrad version?"
                    )
            else:
                self._tell(*event[1:])

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "events": [list(e) for e in self._events]}

    def _external_ask(self) -> tuple[ArchConfig, int]:
        candidate = self._optimizer.ask()
        handle = self._asked
        self._asked += 1
        self._live[handle] = candidate
        vectors = candidate.value
        arch = genome.decode(
            self.space, lambda gene, n: int(vectors[self._slots[gene][0]][self._slots[gene][1]])
        )
        self._events.append(["ask", arch.key()])
        return arch, handle

    def _tell(self, handle: int, loss: float | list[float], violations: list[float] | None) -> None:
        """The one place that tells Nevergrad, logged for replay."""
        extra = {} if violations is None else {"constraint_violation": violations}
        self._optimizer.tell(self._live.pop(handle), loss, **extra)
        self._events.append(["tell", handle, loss, violations])

    def _loss(self, values: tuple[float, ...] | None) -> float | list[float]:
        losses = [FAILED_LOSS] * len(self._objectives) if values is None else list(values)
        return losses[0] if len(losses) == 1 else losses

    def _external_tell(self, handle: int, result: Result) -> None:
        if result.values is None or result.violations is None:
            self._tell(handle, self._loss(result.values), None)
        else:
            self._tell(handle, self._loss(result.values), list(result.violations))

    def _external_reject(self, handle: int) -> None:
        self._tell(handle, self._loss(None), None)
