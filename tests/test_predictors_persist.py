"""Saved cost predictors: no code runs when one is opened, and it knows what it was fitted on.

The model is stored with skops and built only from trusted types; format-1 files (a pickle)
are refitted from their CSV, never unpickled; the file records the search space and feature
schema, and a search over a space the predictor was not fitted on refuses it.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as skops_io
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from automoe.errors import AutomoeError, run_cli
from automoe.predictors import MODELS, ArchFeatures, CostPredictor, PredictorError
from automoe.predictors.__main__ import main as predictors_main
from automoe.predictors.models import TRUSTED_TYPES
from automoe.predictors.scope import space_hash
from automoe.search.__main__ import main as search_main
from automoe.space import SearchSpace

SPACE = SearchSpace.load("multi30k")
WMT = SearchSpace.load("wmt")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """BLAS/OpenMP spin-waits crawl on a busy 2-core machine; one thread keeps tests fast."""
    with threadpool_limits(1):
        yield


def variant(space: SearchSpace, **changes: Any) -> SearchSpace:
    """`space` with some choices replaced, e.g. variant(SPACE, decoder={"layers": [1, 2]})."""
    data = space.to_dict()
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return SearchSpace.from_dict(data)


def synthetic_ms(X: np.ndarray) -> np.ndarray:
    """A latency that grows with every feature (FFN MACs dominate), in milliseconds."""
    return 2 + 1e-3 * X.sum(axis=1) + 1e-5 * X.max(axis=1) ** 1.5


def write_dataset(
    path: Path,
    space: SearchSpace,
    count: int = 40,
    sidecar: bool = True,
    precision: str | None = None,
) -> Path:
    """A CSV shaped like `python -m automoe.latency dataset` output, with its sidecar (which
    records a `precision` when given, as latency datasets do since they record one)."""
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
        meta: dict[str, Any] = {"space": space.to_dict(), "weights": "random", "seed": 0}
        if precision is not None:
            meta["precision"] = {"precision": precision, "requested": precision, "reason": "test"}
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
    manifest values changed (a value None for `space` or `precision` drops it, as files written
    before they were recorded lack them)."""
    meta = {**json.loads(entries(source)["manifest.json"]), **changes}
    for key in ("space", "precision"):
        if key in changes and changes[key] is None:
            del meta[key]
    with zipfile.ZipFile(target, "w") as bundle:
        bundle.writestr("manifest.json", json.dumps(meta))
        bundle.writestr(entry, model)
    return target


def as_format_1(source: Path, target: Path, pickled: bytes, **changes: Any) -> Path:
    """A predictor as automoe wrote it before skops: format 1, no space, `model.pkl`."""
    return rewrite(source, target, "model.pkl", pickled, format_version=1, space=None, **changes)


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
    assert loaded.space_ == SPACE  # from the dataset's sidecar: format 1 recorded no space


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


def test_a_model_that_could_not_be_loaded_back_is_not_saved(
    dataset: Path, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with a scikit-learn that builds a model from types TRUSTED_TYPES does not list."""
    path = Path(shutil.copy(saved, tmp_path / "lat.predictor"))
    without_trees = tuple(t for t in TRUSTED_TYPES if t != "sklearn.tree._tree.Tree")
    monkeypatch.setattr("automoe.predictors.persist.TRUSTED_TYPES", without_trees)
    forest = CostPredictor(model="forest", cv=None).fit_csv(dataset)
    with pytest.raises(PredictorError, match=r"its model holds sklearn\.tree\._tree\.Tree, which"):
        forest.save(path)
    assert path.read_bytes() == saved.read_bytes()


# ---------------------------------------------------------------------- what it was fitted on


def test_the_space_of_a_latency_dataset_is_recorded(saved: Path) -> None:
    manifest = json.loads(entries(saved)["manifest.json"])
    assert manifest["space"] == {
        "name": "multi30k",
        "hash": space_hash(SPACE),
        "definition": SPACE.to_dict(),
    }
    assert manifest["features"]["arch_features"]["schema"] == ArchFeatures.from_space(SPACE).schema
    loaded = CostPredictor.load(saved)
    assert loaded.space_ == SPACE
    loaded.check_fits(SPACE)
    loaded.check_fits(variant(SPACE, decoder={"layers": [1, 2]}))  # a sub-space is served


@pytest.mark.parametrize(
    ("space", "which"),
    [
        (WMT, "qkv_dim is 512, the predictor's 256"),
        (
            variant(SPACE, decoder={"ffn_dim": [512, 768, 1024, 2048]}),
            "decoder.ffn_dim is [512, 768, 1024, 2048], the predictor's [512, 768, 1024]",
        ),
        (variant(SPACE, identity_experts=True), "identity_experts is true, the predictor's false"),
    ],
)
def test_a_predictor_of_another_space_is_refused_naming_the_choice(
    saved: Path, space: SearchSpace, which: str
) -> None:
    with pytest.raises(PredictorError) as err:
        CostPredictor.load(saved).check_fits(space, str(saved))
    message = str(err.value)
    assert message.startswith(f"{saved} was fitted on space 'multi30k' ({space_hash(SPACE)})")
    assert f"search's space {space.name!r} ({space_hash(space)}): {which}, so its" in message
    assert "python -m automoe.predictors fit --data lat.csv" in message and "\n" not in message


def test_without_a_recorded_space_the_search_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = write_dataset(tmp_path / "plain.csv", SPACE, sidecar=False)
    predictor = CostPredictor(model="linear", cv=None).fit_csv(plain)
    assert predictor.space_ is None
    with caplog.at_level(logging.WARNING):
        predictor.check_fits(SPACE, "lat.predictor")
    [record] = caplog.records
    assert record.getMessage().startswith("lat.predictor records no search space")
    assert "fit it with --space multi30k to record it" in record.getMessage()
    argv = ["fit", "--data", str(plain), "--out", str(tmp_path / "m"), "--model", "linear"]
    assert run_cli(predictors_main, [*argv, "--cv", "2", "--space", "multi30k"]) == 0
    assert "target latency_ms, space 'multi30k', measured in fp32)" in capsys.readouterr().out
    assert CostPredictor.load(tmp_path / "m").space_ == SPACE


def test_a_predictor_that_cannot_featurise_the_space_is_refused(tmp_path: Path) -> None:
    shallow = variant(SPACE, decoder={"layers": [1, 2], "cross_layers": [1, 2]})
    table = write_dataset(tmp_path / "shallow.csv", shallow, sidecar=False)
    predictor = CostPredictor(model="linear", cv=None).fit_csv(table)
    with pytest.raises(PredictorError, match="feature slots for 4 encoder and 2 decoder layers"):
        predictor.check_fits(SPACE)
    generic = tmp_path / "generic.csv"
    generic.write_text("a,b,latency_ms\n" + "".join(f"{i},{i % 3},{i + 1}\n" for i in range(9)))
    predictor = CostPredictor(model="linear", cv=None).fit_csv(generic)
    with pytest.raises(PredictorError, match="not fitted on architecture features"):
        predictor.check_fits(SPACE)


def test_a_space_that_does_not_match_the_table_is_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match=r"measured on space 'multi30k'.*not on the given"):
        CostPredictor(model="linear", cv=None).fit_csv(dataset, space=WMT)
    plain = write_dataset(tmp_path / "plain.csv", SPACE, sidecar=False)
    with pytest.raises(PredictorError, match="feature columns are not those of space 'wmt'"):
        CostPredictor(model="linear", cv=None).fit_csv(plain, space=WMT)


def test_fit_archs_records_the_space_it_was_given() -> None:
    rng = random.Random(0)
    archs = [SPACE.sample(rng) for _ in range(20)]
    features = ArchFeatures.from_space(SPACE)
    y = synthetic_ms(features.transform(archs))
    predictor = CostPredictor(model="linear", cv=None).fit_archs(archs, y, features, SPACE)
    assert predictor.space_ == SPACE
    with pytest.raises(AutomoeError, match="space 'wmt'"):
        CostPredictor(model="linear", cv=None).fit_archs(archs, y, features, WMT)


def test_the_search_refuses_a_predictor_fitted_for_another_space(
    tmp_path: Path, tiny_run: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    wrong = tmp_path / "multi30k.predictor"
    CostPredictor(model="linear", cv=None).fit_csv(write_dataset(tmp_path / "m.csv", SPACE)).save(
        wrong
    )
    run = tmp_path / "search"
    args = [
        f"--supernet={tiny_run}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--valid-size=30",
        "--threads=1",
        "--no-progress",
        "--strategy=random",
        "--constraint=latency_ms<=1000",
        "--evaluations=2",
    ]
    with pytest.raises(PredictorError, match=r"search's space 'tiny'.*qkv_dim is 32"):
        search_main([*args, f"--predictor={wrong}"])
    assert not run.exists()
    right = tmp_path / "tiny.predictor"
    table = write_dataset(tmp_path / "t.csv", SearchSpace.load(tiny_space_file))
    CostPredictor(model="linear", cv=None).fit_csv(table).save(right)
    assert search_main([*args, f"--predictor={right}"]) == 0


# ---------------------------------------------------------------------- the latencies' format


def test_a_predictor_of_bf16_latencies_records_it_and_an_fp32_search_refuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    table = write_dataset(tmp_path / "bf16.csv", SPACE, precision="bf16")
    path = tmp_path / "bf16.predictor"
    argv = ["fit", "--data", str(table), "--out", str(path), "--model", "linear", "--cv", "2"]
    assert run_cli(predictors_main, argv) == 0
    assert "space 'multi30k', measured in bf16)" in capsys.readouterr().out
    assert json.loads(entries(path)["manifest.json"])["precision"] == "bf16"
    predictor = CostPredictor.load(path)
    assert predictor.precision_ == "bf16"
    predictor.check_fits(SPACE, str(path), precision="bf16")
    with pytest.raises(PredictorError) as err:
        predictor.check_fits(SPACE, str(path))
    message = str(err.value)
    assert message.startswith(
        f"{path} was fitted on latencies measured in bf16, but the search runs in fp32"
    )
    assert "automoe.latency dataset --precision fp32 --out lat.csv" in message
    assert "--allow-precision-mismatch" in message and "\n" not in message
    with caplog.at_level(logging.WARNING):
        predictor.check_fits(SPACE, str(path), precision="fp32", allow_other_precision=True)
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"{path} was fitted on latencies measured in bf16, but the search runs in fp32: using it"
    )


def test_predictors_and_sidecars_from_before_formats_were_recorded_read_as_fp32(
    dataset: Path, saved: Path, tmp_path: Path
) -> None:
    assert "precision" not in json.loads(dataset.with_suffix(".csv.json").read_text())
    assert CostPredictor(model="linear", cv=None).fit_csv(dataset).precision_ == "fp32"
    plain = write_dataset(tmp_path / "plain.csv", SPACE, sidecar=False)
    assert CostPredictor(model="linear", cv=None).fit_csv(plain).precision_ == "fp32"
    state = entries(saved)["model.skops"]
    old = rewrite(saved, tmp_path / "old.predictor", "model.skops", state, precision=None)
    assert "precision" not in json.loads(entries(old)["manifest.json"])
    predictor = CostPredictor.load(old)
    assert predictor.precision_ == "fp32"
    predictor.check_fits(SPACE)
    with pytest.raises(PredictorError, match="measured in fp32, but the search runs in bf16"):
        predictor.check_fits(SPACE, precision="bf16")


def test_fit_archs_and_a_refit_keep_the_format(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(0)
    archs = [SPACE.sample(rng) for _ in range(20)]
    features = ArchFeatures.from_space(SPACE)
    y = synthetic_ms(features.transform(archs))
    fitted = CostPredictor(model="linear", cv=None).fit_archs(
        archs, y, features, SPACE, precision="bf16"
    )
    assert fitted.precision_ == "bf16"
    table = write_dataset(tmp_path / "bf16.csv", SPACE, precision="bf16")
    path = tmp_path / "bf16.predictor"
    CostPredictor(model="linear", cv=None).fit_csv(table).save(path)
    old = as_format_1(path, tmp_path / "old.predictor", pickle.dumps(0))
    with caplog.at_level(logging.WARNING):
        assert CostPredictor.load(old).precision_ == "bf16"
    assert "refitted the linear model" in caplog.text


@pytest.mark.parametrize(("text", "problem"), [("{", "cannot read"), ("[]", "not a JSON object")])
def test_a_damaged_sidecar_is_refused_not_ignored(tmp_path: Path, text: str, problem: str) -> None:
    """Ignoring it would fit a predictor that records neither space nor format."""
    table = write_dataset(tmp_path / "lat.csv", SPACE)
    table.with_suffix(".csv.json").write_text(text)
    with pytest.raises(PredictorError, match=rf"{problem}.*; repair or remove it"):
        CostPredictor(model="linear", cv=None).fit_csv(table)
