"""Saved cost predictors: no code runs when one is opened.

The model is stored with skops and built only from trusted types; format-1 files (a pickle)
are refitted from their CSV, never unpickled.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import pickle
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as skops_io
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from automoe.predictors import MODELS, ArchFeatures, CostPredictor, PredictorError
from automoe.predictors.models import TRUSTED_TYPES
from automoe.space import SearchSpace

SPACE = SearchSpace.load("multi30k")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """BLAS/OpenMP spin-waits crawl on a busy 2-core machine; one thread keeps tests fast."""
    with threadpool_limits(1):
        yield


def synthetic_ms(X: np.ndarray) -> np.ndarray:
    """A latency that grows with every feature (FFN MACs dominate), in milliseconds."""
    return 2 + 1e-3 * X.sum(axis=1) + 1e-5 * X.max(axis=1) ** 1.5


def write_dataset(path: Path, space: SearchSpace, count: int = 40, sidecar: bool = True) -> Path:
    """A CSV shaped like `python -m automoe.latency dataset` output, with its sidecar."""
    rng = random.Random(count)
    archs = [space.sample(rng) for _ in range(count)]
    features = ArchFeatures.from_space(space)
    X = features.transform(archs)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*features.columns, "arch_key", "arch", "latency_ms"])
        for arch, row, ms in zip(archs, X, synthetic_ms(X), strict=True):
            writer.writerow([*row.tolist(), arch.key(), arch.to_json(), ms])
    if sidecar:
        meta = {"space": space.to_dict(), "weights": "random", "seed": 0}
        path.with_suffix(".csv.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("latency") / "lat.csv", SPACE)


@pytest.fixture(scope="module")
def saved(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "lat.predictor"
    CostPredictor(model="linear", cv=None).fit_csv(dataset).save(path)
    return path


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def rewrite(source: Path, target: Path, entry: str, model: bytes, **changes: Any) -> Path:
    """A copy of a saved predictor whose only model entry is `entry` holding `model`, with
    manifest values changed."""
    meta = {**json.loads(entries(source)["manifest.json"]), **changes}
    with zipfile.ZipFile(target, "w") as bundle:
        bundle.writestr("manifest.json", json.dumps(meta))
        bundle.writestr(entry, model)
    return target


def as_format_1(source: Path, target: Path, pickled: bytes, **changes: Any) -> Path:
    """A predictor as automoe wrote it before skops: format 1 and `model.pkl`."""
    return rewrite(source, target, "model.pkl", pickled, format_version=1, **changes)


class Marker:
    """An object whose unpickling (or skops construction) creates a file: running it shows."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.path!r}, 'w').close()",))

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["path"]).touch()


# ---------------------------------------------------------------------- skops and trust


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_round_trips_through_skops_with_trusted_types_only(
    dataset: Path, tmp_path: Path, name: str
) -> None:
    original = CostPredictor(model=name, cv=None).fit_csv(dataset)
    original.save(tmp_path / "m")
    stored = entries(tmp_path / "m")
    assert sorted(stored) == ["manifest.json", "model.skops"]
    assert set(skops_io.get_untrusted_types(data=stored["model.skops"])) <= set(TRUSTED_TYPES)
    loaded = CostPredictor.load(tmp_path / "m")
    assert type(loaded.estimator_) is type(original.estimator_)
    assert np.array_equal(loaded.predict_csv(dataset), original.predict_csv(dataset))


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (lambda marker: Marker(marker), f"{__name__}.Marker"),
        (lambda marker: FunctionTransformer(func=exec), "builtins.exec"),
    ],
    ids=["unknown-class", "trusted-class-holding-a-foreign-function"],
)
def test_a_model_of_untrusted_types_is_refused_by_name_without_running_it(
    saved: Path, tmp_path: Path, payload: Any, named: str
) -> None:
    marker = tmp_path / "marker"
    state = skops_io.dumps(payload(marker))
    bad = rewrite(saved, tmp_path / "bad.predictor", "model.skops", state)
    with pytest.raises(PredictorError) as err:
        CostPredictor.load(bad)  # refused even though its training CSV is there to refit
    message = str(err.value)
    assert f"refusing to load the model in {bad}: it holds the untrusted type(s) {named}," in (
        message
    )
    assert "python -m automoe.predictors fit" in message and "\n" not in message
    assert not marker.exists()


def test_a_pickled_model_is_never_unpickled(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(Marker(marker))
    old = as_format_1(saved, tmp_path / "old.predictor", payload, training_data=None)
    with pytest.raises(PredictorError) as err:
        CostPredictor.load(old)
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith(
        f"cannot load the model in {old} (its model is a pickle, which automoe no longer opens "
        "because unpickling runs whatever code the file holds; this one would import "
        "builtins.exec), and it records no training CSV to refit from: fit a new one with "
        f"`python -m automoe.predictors fit --data LATENCY.csv --out {old}`"
    )


def test_a_format_1_file_is_refitted_from_its_csv_with_one_line(
    dataset: Path, saved: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "marker"
    old = as_format_1(saved, tmp_path / "old.predictor", pickle.dumps(Marker(marker)))
    with caplog.at_level(logging.WARNING):
        loaded = CostPredictor.load(old)
    assert not marker.exists()
    [record] = caplog.records
    assert "refitted the linear model from" in record.getMessage()
    assert "its model is a pickle" in record.getMessage() and "\n" not in record.getMessage()
    expected = CostPredictor.load(saved)
    assert np.array_equal(loaded.predict_csv(dataset), expected.predict_csv(dataset))


def test_a_model_from_another_scikit_learn_version_is_refitted(
    dataset: Path, saved: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("sklearn.base.__version__", "0.1")  # as if saved by another version
    with caplog.at_level(logging.WARNING):
        loaded = CostPredictor.load(saved)
    assert "refitted the linear model" in caplog.text and "saved with scikit-learn" in caplog.text
    monkeypatch.undo()
    expected = CostPredictor.load(saved)
    assert np.array_equal(loaded.predict_csv(dataset), expected.predict_csv(dataset))


def test_a_failed_flush_to_disk_keeps_the_previous_file(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lat.predictor"
    CostPredictor(model="linear", cv=None).fit_csv(dataset).save(path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(PredictorError, match=r"cannot save the predictor to .*No space left"):
        CostPredictor(model="gbm", cv=None).fit_csv(dataset).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat.predictor"]
