"""A throwaway PostgreSQL server for the tests and CI: started, used, stopped, removed.

`PostgresServer` runs the installed `postgres` in a new temporary folder, listening on
127.0.0.1 only (a free port, no Unix socket), with trust authentication for one user and one
database, and durability off (a test server has nothing to keep). As root, it runs as the
`postgres` user: PostgreSQL refuses to run as root.

The server is a child of the process that starts it and dies with it, even on kill -9
(`automoe.processes.die_with_parent`); `stop` removes its folder, and a folder whose owner was
killed is removed by the next start. Nothing is assumed to be running already.

    python tests/postgres_server.py run -- python -m pytest -q

runs the command with the server's URL in $AUTOMOE_TEST_POSTGRES_URL and stops the server when
it ends, fails or is interrupted (what `.ci/run` does); the `postgres_url` fixture uses that
server, or starts one of its own. $AUTOMOE_TEST_POSTGRES_BIN names the folder of the server's
binaries when they are neither on $PATH nor where Debian's packages put them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from automoe.processes import die_with_parent

URL_ENV = "AUTOMOE_TEST_POSTGRES_URL"
BIN_ENV = "AUTOMOE_TEST_POSTGRES_BIN"
HOST = "127.0.0.1"
USER = "automoe"
DATABASE = "automoe"
FOLDER_PREFIX = "automoe-pg-"
OWNER_FILE = "owner.pid"
TOOLS = ("initdb", "postgres", "pg_isready", "createdb")
START_SECONDS = 60.0
STOP_SECONDS = 30.0
SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class ServerError(RuntimeError):
    """No server: binaries or user missing, or it did not start."""


def find_bindir() -> Path | None:
    """The folder holding PostgreSQL's server binaries: $AUTOMOE_TEST_POSTGRES_BIN, else
    `initdb`'s on $PATH, else Debian's /usr/lib/postgresql/VERSION/bin (newest first)."""
    if os.environ.get(BIN_ENV):
        candidates = [Path(os.environ[BIN_ENV])]
    else:
        found = shutil.which("initdb")
        candidates = [Path(found).resolve().parent] if found else []
        debian = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(debian, key=lambda p: _version(p.parent.name), reverse=True)
    return next((c for c in candidates if all((c / t).is_file() for t in TOOLS)), None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_folders(root: Path) -> None:
    """Remove the folders of servers whose owner was killed before it could stop them (the
    server died with its owner; its folder did not)."""
    for folder in root.glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    """One throwaway server: `with PostgresServer() as server: ... server.url ...`."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise ServerError(
                f"PostgreSQL's server binaries ({', '.join(TOOLS)}) were not found; install "
                f"them (Debian: apt-get install postgresql) or set {BIN_ENV} to their folder"
            )
        self.bindir = bindir
        self.user = _server_user()
        self.folder: Path | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The database's URL as a user writes it (no driver named)."""
        return f"postgresql://{USER}@{HOST}:{self.port}/{DATABASE}"

    def start(self) -> None:
        root = Path(tempfile.gettempdir())
        remove_stale_folders(root)
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=root))
        (self.folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
        if self.user is not None:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        data = str(self.folder / "data")
        self._tool("initdb", "-D", data, "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        self.port = _free_port()
        options = [f"-c{name}={value}" for name, value in SETTINGS.items()]
        with (self.folder / "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", data, "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_server_user(),
            )
        self._wait_ready()
        self._tool("createdb", "-h", HOST, "-p", str(self.port), "-U", USER, DATABASE)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL if it hangs; then the
        folder is removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments: the child runs as the server's user and dies with this process
        (the death signal is requested after the user change, which would clear it)."""
        args: dict[str, Any] = {
            "preexec_fn": functools.partial(die_with_parent, os.getpid(), poll=False)
        }
        if self.user is not None:
            args.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return args

    def _tool(self, name: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / name), *args],
            capture_output=True,
            text=True,
            **self._as_server_user(),
        )
        if result.returncode != 0:
            raise ServerError(f"{name} failed: {(result.stdout + result.stderr).strip()}")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        ready = [str(self.bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port)]
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"postgres ended at start:\n{self._log()}")
            if subprocess.run(ready, check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"postgres not ready after {START_SECONDS:.0f} s:\n{self._log()}")

    def _log(self) -> str:
        assert self.folder is not None
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text(errors="replace")[-2000:]
        return "(no log)"


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: this user, or `postgres` when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError(
            "running as root, and there is no `postgres` user to run the server as "
            "(PostgreSQL refuses root); install PostgreSQL's packages, which create it"
        ) from None


def create_database(url: str) -> str:
    """A new empty database on `url`'s server; returns its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    _admin(url, f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop `url`'s database, disconnecting whoever is still connected."""
    name = make_url(url).database
    _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(url: str, sql: str) -> None:
    """Run `sql` outside a transaction, connected to the server's own database."""
    engine = sqlalchemy.create_engine(
        make_url(url).set(database=DATABASE), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(command: list[str]) -> int:
    """Run `command` with a server's URL in $AUTOMOE_TEST_POSTGRES_URL; the server is stopped
    when the command ends, fails, or this process is interrupted or terminated (and dies with
    this process when it is killed, as does the command)."""
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    with PostgresServer() as server:
        print(f"PostgreSQL from {server.bindir} on {HOST}:{server.port}", flush=True)
        child = subprocess.Popen(
            command,
            env={**os.environ, URL_ENV: server.url},
            preexec_fn=functools.partial(die_with_parent, os.getpid(), poll=False),
        )
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("run", help="run COMMAND against a throwaway server").add_argument(
        "command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run: give the command after --")
    try:
        return run(command)
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
