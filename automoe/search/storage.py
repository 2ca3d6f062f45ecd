"""A search kept in an Optuna storage, shared by every worker that names it.

`python -m automoe.search --storage URL --study NAME` keeps the whole search in one Optuna
study. URL is an SQLAlchemy URL (`sqlite:///search.db` on one machine, `postgresql://...`
across machines) or the path of a journal file (Optuna's `JournalFileBackend`, one machine).
The study is the search's one record:

- its settings (strategy, seed, options, objectives, budget, batch, heartbeat, space), written
  once by the worker that created the study (system attribute `automoe:settings`); a worker
  asking for other settings is refused, naming what differs;
- the scores and costs of the reference sub-networks (`automoe:references`): a joining worker
  that scores them otherwise has another SuperNet, validation data or predictor, and is refused;
- one trial per claimed architecture, with user attributes `index` (its place in the search's
  one sequence of proposals), `arch_key`, `arch`, `worker`, the costs, `feasible`, `violation`
  and, once scored, `objective`, `loss` (or `bleu`) and `eval_s`; constraint values as Optuna's
  `constraints:NAME` system attributes, which its plots read; the objectives as the trial's
  values, named with `set_metric_names` (BLEU maximised, everything else minimised).

Trial states: RUNNING while a worker scores it (a claim), COMPLETE once scored, FAIL with a
`fail_reason` otherwise. FAIL "evaluation failed" is a result (scoring failed, it counts like a
score); any other FAIL is a claim that ended without a result and is tried again: lost to an
earlier claim, released by a worker that stopped, or failed as stale by heartbeat.

Claims: a worker claims an architecture by creating its trial, then reads the architecture's
other trials. The claim stands unless the architecture already has a result or an earlier
(lower trial id) live claim; one that does not stand is closed at once as FAIL ("lost").
Every storage serialises trial creation within a study (PostgreSQL and MySQL lock the study
row, SQLite locks the database, a journal orders its log), so ids order claims as they were
made: an earlier claim was visible to every later one, and exactly one claim stands.

Heartbeats: a worker beats for its live claims from a background thread. RDB storages use
Optuna's own (`RDBStorage(heartbeat_interval, grace_period)`, `fail_stale_trials`, clocked by
the database server). Optuna never fails a trial that has no heartbeat yet, so a database
claim is created with its time in `automoe:unbeaten`, cleared once its first beat is written;
waiting workers fail a claim still unbeaten after the grace period (its worker died between
the two writes). Optuna 5's journal storage has no heartbeats, so a journal claim carries
its last beat (this machine's clock) as system attribute `automoe:heartbeat`, and waiting
workers fail claims whose beat is older than the grace period themselves.
"""

from __future__ import annotations

import contextlib
import math
import random
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, fail_stale_trials, get_storage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy.engine import make_url

from automoe.errors import AutomoeError
from automoe.search.storage_url import storage_url
from automoe.space import ArchConfig
from automoe.strategies.optuna_storage import Heartbeat, quiet

SETTINGS_ATTR = "automoe:settings"
REFERENCES_ATTR = "automoe:references"
BEAT_ATTR = "automoe:heartbeat"
# Database storages: when a claim was made, until its first heartbeat is recorded (then None).
# Optuna never fails a running trial without a heartbeat, so a worker killed between the two
# writes would otherwise leave its architecture claimed for good.
UNBEATEN_ATTR = "automoe:unbeaten"
FAILED_EVALUATION = "evaluation failed"
LOST = "lost: another worker claimed this architecture first"
RELEASED = "released: its worker stopped before scoring it"
STALE = "stale: its worker's heartbeat stopped"
SCORES = ("objective", "loss", "bleu")  # what a result may lack (None): a failure, the other metric

SHARED_SETTINGS = (
    "strategy",
    "seed",
    "options",
    "objectives",
    "metric",
    "constraints",
    "latency",
    "searched_space",
    "evaluations",
    "batch",
    "heartbeat",
    "valid_size",
    "scoring_precision",
)
"""Settings every worker of one search shares; the rest (paths, threads, jobs) are its own."""

GRACE_BEATS = 3  # a claim is stale after this many heartbeat intervals without a beat
OPEN_TRIES = 20  # workers opening a fresh database together race to create its tables
SQLITE_WAIT_S = 120  # how long an SQLite write waits for another worker's to finish
SETTINGS_WAIT_S = 30.0  # how long a joining worker waits for the creator to write settings
REFERENCE_RTOL = 1e-3  # reference scores and costs agree to this between workers


def shown_url(url: str) -> str:
    """The storage as messages and files show it: a database URL without its password."""
    if is_journal(url):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def is_journal(url: str) -> bool:
    """A storage given without a URL scheme is a journal file's path (as optuna-dashboard reads
    its argument)."""
    return "://" not in url


def open_storage(url: str, heartbeat: int | None = None, existing: bool = False) -> BaseStorage:
    """The Optuna storage `url` names; with `heartbeat` (seconds), an RDB storage that records
    heartbeats and fails claims silent for `GRACE_BEATS` of them; `existing` refuses to create
    a journal or SQLite file (a reader's typo must not leave an empty one). Every problem a user
    can cause (no such file or folder, a URL Optuna cannot use, a missing driver, a database that
    does not answer) is an AutomoeError saying so."""
    if not _local_file_exists(url) and existing:
        raise AutomoeError(f"--storage {url}: {_local_file(url)} does not exist")
    if is_journal(url):
        return _journal(url)
    return _rdb(url, heartbeat)


def peek_settings(url: str, name: str) -> dict[str, Any] | None:
    """The settings of search `name` in storage `url` if it holds one yet; creates nothing, so a
    worker can take its defaults from the study before its inputs are checked."""
    if not _local_file_exists(url):
        return None
    return SharedStudy(url, name, worker="").stored_settings()


def _local_file(url: str) -> str | None:
    """The file a journal path or an SQLite URL names (None for a database server)."""
    if is_journal(url):
        return url
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    return parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _local_file_exists(url: str) -> bool:
    """Whether the storage's file exists (True for a server); its folder must."""
    local = _local_file(url)
    if local is None:
        return True
    if not Path(local).parent.is_dir():
        raise AutomoeError(
            f"--storage {url}: folder {Path(local).parent} does not exist; create it, or give "
            "a database URL"
        )
    return Path(local).is_file()


def _journal(path: str) -> JournalStorage:
    try:
        return JournalStorage(JournalFileBackend(path))
    except (OSError, ValueError) as err:
        raise AutomoeError(
            f"--storage {path} is not a usable Optuna journal file ({err})"
        ) from None


def _rdb(url: str, heartbeat: int | None) -> BaseStorage:
    shown = shown_url(url)
    url = storage_url(url)  # PostgreSQL through the driver installed here
    try:
        backend = make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        raise AutomoeError(
            f"--storage {url!r} is not a database URL; write e.g. sqlite:///search.db, "
            "postgresql://USER@HOST/DB, or the path of a journal file"
        ) from None
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        engine["connect_args"] = {"timeout": SQLITE_WAIT_S}
    for attempt in range(OPEN_TRIES):
        try:
            with quiet():
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat,
                    grace_period=GRACE_BEATS * heartbeat if heartbeat else None,
                )
            if backend == "sqlite":
                _write_ahead(storage.engine)
            return get_storage(storage)  # Optuna's cache of finished trials, as its studies use
        except sqlalchemy.exc.NoSuchModuleError:
            raise AutomoeError(
                f"--storage {shown}: SQLAlchemy knows no database called {backend!r}; write "
                "sqlite:///FILE, postgresql://USER@HOST/DB, or the path of a journal file"
            ) from None
        except ImportError as err:
            raise AutomoeError(
                f"--storage {shown}: no database driver for {backend} here "
                f"({err.__cause__ or err}); install one, e.g. pip install psycopg2-binary for "
                "PostgreSQL"
            ) from None
        except sqlalchemy.exc.ArgumentError as err:
            raise AutomoeError(f"--storage {shown}: {err}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            if not _creation_race(err) or attempt == OPEN_TRIES - 1:
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
                raise AutomoeError(
                    f"--storage {shown}: cannot open the database ({reason})"
                ) from None
        except RuntimeError as err:  # a schema another Optuna version wrote
            raise AutomoeError(f"--storage {shown}: {err}") from None
        time.sleep(random.uniform(0.05, 0.3))
    raise AssertionError("unreachable")


def _write_ahead(engine: sqlalchemy.engine.Engine) -> None:
    """Switch an SQLite file to its write-ahead log, with synchronous=NORMAL (SQLite's advice
    for it): readers no longer wait for a writer, and a write costs about 2 ms instead of 15
    on this project's disk, which several workers recording every evaluation feel. A killed
    worker still loses no committed write; a power cut may lose the last ones. The mode stays
    with the file (beside it, `-wal` and `-shm` files while it is open)."""

    def pragmas(connection: Any, record: Any) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # busy: another worker switches it
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened before the listener close, later ones get it


def _creation_race(err: Exception) -> bool:
    """Whether opening failed because another worker was creating the same tables."""
    text = str(err).lower()
    return any(word in text for word in ("already exists", "unique", "duplicate", "locked"))


@dataclass(frozen=True)
class Entry:
    """One trial of the study as the search reads it."""

    trial_id: int
    state: TrialState
    attrs: Mapping[str, Any]
    system: Mapping[str, Any]
    started: datetime | None

    @classmethod
    def of(cls, trial: FrozenTrial) -> Entry:
        return cls(
            trial._trial_id, trial.state, trial.user_attrs, trial.system_attrs, trial.datetime_start
        )

    @property
    def key(self) -> str | None:
        return self.attrs.get("arch_key")

    @property
    def index(self) -> int | None:
        return self.attrs.get("index")

    @property
    def worker(self) -> str | None:
        return self.attrs.get("worker")

    @property
    def told(self) -> bool:
        """A result: scored, or scoring failed."""
        failed = self.attrs.get("fail_reason") == FAILED_EVALUATION
        return self.state == TrialState.COMPLETE or (self.state == TrialState.FAIL and failed)

    @property
    def live(self) -> bool:
        """A claim being scored (or whose worker died and is not failed as stale yet)."""
        return self.state == TrialState.RUNNING

    def row(self) -> dict[str, Any]:
        """The evaluation as the search records it (see `automoe.search.loop`), with its worker
        (and, for a failed evaluation, `fail_reason`)."""
        return {**dict.fromkeys(SCORES), **self.attrs}


class SharedStudy:
    """The search's study in a storage, seen by one worker (`worker` names it in the record)."""

    def __init__(self, url: str, name: str, worker: str, existing: bool = False) -> None:
        self.url = url
        self.shown = shown_url(url)
        self.name = name
        self.worker = worker
        self.storage = open_storage(url, existing=existing)
        self.study_id: int | None = None
        self.grace_s = 0.0
        self._beat: Heartbeat | None = None
        self._study: optuna.Study | None = None

    def _id(self) -> int:
        if self.study_id is None:
            raise AssertionError("call start() first")
        return self.study_id

    def stored_settings(self) -> dict[str, Any] | None:
        """The settings of the search if the study exists and has them yet, else None."""
        try:
            study_id = self.storage.get_study_id_from_name(self.name)
        except KeyError:
            return None
        return self.storage.get_study_system_attrs(study_id).get(SETTINGS_ATTR)

    def attach(self) -> dict[str, Any]:
        """The settings of the existing search, to read it; AutomoeError if there is none."""
        settings = self.stored_settings()
        if settings is None:
            names = sorted(s.study_name for s in self.storage.get_all_studies())
            raise AutomoeError(
                f"{self.shown} holds no automoe search named {self.name!r} (its studies: "
                f"{', '.join(names) or 'none'})"
            )
        self.study_id = self.storage.get_study_id_from_name(self.name)
        return settings

    def start(self, settings: dict[str, Any]) -> None:
        """Create the study with `settings`, or join it when they agree with its own; then beat
        for this worker's claims every `settings["heartbeat"]` seconds, and release the claims
        a previous run of this worker (its name) left.

        Workers may start at the same moment: Optuna lets one create the study, the others
        find it and wait for its settings."""
        directions = [
            StudyDirection.MAXIMIZE if name == "bleu" else StudyDirection.MINIMIZE
            for name in settings["objectives"]
        ]
        try:
            self.study_id = self.storage.create_new_study(directions, self.name)
            created = True
        except DuplicatedStudyError:
            self.study_id = self.storage.get_study_id_from_name(self.name)
            created = False
        if created:
            self.storage.set_study_system_attr(self._id(), SETTINGS_ATTR, settings)
        else:
            problems = differences(self._wait_for_settings(), settings)
            if problems:
                raise AutomoeError(
                    f"study {self.name!r} in {self.shown} is a search with other settings: "
                    f"{'; '.join(problems)}; give the same options as its other workers, or "
                    "another --study"
                )
        heartbeat = int(settings["heartbeat"])
        self.grace_s = float(GRACE_BEATS * heartbeat)
        if is_journal(self.url):
            self._beat = Heartbeat(_JournalBeat(self), heartbeat)
        else:  # reopened with Optuna's heartbeats switched on
            self.storage = open_storage(self.url, heartbeat)
            self._beat = Heartbeat(self.storage, heartbeat)
        self._study = optuna.load_study(study_name=self.name, storage=self.storage)
        if created:
            with quiet():  # experimental in Optuna 5, and what optuna-dashboard reads
                self._study.set_metric_names(list(settings["objectives"]))
        self.release([e for e in self.entries() if e.live and e.worker == self.worker], RELEASED)

    def _wait_for_settings(self) -> dict[str, Any]:
        deadline = time.monotonic() + SETTINGS_WAIT_S
        while True:
            attrs = self.storage.get_study_system_attrs(self._id())
            if SETTINGS_ATTR in attrs:
                return attrs[SETTINGS_ATTR]
            has_trials = bool(self.storage.get_all_trials(self._id(), deepcopy=False))
            if has_trials or time.monotonic() > deadline:
                raise AutomoeError(
                    f"study {self.name!r} in {self.shown} holds no automoe search (another "
                    "program made it, or its first worker stopped while creating it); choose "
                    f"another --study, or delete it: optuna delete-study --storage {self.shown} "
                    f"--study-name {self.name}"
                )
            time.sleep(0.2)

    def check_references(self, references: Mapping[str, Mapping[str, Any]]) -> None:
        """Store the reference sub-networks' scores and costs, or check them against the stored
        ones: a worker scoring them otherwise would record incomparable results."""
        stored = self.storage.get_study_system_attrs(self._id()).get(REFERENCES_ATTR)
        if stored is None:
            self.storage.set_study_system_attr(self._id(), REFERENCES_ATTR, dict(references))
            return
        for name, mine in references.items():
            theirs = stored.get(name, {})
            for metric in ("loss", "bleu", "latency_ms", "flops", "params"):
                a, b = mine.get(metric), theirs.get(metric)
                if a is None and b is None:
                    continue
                if a is None or b is None or not math.isclose(a, b, rel_tol=REFERENCE_RTOL):
                    raise AutomoeError(
                        f"this worker gets {metric} = {a} for the {name} reference architecture "
                        f"where study {self.name!r} recorded {b}: it scores with another "
                        "SuperNet, validation data or latency predictor; give every worker the "
                        "same --supernet, --predictor and --data-dir"
                    )

    def references(self) -> dict[str, Any]:
        return dict(self.storage.get_study_system_attrs(self._id()).get(REFERENCES_ATTR) or {})

    def entries(self) -> list[Entry]:
        """Every trial of the study, as it is now."""
        return [Entry.of(t) for t in self.storage.get_all_trials(self._id(), deepcopy=False)]

    def rows(self) -> list[dict[str, Any]]:
        """Every result recorded now, in the order of the search's proposals (`index`)."""
        told = sorted((e for e in self.entries() if e.told), key=lambda e: e.index or 0)
        return [e.row() for e in told]

    def claim(
        self,
        arch: ArchConfig,
        attrs: Mapping[str, Any],
        constraints: Mapping[str, float],
    ) -> int | None:
        """Claim `arch` (see the module doc): its trial id if the claim stands, else None.

        `attrs` are the user attributes known before scoring (index, costs...), `constraints`
        the constraint values by name."""
        key = arch.key()
        system = {f"constraints:{name}": value for name, value in constraints.items()}
        if not is_journal(self.url):
            system[UNBEATEN_ATTR] = time.time()
        template = create_trial(
            state=TrialState.RUNNING,
            user_attrs={**attrs, "arch_key": key, "arch": arch.to_dict(), "worker": self.worker},
            system_attrs=system,
        )
        trial_id = self.storage.create_new_trial(self._id(), template)
        self._first_beat(trial_id)
        rivals = [e for e in self.entries() if e.key == key and e.trial_id != trial_id]
        if any(e.told or (e.live and e.trial_id < trial_id) for e in rivals):
            self.release([trial_id], LOST)
            return None
        return trial_id

    def _first_beat(self, trial_id: int) -> None:
        """Beat for a new claim from now on; on a database, clear its unbeaten mark."""
        assert self._beat is not None
        self._beat.add(trial_id)
        if not is_journal(self.url):
            self.storage.set_trial_system_attr(trial_id, UNBEATEN_ATTR, None)

    def finish(self, trial_id: int, attrs: Mapping[str, Any], values: list[float] | None) -> bool:
        """Record a claim's result (`values` None: scoring failed). False when the claim was no
        longer this worker's: failed as stale meanwhile, and claimed again by another."""
        assert self._beat is not None
        try:
            for key, value in attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, value)
            if values is None:
                self.storage.set_trial_user_attr(trial_id, "fail_reason", FAILED_EVALUATION)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            else:
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values)
        except UpdateFinishedTrialError:
            return False
        finally:
            self._beat.remove(trial_id)
        return True

    def release(self, entries: Sequence[Entry | int], reason: str) -> None:
        """Close claims without a result, so that others claim their architectures again."""
        for entry in entries:
            trial_id = entry if isinstance(entry, int) else entry.trial_id
            if self._beat is not None:
                self._beat.remove(trial_id)
            try:
                self.storage.set_trial_user_attr(trial_id, "fail_reason", reason)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue

    def expire_stale(self) -> None:
        """Fail the claims whose worker stopped beating, so that others score them."""
        now = time.time()
        if not is_journal(self.url):
            with quiet():
                fail_stale_trials(self._study)  # type: ignore[arg-type]
            unbeaten = [
                e
                for e in self.entries()
                if e.live
                and e.system.get(UNBEATEN_ATTR) is not None
                and now - float(e.system[UNBEATEN_ATTR]) > self.grace_s
            ]
            self.release(unbeaten, STALE)
            return
        stale = []
        for entry in self.entries():
            if not entry.live:
                continue
            beat = entry.system.get(BEAT_ATTR)
            if beat is None and entry.started is not None:
                beat = entry.started.timestamp()
            if beat is not None and now - float(beat) > self.grace_s:
                stale.append(entry)
        self.release(stale, STALE)


class _JournalBeat:
    """A journal claim's heartbeat: the time of its last beat, as a trial system attribute."""

    def __init__(self, study: SharedStudy) -> None:
        self._study = study

    def record_heartbeat(self, trial_id: int) -> None:
        self._study.storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())


def differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The shared settings in which `wanted` differs from the study's, in words."""
    out = []
    for key in SHARED_SETTINGS:
        theirs, mine = stored.get(key), wanted.get(key)
        if theirs == mine:
            continue
        if key == "searched_space":
            out.append("it searches another space")
        else:
            out.append(f"{key} is {theirs!r} there, {mine!r} here")
    return out
