"""`nevergrad`: any optimizer of Nevergrad's registry (`DE` by default, `NGOpt`,
`DiscreteLenglerOnePlusOne`, `Portfolio`, ...) over a fixed-size parametrization of the space.

Every gene of `genome.genes(space)` gets a slot: one per layer of the deepest stack and per
expert of the largest layer, each an ordered `ng.p.TransitionChoice` over its indices because
every dimension is ordered (mutations then move to neighbouring widths and depths). Genes with
the same number of options share one vectorised TransitionChoice (`repetitions`): it behaves
the same and asks an order of magnitude faster than one parameter per gene. Slots of layers
or experts an architecture lacks are ignored when decoding, so Nevergrad also sees these
inactive dimensions; they drift freely and cost it some efficiency, nothing more.

Feasible results are told as they are: one loss, or a list of losses that Nevergrad 1.0.12
turns into a hypervolume-based loss against a reference point it takes from the largest of
the first 15 told vectors. Failed, refused and constraint-violating results are told losses
we compute, worse than every feasible result told so far on every objective: the worst
feasible value plus (1 + violation) times the feasible range (a failure or a refusal counts
as violation 1). They wait, untold, until the first feasible result gives that scale.
Nevergrad's own `constraint_violation` is not used: its penalty scales with the positive part
of the loss, so a loss <= 0 (negated BLEU, or the hypervolume loss of any point inside the
reference) went unpenalised; and a fixed huge loss for failures, told among the first 15,
became the reference point itself, after which every hypervolume rounded to the same number.

An optimizer that has converged keeps proposing known architectures (many gene vectors decode
to one architecture), each one more ask. After `random_after` (default 10) refused draws in a
row the strategy draws every gene uniformly itself until a draw is accepted. Those draws are
not told to Nevergrad: its DE handles a multi-objective candidate it did not propose by
picking from a set of uids, which no replay reproduces. `recommend()` is not used either:
`best()`/`front()` come from the strategy's own history of what was actually scored.

DE is the default: on the strategy benchmark (`benchmarks/results/strategies.md`, 5 seeds of
300 architectures) it reaches 1.015x random search's median hypervolume; NGOpt (which picks
DiscreteLenglerOnePlusOne, a (1+1) evolution, for this space) reached 0.955x there before these
fixes and, in a smaller synthetic comparison after them, still stayed below random.

`budget` and `num_workers` reach the optimizer as given; `python -m automoe.search` passes its
evaluation budget as `budget`, and `num_workers` stays 1.

Nevergrad optimizers cannot be saved without pickle, so the state holds the sequence of
proposals and results and `load_state_dict` replays it into a freshly seeded optimizer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, ClassVar

import nevergrad as ng
import numpy as np

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.strategies import genome
from automoe.strategies.external import ExternalStrategy
from automoe.strategies.results import Result

_SUGGESTED = ("NGOpt", "DE", "DiscreteLenglerOnePlusOne", "Portfolio", "DiscreteOnePlusOne")
_UNKNOWN_VIOLATION = 1.0  # what a failed or refused architecture counts as


class NevergradStrategy(ExternalStrategy):
    """Options: `optimizer` (a name in `ng.optimizers.registry`), `budget` (the evaluation
    budget the optimizer plans for, None = unknown), `num_workers` (how many evaluations
    may run at once) and `random_after` (refused draws in a row before the strategy draws
    uniformly itself; 0 = never)."""

    name = "nevergrad"
    defaults: ClassVar[Mapping[str, Any]] = {
        "optimizer": "DE",
        "budget": None,
        "num_workers": 1,
        "random_after": 10,
    }

    def _setup(self, state: Mapping[str, Any] | None) -> None:
        super()._setup(state)
        self._int_option("random_after", 0)
        self._optimizer = self._build_optimizer()
        state = state or {}
        # Refused draws in a row, and the handle of the last one.
        self._refused: list[int] = list(state.get("refused", [0, -1]))
        self._live: dict[int, ng.p.Parameter] = {}
        self._asked = 0
        self._low: list[float] = []  # per objective: best and worst feasible value told
        self._high: list[float] = []
        self._held: list[tuple[int, float]] = []  # bad results waiting for a feasible one
        self._events: list[list[Any]] = []
        for event in state.get("events", []):
            if event[0] == "tell":
                self._record(*event[1:])
                continue
            arch, _ = self._next(own=event[0] == "draw")
            if arch.key() != event[1]:
                raise AutomoeError(
                    "replaying the saved Nevergrad run gave a different architecture; "
                    "was it saved with another Nevergrad version?"
                )

    def _build_optimizer(self) -> Any:
        """A freshly seeded optimizer over one vectorised slot group per number of options."""
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
        self._groups = {f"x{n}": (n, len(genes)) for n, genes in groups.items()}
        parametrization = ng.p.Dict(
            **{key: ng.p.TransitionChoice(n, repetitions=k) for key, (n, k) in self._groups.items()}
        )
        parametrization.random_state = np.random.RandomState(self.seed % 2**32)
        return ng.optimizers.registry[optimizer](
            parametrization=parametrization,
            budget=self._int_option("budget", 1, optional=True),
            num_workers=self._int_option("num_workers", 1),
        )

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "refused": list(self._refused),
            "events": [list(e) for e in self._events],
        }

    def _discard(self, arch: ArchConfig, handle: int, duplicate: bool) -> None:
        count, last = self._refused
        self._refused = [count + 1 if last == handle - 1 else 1, handle]
        super()._discard(arch, handle, duplicate)

    def _external_ask(self) -> tuple[ArchConfig, int]:
        count, last = self._refused
        limit = self._options["random_after"]
        return self._next(own=limit > 0 and last == self._asked - 1 and count >= limit)

    def _next(self, own: bool) -> tuple[ArchConfig, int]:
        """The optimizer's next proposal, or (`own`) a uniform draw of every gene seeded by
        the seed and the handle, so a replay draws it again."""
        handle = self._asked
        self._asked += 1
        if own:
            rng = random.Random(f"{self.seed}:{handle}")
            vectors = {
                key: tuple(rng.randrange(n) for _ in range(k))
                for key, (n, k) in self._groups.items()
            }
        else:
            candidate = self._optimizer.ask()
            self._live[handle] = candidate
            vectors = candidate.value
        arch = genome.decode(
            self.space, lambda gene, n: int(vectors[self._slots[gene][0]][self._slots[gene][1]])
        )
        self._events.append(["draw" if own else "ask", arch.key()])
        return arch, handle

    def _external_tell(self, handle: int, result: Result) -> None:
        if result.values is None:
            self._record(handle, None, _UNKNOWN_VIOLATION)
        else:
            self._record(handle, list(result.values), result.violation)

    def _external_reject(self, handle: int) -> None:
        self._record(handle, None, _UNKNOWN_VIOLATION)

    def _record(self, handle: int, values: list[float] | None, violation: float) -> None:
        """Tell a result (`values` None: failed or refused), logged for replay."""
        self._events.append(["tell", handle, values, violation])
        if values is None or violation > 0:
            self._held.append((handle, violation))
        else:
            self._low = [min(pair) for pair in zip(self._low or values, values, strict=True)]
            self._high = [max(pair) for pair in zip(self._high or values, values, strict=True)]
            self._tell(handle, values)
        if self._high:
            for held, amount in self._held:
                self._tell(held, self._penalised(amount))
            self._held = []

    def _penalised(self, violation: float) -> list[float]:
        """Losses worse than every feasible result told so far, growing with `violation`."""
        return [
            high + (1.0 + violation) * ((high - low) or abs(high) or 1.0)
            for low, high in zip(self._low, self._high, strict=True)
        ]

    def _tell(self, handle: int, losses: list[float]) -> None:
        """Tell the optimizer about its own proposals; the strategy's draws stay untold."""
        if handle in self._live:
            self._optimizer.tell(self._live.pop(handle), losses[0] if len(losses) == 1 else losses)
