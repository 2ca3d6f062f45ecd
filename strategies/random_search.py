"""`random`: uniform sampling of the space, the baseline every other strategy must beat."""

from __future__ import annotations

from automoe.space import ArchConfig
from automoe.strategies.base import Strategy


class RandomSearch(Strategy):
    """Each gene uniform over its choices (`SearchSpace.sample`), kept only if new and within
    the `is_feasible` constraint (rejection sampling)."""

    name = "random"
    uses_feedback = False

    def _propose(self, n: int) -> list[ArchConfig]:
        out = []
        for _ in range(n):
            drawn = self._draw(
                lambda: (self.space.sample(self._rng), None), taken={a.key() for a in out}
            )
            if drawn is None:
                break
            out.append(drawn[0])
        return out
