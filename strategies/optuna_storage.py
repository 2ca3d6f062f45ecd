"""Where an Optuna study lives, and the heartbeats that let other workers retry a dead one's trials.

Three places: an SQLAlchemy URL (`sqlite:///run/search.db`, PostgreSQL, ...) through
`RDBStorage`; a journal file through `JournalStorage(JournalFileBackend(path))` for several
worker processes on one machine; or, with neither, a journal kept in memory whose log lines
are plain JSON, so an in-memory study is saved inside the strategy's state and replayed on
resume. In Optuna 5.0.0 only `RDBStorage` implements heartbeats (`JournalStorage` does not
inherit `BaseHeartbeat`).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalStorage


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Optuna's notices about features we use on purpose: experimental heartbeats, and
    heartbeats outside `Study.optimize` (we keep them alive ourselves, see `Heartbeat`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


class MemoryJournal(BaseJournalBackend):
    """Journal log lines kept in a list; they are JSON objects, so a study can be saved."""

    def __init__(self, logs: Iterable[dict[str, Any]] = ()) -> None:
        self.logs = list(logs)

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)


def open_storage(
    *,
    storage_url: str | None,
    journal_path: str | None,
    memory: MemoryJournal,
    heartbeat_interval: int | None,
    grace_period: int | None,
    max_retry: int | None,
) -> BaseStorage:
    """The storage the options name; `memory` backs it when no persistent one is named."""
    if storage_url is not None:
        with quiet():
            return RDBStorage(
                storage_url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=(
                    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
                    if heartbeat_interval is not None
                    else None
                ),
            )
    if journal_path is not None:
        return JournalStorage(JournalFileBackend(journal_path))
    return JournalStorage(memory)


class Beats(Protocol):
    """What `Heartbeat` beats through: an `RDBStorage`, or anything recording a trial's beat."""

    def record_heartbeat(self, trial_id: int) -> None: ...


class Heartbeat:
    """Refreshes the heartbeat of this worker's running trials from a background thread.

    Optuna only beats inside `Study.optimize`; with ask/tell the evaluation happens elsewhere,
    so we beat every pending trial until it is told. The thread ends when nothing is pending
    and starts again on the next trial. A beat that fails (the database busy a moment, the
    trial told meanwhile) is skipped, not fatal: the thread must outlive it, or every later
    trial of this worker would go stale.
    """

    def __init__(self, storage: Beats, interval: int) -> None:
        self._storage = storage
        self._interval = interval
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)
        with self._lock:
            self._ids.add(trial_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                ids = sorted(self._ids)
                if not ids:
                    self._thread = None
                    return
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception:  # the next beat retries (see the class doc)
                    continue
