"""PostgreSQL for the tests and for users: the throwaway server (started, stopped, removed,
dead with its owner), the fixture's skip-here/fail-in-CI rule, a study written and read back
through Optuna, and plain `postgresql://` URLs given the installed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from postgres_server import BIN_ENV, URL_ENV, PostgresServer
from sqlalchemy.engine import make_url

from automoe.errors import AutomoeError
from automoe.search.storage_url import INSTALL, storage_url

ROOT = Path(__file__).resolve().parents[1]


def test_a_study_is_written_and_read_back(postgres_database: str) -> None:
    """A plain URL, as a user writes it, works with Optuna once given the driver."""
    plain = make_url(postgres_database).set(drivername="postgresql")
    url = storage_url(plain.render_as_string(hide_password=False))
    study = optuna.create_study(
        study_name="round-trip", storage=url, directions=["minimize", "minimize"]
    )
    widths = optuna.distributions.CategoricalDistribution([64, 128, 256])
    for width in (64, 128, 256):
        study.enqueue_trial({"width": width})
        trial = study.ask({"width": widths})
        trial.set_user_attr("arch", {"width": width})
        study.tell(trial, [1.0 / width, width / 10])

    again = optuna.load_study(study_name="round-trip", storage=url)
    assert again.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert [t.user_attrs["arch"]["width"] for t in again.trials] == [64, 128, 256]
    assert [t.values for t in again.trials] == [[1.0 / w, w / 10] for w in (64, 128, 256)]
    assert [t.params["width"] for t in again.trials] == [64, 128, 256]


def test_the_server_stops_and_leaves_nothing(postgres_url: str) -> None:
    with PostgresServer() as server:
        assert server.proc is not None
        folder, proc = server.folder, server.proc
        assert folder is not None and (folder / "data" / "postmaster.pid").is_file()
        assert proc.poll() is None
    assert proc.returncode == 0, "a fast shutdown ends with status 0"
    assert not folder.exists()


OWNER = """
import sys, time
sys.path.insert(0, {tests!r})
from postgres_server import PostgresServer
server = PostgresServer()
server.start()
print(server.proc.pid, server.folder, flush=True)
time.sleep(600)
"""


def test_the_server_dies_with_its_owner(
    postgres_url: str, wait_ended: Callable[..., list[int]]
) -> None:
    """kill -9 of the process that started it ends the server; the next start removes the
    folder it left."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(tests=str(ROOT / "tests"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid, folder = owner.stdout.readline().split()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert wait_ended([int(pid)]) == []
    assert Path(folder).is_dir()
    with PostgresServer():
        assert not Path(folder).exists()


def _fixture_run(ci: bool) -> subprocess.CompletedProcess[str]:
    """This file's first test in a new pytest where no PostgreSQL binaries can be found."""
    env = {k: v for k, v in os.environ.items() if k not in (URL_ENV, "CI")}
    env[BIN_ENV] = "/nonexistent"
    if ci:
        env["CI"] = "true"
    test = f"{Path(__file__).name}::test_a_study_is_written_and_read_back"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"tests/{test}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_without_postgresql_the_tests_skip_here_and_fail_in_ci() -> None:
    here = _fixture_run(ci=False)
    assert here.returncode == 0, here.stdout + here.stderr
    assert "1 skipped" in here.stdout
    assert "binaries (initdb, postgres, pg_isready, createdb) were not found" in here.stdout

    ci = _fixture_run(ci=True)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "CI needs PostgreSQL" in ci.stdout and "1 error" in ci.stdout


@pytest.fixture
def drivers(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Pretend which PostgreSQL drivers are installed."""

    def installed(*names: str) -> None:
        for name in ("psycopg", "psycopg2"):
            module = types.ModuleType(name) if name in names else None
            monkeypatch.setitem(sys.modules, name, module)

    return installed


def test_a_plain_url_gets_psycopg3_unless_psycopg2_is_installed(
    drivers: Callable[..., None],
) -> None:
    drivers("psycopg")
    assert (
        storage_url("postgresql://u:pw@db.lan:5432/s") == "postgresql+psycopg://u:pw@db.lan:5432/s"
    )
    assert storage_url("postgresql+psycopg://u@db/s") == "postgresql+psycopg://u@db/s"
    drivers("psycopg", "psycopg2")
    assert storage_url("postgresql://u@db/s") == "postgresql://u@db/s"


@pytest.mark.parametrize("url", ["sqlite:///search.db", "runs/search.journal", "mysql://u@h/d"])
def test_other_urls_are_left_alone(url: str, drivers: Callable[..., None]) -> None:
    drivers()
    assert storage_url(url) == url


@pytest.mark.parametrize(
    "url", ["postgresql://u:secret@db/s", "postgresql+psycopg://u:secret@db/s"]
)
def test_a_missing_driver_is_one_message_naming_the_install(
    url: str, drivers: Callable[..., None]
) -> None:
    drivers()
    with pytest.raises(AutomoeError, match="psycopg driver, which is not installed") as err:
        storage_url(url)
    assert INSTALL in str(err.value)
    assert "secret" not in str(err.value)
