"""`ExternalStrategy`: what adapters of outside ask/tell optimizers (Optuna, Nevergrad) share.

Such optimizers may propose an architecture again, or one `is_feasible` refuses. Nothing is
scored twice: a repeat of a told architecture is told its known result at once, a repeat of a
pending one is told together with it, and a refused one is told as infeasible, so the optimizer
learns from every proposal it made. Each optimizer proposal is identified by an integer handle.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from automoe.space import ArchConfig
from automoe.strategies.base import Strategy
from automoe.strategies.results import Result


class ExternalStrategy(Strategy):
    """Base of adapters: subclasses implement the optimizer's ask and its three kinds of tell."""

    @abstractmethod
    def _external_ask(self) -> tuple[ArchConfig, int]:
        """One proposal of the optimizer, decoded, and its handle."""

    @abstractmethod
    def _external_tell(self, handle: int, result: Result) -> None:
        """Report a result (possibly failed, possibly infeasible) for a handle."""

    @abstractmethod
    def _external_reject(self, handle: int) -> None:
        """Report that `is_feasible` refused a handle's architecture before scoring."""

    def _setup(self, state: Mapping[str, Any] | None) -> None:
        # Handles of each pending architecture: its own first, then those of repeats.
        self._handles: dict[str, list[int]] = dict((state or {}).get("handles", {}))

    def _state(self) -> dict[str, Any]:
        return {"handles": {key: list(handles) for key, handles in self._handles.items()}}

    def _propose(self, n: int) -> list[ArchConfig]:
        out: list[ArchConfig] = []
        for _ in range(n):
            drawn = self._draw(self._external_ask, self._discard, {a.key() for a in out})
            if drawn is None:
                break
            arch, handle = drawn
            self._handles[arch.key()] = [handle]
            out.append(arch)
        return out

    def _discard(self, arch: ArchConfig, handle: int, duplicate: bool) -> None:
        key = arch.key()
        if not duplicate:
            self._external_reject(handle)
        elif key in self._told:
            self._external_tell(handle, self._told[key])
        else:
            self._handles[key].append(handle)

    def _observe(self, results: list[Result]) -> None:
        for result in results:
            for handle in self._handles.pop(result.arch.key()):
                self._external_tell(handle, result)
