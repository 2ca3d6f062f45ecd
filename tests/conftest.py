"""Shared fixtures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from postgres_server import URL_ENV, PostgresServer, ServerError, create_database, drop_database
from torch import Tensor

from automoe.errors import AutomoeError
from automoe.precision import FP32, Precision
from automoe.search.storage_url import storage_url


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """For tests of benchmarks, which fix torch's thread count: the others get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder containing `multi30k/`: $AUTOMOE_DATA_DIR, else ../shared/data beside the repo."""
    if os.environ.get("AUTOMOE_DATA_DIR"):
        return Path(os.environ["AUTOMOE_DATA_DIR"])
    fallback = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    pytest.skip("corpus not found: set AUTOMOE_DATA_DIR to the folder containing multi30k/")


TINY_SPACE = """\
name: tiny
qkv_dim: 32
max_experts: 2
fractional_experts: true
identity_experts: false
encoder:
  embed_dim: [24, 32]
  layers: [2]
  ffn_dim: [32, 64]
  heads: [2, 4]
  experts: [1, 2]
  top_k: [1]
decoder:
  embed_dim: [24, 32]
  layers: [1, 2]
  ffn_dim: [32, 64]
  self_heads: [2, 4]
  cross_heads: [2, 4]
  cross_layers: [1, 2]
  experts: [1, 2]
  top_k: [1]
"""


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizers and downloads go to a per-session cache, never the user's."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search space small enough to train a SuperNet in seconds."""
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="session")
def routed_space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny space whose MoE layers may route by token, source sentence or task."""
    routed = TINY_SPACE.replace("name: tiny", "name: tiny-routed").replace(
        "  top_k: [1]\n", "  top_k: [1]\n  routing: [token, sentence, task]\n"
    )
    path = tmp_path_factory.mktemp("space") / "tiny-routed.yaml"
    path.write_text(routed)
    return path


@pytest.fixture(scope="session")
def train_tiny(data_dir: Path) -> Callable[..., Path]:
    """Train a tiny SuperNet in seconds: `train_tiny(run, space, **flags)`; flags override."""
    from automoe.train.__main__ import main as train_main

    def train(run: Path, space: Path, **flags: object) -> Path:
        args = {
            "run": run,
            "space": space,
            "data-dir": data_dir,
            "train-limit": 400,
            "valid-size": 30,
            "vocab-size": 400,
            "max-tokens": 512,
            "max-steps": 30,
            "warmup-steps": 5,
            "lr": 3e-3,
            "threads": 1,
            **{key.replace("_", "-"): value for key, value in flags.items()},
        }
        assert train_main([*(f"--{k}={v}" for k, v in args.items()), "--no-progress"]) == 0
        return run

    return train


@pytest.fixture(scope="session")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_space_file: Path,
    train_tiny: Callable[..., Path],
) -> Path:
    """A run folder holding a tiny SuperNet trained for a few seconds on Multi30k en-de."""
    return train_tiny(tmp_path_factory.mktemp("tiny-run") / "run", tiny_space_file)


BF16 = Precision("bf16", "cpu", "bf16", "tests: autocast over fp32 weights, as train --precision")
# One bf16 rounding: 8 significant bits, so 2**-7 relative; values near 0 inherit the rounding
# of O(1) intermediates, hence as much absolute.
BF16_ONE_ROUNDING = {"rtol": 2**-7, "atol": 2**-7}


@pytest.fixture(scope="session", params=[FP32, BF16], ids=["fp32", "bf16"])
def precision(request: pytest.FixtureRequest) -> Precision:
    """Each precision a forward pass may run in: equality tests hold in both.

    `with precision.autocast():` is the region a command computes in (fp32: no autocast). bf16
    is built directly rather than resolved, so the tests run on CPUs without bf16 instructions
    too (slower there, same numbers). Session scope lets hypothesis tests use it.
    """
    return request.param


@pytest.fixture(scope="session")
def assert_same(precision: Precision) -> Callable[..., None]:
    """`assert_same(got, want, **fp32_tolerance)`: outputs of two computations that differ only
    in kernel shapes (one decoder position vs all of them) agree in this precision.

    fp32 keeps the caller's tolerance; bf16 allows one bf16 rounding, since fp32 accumulations
    that differ in their last bits can round to neighbouring bf16 values. A wrong weight slice,
    skipped expert or cache position is off by far more.
    """

    def check(got: Tensor, want: Tensor, **fp32_tolerance: float) -> None:
        assert got.dtype == want.dtype
        tolerance = fp32_tolerance if precision.name == "fp32" else BF16_ONE_ROUNDING
        torch.testing.assert_close(got, want, **tolerance)

    return check


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="session")
def wait_ended() -> Callable[..., list[int]]:
    """Wait up to `seconds` for processes to end; returns the pids still running (Linux)."""

    def wait(pids: list[int], seconds: float = 10.0) -> list[int]:
        deadline = time.monotonic() + seconds
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [p for p in pids if _running(p)]

    return wait


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_unavailable(reason: str) -> NoReturn:
    """Skip here; fail in CI (CI=true), which must never silently not test PostgreSQL."""
    if in_ci():
        pytest.fail(f"CI needs PostgreSQL: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


def _driver_url(url: str) -> str:
    try:
        return storage_url(url)
    except AutomoeError as err:
        _postgres_unavailable(str(err))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the session, as a SQLAlchemy URL Optuna accepts: on the
    server `.ci/run` started ($AUTOMOE_TEST_POSTGRES_URL), else on a throwaway server started
    here and stopped (folder removed) at the session's end. Share it through unique study
    names, or take `postgres_database` for a database of a test's own."""
    if os.environ.get(URL_ENV):
        yield _driver_url(os.environ[URL_ENV])
        return
    try:
        with PostgresServer() as server:
            yield _driver_url(server.url)
    except ServerError as err:
        _postgres_unavailable(str(err))


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (workers starting together on a fresh
    database), dropped afterwards."""
    url = create_database(postgres_url)
    yield url
    drop_database(url)


_FAKE_JOB = """\
import sys, time
from pathlib import Path
name, out, trace, sleep = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
with trace.open("a") as f:
    f.write(f"start {name}\\n")
time.sleep(sleep)
with trace.open("a") as f:
    f.write(f"end {name}\\n")
out.write_text(" ".join(sys.argv[5:]))
"""


@pytest.fixture
def fake_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module `fakejob NAME OUT TRACE SECONDS ARGS...` that logs its start and end."""
    (tmp_path / "fakejob.py").write_text(_FAKE_JOB)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path / "trace.txt"
