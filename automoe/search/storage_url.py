"""A storage URL as the user typed it, made into one SQLAlchemy (and so Optuna) can open.

PostgreSQL is the storage shared across machines, through psycopg 3 (`pip install -e
".[postgres]"`). SQLAlchemy reads a plain `postgresql://` URL as psycopg2, the older driver,
so a plain URL is given psycopg 3 explicitly unless psycopg2 is installed. A missing driver is
reported here, in one line, rather than as SQLAlchemy's traceback at the first connection.
"""

from __future__ import annotations

import importlib

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from automoe.errors import AutomoeError

INSTALL = 'pip install -e ".[postgres]"'


def storage_url(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed; other URLs unchanged."""
    if not url.startswith("postgresql"):
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise AutomoeError(
            f"storage {url!r} is not a database URL; write postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    if parsed.drivername == "postgresql":
        if _installed("psycopg2"):
            return url
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        return url
    if not _installed("psycopg"):
        shown = parsed.render_as_string(hide_password=True)
        raise AutomoeError(
            f"storage {shown}: PostgreSQL needs the psycopg driver, which is not installed; "
            f"install it with {INSTALL}"
        )
    return parsed.render_as_string(hide_password=False)


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
