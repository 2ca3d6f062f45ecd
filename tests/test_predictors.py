"""CostPredictor, its models, save/load with refit, and the command line, on synthetic latency.

The synthetic latency is a known nonlinear function of the architecture plus 1% noise,
written to CSVs shaped like `python -m automoe.latency dataset` output.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import shutil
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone, is_regressor
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from automoe.errors import run_cli
from automoe.predictors import MODELS, ArchFeatures, CostPredictor, ModelSpec, PredictorError
from automoe.predictors.__main__ import main
from automoe.space import ArchConfig, SearchSpace

SPACE = SearchSpace.load("multi30k")
FEATURES = ArchFeatures.from_space(SPACE)
TRAIN, TEST = 180, 60
MEASURED = ["arch_key", "arch", "latency_ms", "encoder_ms", "decoder_ms", "median_ms", "iqr_ms"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """BLAS/OpenMP spin-waits crawl on a busy 2-core machine; one thread keeps tests fast."""
    with threadpool_limits(1):
        yield


def synthetic_ms(arch: ArchConfig, rng: random.Random) -> tuple[float, float]:
    """(encoder, decoder) milliseconds: FFN and attention terms, decoder cost grows with depth."""
    encoder = 0.5 + sum(
        3e-6 * arch.encoder_embed_dim * sum(w) / len(w) * k + 0.02 * h
        for w, k, h in zip(
            arch.encoder_ffn_dims, arch.encoder_top_k, arch.encoder_heads, strict=True
        )
    )
    decoder = (1 + 0.1 * arch.decoder_layers) * sum(
        1.5e-5 * arch.decoder_embed_dim * max(w) * k + 0.04 * h * n
        for w, k, h, n in zip(
            arch.decoder_ffn_dims,
            arch.decoder_top_k,
            arch.decoder_cross_heads,
            arch.decoder_cross_layers,
            strict=True,
        )
    )
    noise = 1 + 0.01 * rng.gauss(0, 1)
    return encoder * noise, decoder * noise


def write_latency_csv(path: Path, archs: list[ArchConfig], ms: list[tuple[float, float]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FEATURES.columns, *MEASURED, "runs", "weights"])
        for arch, row, (enc, dec) in zip(archs, FEATURES.transform(archs), ms, strict=True):
            total = enc + dec
            measured = [arch.key(), arch.to_json(), total, enc, dec, total, 0.02 * total]
            writer.writerow([*row.tolist(), *measured, 20, "random"])
    return path


class Data:
    """Synthetic architectures and latencies, split into train and test, also as CSVs."""

    def __init__(self, folder: Path) -> None:
        rng = random.Random(0)
        self.archs = [SPACE.sample(rng) for _ in range(TRAIN + TEST)]
        ms = [synthetic_ms(arch, rng) for arch in self.archs]
        self.y = np.array([enc + dec for enc, dec in ms])
        self.train_archs, self.test_archs = self.archs[:TRAIN], self.archs[TRAIN:]
        self.y_train, self.y_test = self.y[:TRAIN], self.y[TRAIN:]
        self.X_train = FEATURES.transform(self.train_archs)
        self.train_csv = write_latency_csv(folder / "train.csv", self.train_archs, ms[:TRAIN])
        self.test_csv = write_latency_csv(folder / "test.csv", self.test_archs, ms[TRAIN:])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return Data(tmp_path_factory.mktemp("latency"))


@pytest.fixture(scope="module")
def saved(data: Data, tmp_path_factory: pytest.TempPathFactory) -> tuple[CostPredictor, Path]:
    """A gbm predictor fitted (with 3-fold CV scores) on the training CSV, and its file."""
    predictor = CostPredictor(model="gbm", cv=3).fit_csv(data.train_csv)
    path = tmp_path_factory.mktemp("model") / "latency.model"
    predictor.save(path)
    return predictor, path


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured) * 100)


# ---------------------------------------------------------------------- models and API


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_fits_and_predicts_accurately(data: Data, name: str) -> None:
    predictor = CostPredictor(model=name, cv=None)
    assert predictor.fit_archs(data.train_archs, data.y_train, FEATURES) is predictor
    assert predictor.model_ == name and predictor.cv_results_ is None
    assert mape(predictor.predict_archs(data.test_archs), data.y_test) < 8


def test_auto_picks_the_lowest_cv_mape_deterministically(data: Data) -> None:
    X, y = data.X_train[:120], data.y_train[:120]
    first = CostPredictor(cv=3).fit(X, y)
    second = clone(first).fit(X, y)
    table = first.cv_results_
    assert list(table) == list(MODELS)
    assert first.model_ == min(table, key=lambda name: table[name]["mape_pct"])
    assert second.model_ == first.model_ and second.cv_results_ == table
    assert np.array_equal(first.predict(X), second.predict(X))


def test_follows_scikit_learn_estimator_rules(data: Data) -> None:
    predictor = CostPredictor(model="nope")  # the constructor only stores parameters
    assert predictor.get_params() == {
        "model": "nope",
        "target": "latency_ms",
        "cv": 5,
        "random_state": 0,
    }
    assert predictor.set_params(model="linear", cv=None) is predictor
    copy = clone(predictor)
    assert copy.get_params() == predictor.get_params() and copy is not predictor
    with pytest.raises(NotFittedError):
        copy.predict(data.X_train)
    assert is_regressor(copy)
    scores = cross_val_score(copy, data.X_train, data.y_train, cv=3)
    assert scores.min() > 0.9  # R2 through RegressorMixin.score
    fitted = copy.fit(data.X_train, data.y_train)
    assert fitted is copy and fitted.n_features_in_ == len(FEATURES.columns)
    assert not hasattr(fitted, "feature_names_in_")  # a plain array has no names


def test_dataframe_columns_are_matched_by_name(data: Data) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(data.X_train, columns=FEATURES.columns)
    predictor = CostPredictor(model="linear", cv=None).fit(frame, data.y_train)
    assert list(predictor.feature_names_in_) == FEATURES.columns
    assert predictor.features_ == FEATURES  # recognised: predict_archs works
    expected = predictor.predict(frame)
    assert np.allclose(predictor.predict(frame[FEATURES.columns[::-1]]), expected)
    assert np.allclose(predictor.predict_archs(data.train_archs), expected)
    with pytest.raises(PredictorError, match=r"missing column\(s\) enc_embed$"):
        predictor.predict(frame.drop(columns=["enc_embed"]))
    with pytest.raises(PredictorError, match=r"extra column\(s\) speed$"):
        predictor.predict(frame.assign(speed=1.0))


@pytest.mark.parametrize(
    ("params", "rows", "change", "message"),
    [
        (
            {"model": "nope"},
            10,
            None,
            "unknown model 'nope'; choose from linear, gbm, forest, extra_trees, mlp or 'auto'",
        ),
        ({"cv": None}, 10, None, "model='auto' chooses by cross-validation: cv cannot be None"),
        ({"model": "linear"}, 3, None, "the training data has 3 row.*fewer than the 5"),
        ({"model": "linear", "cv": 2}, 10, "zero", "the latency_ms target is 0 in row 1"),
        (
            {"model": "linear"},
            10,
            "nan",
            r"X has a missing or infinite value \(NaN or inf\) in row 0, column 2",
        ),
        ({"model": "linear"}, 10, "short_y", r"inconsistent numbers of samples: \[10, 9\]"),
    ],
)
def test_fit_errors_are_clear(
    data: Data, params: dict, rows: int, change: str | None, message: str
) -> None:
    X, y = data.X_train[:rows].copy(), data.y_train[:rows].copy()
    if change == "zero":
        y[1] = 0
    elif change == "nan":
        X[0, 2] = np.nan
    elif change == "short_y":
        y = y[:-1]
    with pytest.raises(PredictorError, match=message):
        CostPredictor(**params).fit(X, y)


def test_predict_errors_are_clear(data: Data) -> None:
    predictor = CostPredictor(model="linear", cv=None).fit(data.X_train, data.y_train)
    with pytest.raises(
        PredictorError, match="X has 3 features, but CostPredictor is expecting 92 features"
    ):
        predictor.predict(data.X_train[:, :3])
    with pytest.raises(PredictorError, match="not fitted on architecture features"):
        predictor.predict_archs(data.test_archs)


# ---------------------------------------------------------------------- save and load


def test_save_load_round_trip_gives_identical_predictions(
    data: Data, saved: tuple[CostPredictor, Path]
) -> None:
    original, path = saved
    loaded = CostPredictor.load(path, expected_columns=FEATURES.columns)
    assert loaded.get_params() == original.get_params()
    assert loaded.model_ == "gbm" and loaded.cv_results_ == original.cv_results_
    assert list(loaded.feature_names_in_) == FEATURES.columns
    assert np.array_equal(
        loaded.predict_archs(data.test_archs), original.predict_archs(data.test_archs)
    )
    assert np.array_equal(loaded.predict_csv(data.test_csv), original.predict_csv(data.test_csv))


def test_manifest_records_schema_versions_data_and_choice(
    data: Data, saved: tuple[CostPredictor, Path]
) -> None:
    with zipfile.ZipFile(saved[1]) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    assert manifest["features"]["columns"] == FEATURES.columns
    assert manifest["features"]["arch_features"]["schema"] == FEATURES.schema
    assert manifest["target"] == "latency_ms"
    assert set(manifest["versions"]) == {"python", "numpy", "sklearn", "skops", "automoe"}
    assert manifest["space"] is None  # the CSV has no sidecar and no space was given
    assert manifest["training_data"] == {
        "path": str(data.train_csv.resolve()),
        "sha256": hashlib.sha256(data.train_csv.read_bytes()).hexdigest(),
        "rows": TRAIN,
        "drop": [],
    }
    assert manifest["model"] == "gbm"
    assert set(manifest["cv_scores"]["gbm"]) == {"mape_pct", "mape_pct_std", "rmse", "rmse_std"}


def test_schema_mismatch_names_the_difference(saved: tuple[CostPredictor, Path]) -> None:
    path = saved[1]
    with pytest.raises(PredictorError, match="fitted on other features than expected") as err:
        CostPredictor.load(path, expected_columns=ArchFeatures(4, 3).columns)
    assert "extra column(s) dec3_self_heads, dec3_cross_heads" in str(err.value)
    with pytest.raises(PredictorError, match=r"missing column\(s\) enc4_heads"):
        CostPredictor.load(path, expected_columns=ArchFeatures(6, 4).columns)


def replace_model(source: Path, target: Path, payload: bytes) -> Path:
    """A copy of a saved predictor whose stored model is `payload`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        new.writestr("manifest.json", old.read("manifest.json"))
        new.writestr("model.skops", payload)
    return target


def test_unreadable_model_is_refitted_from_the_recorded_csv(
    data: Data, saved: tuple[CostPredictor, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original, path = saved
    broken = replace_model(path, tmp_path / "broken.model", b"not a skops file")
    with caplog.at_level(logging.WARNING):
        loaded = CostPredictor.load(broken, expected_columns=FEATURES.columns)
    assert "refitted the gbm model from" in caplog.text and "BadZipFile" in caplog.text
    assert loaded.cv_results_ == original.cv_results_
    assert np.array_equal(
        loaded.predict_archs(data.test_archs), original.predict_archs(data.test_archs)
    )


def test_refit_needs_the_unchanged_training_csv(data: Data, tmp_path: Path) -> None:
    train = Path(shutil.copy(data.train_csv, tmp_path / "train.csv"))
    predictor = CostPredictor(model="linear", cv=None).fit_csv(train)
    predictor.save(tmp_path / "ok.model")
    broken = replace_model(tmp_path / "ok.model", tmp_path / "broken.model", b"")
    moved = train.rename(tmp_path / "moved.csv")
    with pytest.raises(PredictorError) as err:
        CostPredictor.load(broken)
    assert f"its training data {train} is not there to refit from: restore it" in str(err.value)
    assert "cannot load the model in" in str(err.value) and "\n" not in str(err.value)
    loaded = CostPredictor.load(broken, data=moved)  # the new location of the same file
    assert np.array_equal(loaded.predict(data.X_train), predictor.predict(data.X_train))
    with moved.open("a") as f:
        f.write(moved.read_text().splitlines()[1] + "\n")
    with pytest.raises(PredictorError, match="has changed since \\(sha256 differs\\)"):
        CostPredictor.load(broken, data=moved)


def test_refit_impossible_without_a_recorded_csv(data: Data, tmp_path: Path) -> None:
    CostPredictor(model="linear", cv=None).fit(data.X_train, data.y_train).save(tmp_path / "m")
    broken = replace_model(tmp_path / "m", tmp_path / "broken", b"")
    with pytest.raises(PredictorError, match="records no training CSV to refit from"):
        CostPredictor.load(broken)
    with pytest.raises(PredictorError, match="fitted without feature names"):
        CostPredictor.load(tmp_path / "m", expected_columns=FEATURES.columns)


def test_load_refuses_files_that_are_not_predictors(tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="no saved predictor at"):
        CostPredictor.load(tmp_path / "missing.model")
    (tmp_path / "text.model").write_text("hello")
    with pytest.raises(PredictorError, match="is not a saved cost predictor"):
        CostPredictor.load(tmp_path / "text.model")
    with zipfile.ZipFile(tmp_path / "future.model", "w") as bundle:
        bundle.writestr(
            "manifest.json", '{"format": "automoe-cost-predictor", "format_version": 9}'
        )
    with pytest.raises(PredictorError, match="format version 9; this automoe reads version 2"):
        CostPredictor.load(tmp_path / "future.model")


# ---------------------------------------------------------------------- command line


def test_cli_fit_then_predict_keeps_rows_order_and_target_name(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, out = tmp_path / "lat.model", tmp_path / "pred" / "pred.csv"
    argv = ["fit", "--data", str(data.train_csv), "--target", "latency_ms", "--out", str(model)]
    assert run_cli(main, [*argv, "--cv", "3", "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    chosen = CostPredictor.load(model).model_
    assert f"model: {chosen} (chosen by 3-fold CV MAPE)" in printed
    assert all(f"| {name} |" in printed for name in MODELS)
    argv = ["predict", "--model", str(model), "--data", str(data.test_csv), "--out", str(out)]
    assert run_cli(main, argv) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["latency_ms"] and len(rows) == TEST + 1
    predicted = np.array([float(row[0]) for row in rows[1:]])
    expected = CostPredictor.load(model).predict_archs(data.test_archs)
    assert np.allclose(predicted, expected, rtol=1e-12, atol=0)  # same up to float rounding
    assert mape(predicted, data.y_test) < 8  # row i is the prediction for test row i


def test_cli_benchmark_writes_json_markdown_and_plots(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "--data", str(data.test_csv), "--folds", "3", "--seed", "1"]
    assert run_cli(main, [*argv, "--models", "linear,extra_trees", "--out", str(out)]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert list(report["models"]) == ["linear", "extra_trees"]
    assert report["best"] in report["models"] and report["folds"] == 3
    for scores in report["models"].values():
        for metric in ("rmse", "mape_pct", "kendall_tau", "r2", "fit_s", "predict_ms_per_1000"):
            assert scores[metric] is not None and scores[f"{metric}_std"] is not None
        assert len(scores["learning_curve"]["train_sizes"]) == 5
    header = "| model | RMSE | MAPE (%) | Kendall tau | R2 | fit (s) | predict (ms / 1,000 rows) |"
    assert header in (out / "benchmark.md").read_text()
    assert header in capsys.readouterr().out
    for png in ("predicted_vs_measured.png", "learning_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_drop_columns_carry_over_to_predict(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3},n{i},{2 * i + 1}\n" for i in range(12))
    train = tmp_path / "t.csv"
    train.write_text("a,b,note,cost\n" + rows)
    model = tmp_path / "m"
    argv = ["fit", "--data", str(train), "--target", "cost", "--out", str(model)]
    assert run_cli(main, [*argv, "--model", "linear", "--cv", "2", "--drop", "note"]) == 0
    (tmp_path / "new.csv").write_text("b,note,a\n0,x,100\n")
    argv = ["predict", "--model", str(model), "--data", str(tmp_path / "new.csv")]
    assert run_cli(main, [*argv, "--out", str(tmp_path / "p.csv")]) == 0
    rows_out = (tmp_path / "p.csv").read_text().splitlines()
    assert rows_out[0] == "cost" and float(rows_out[1]) == pytest.approx(201, rel=0.01)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--target", "lat"], "no target column 'lat'; the columns are ['a', 'b', 'cost']"),
        (["fit", "--model", "nope"], "unknown model 'nope'"),
        (["fit", "--cv", "5", "--rows", "3"], "has 3 row(s), fewer than the 5 cross-validation"),
        (["predict", "--other", "a,c,cost"], "missing column(s) b; extra column(s) c"),
        (["predict", "--model", "missing.model"], "no saved predictor at missing.model"),
        (["benchmark", "--models", "linear,foo"], "unknown model(s) 'foo'"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    command, options = argv[0], dict(zip(argv[1::2], argv[2::2], strict=True))
    rows = int(options.pop("--rows", 8))
    table = tmp_path / "t.csv"
    table.write_text("a,b,cost\n" + "".join(f"{i},{i % 3},{i + 1}\n" for i in range(rows)))
    if command == "predict":
        model = tmp_path / "m"
        fit = ["fit", "--data", str(table), "--target", "cost", "--out", str(model), "--cv", "2"]
        assert run_cli(main, [*fit, "--model", "linear"]) == 0
        other = tmp_path / "other.csv"
        other.write_text(options.pop("--other", "a,b,cost") + "\n1,2,3\n")
        base = ["--model", str(model), "--data", str(other), "--out", str(tmp_path / "p.csv")]
    elif command == "fit":
        base = ["--data", str(table), "--target", "cost", "--out", str(tmp_path / "m")]
    else:
        base = ["--data", str(table), "--target", "cost", "--folds", "2"]
    capsys.readouterr()
    extra = [item for pair in options.items() for item in pair]
    assert run_cli(main, [command, *base, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_module_entry_point_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "automoe.predictors", "fit", "--data", "nope.csv", "--out", "m"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "error: cannot read nope.csv: No such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--cv", "0"], "argument --cv: 0 must be a whole number above 0"),
        (["fit", "--seed", "-1"], "argument --seed: -1 must be a whole number of 0 or more"),
        (["benchmark", "--folds", "2.5"], "argument --folds: '2.5' is not a int"),
        (["benchmark", "--seed", "-3"], "argument --seed: -3 must be a whole number of 0 or more"),
    ],
)
def test_cli_numbers_are_checked_when_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = ["--data", str(tmp_path / "t.csv")]
    if argv[0] == "fit":
        base += ["--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit) as exit_info:
        main([argv[0], *base, *argv[1:]])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)


def test_cli_fit_reports_unconverged_fits_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """scikit-learn warns in seven lines per fit that stops at its iteration limit (every CV
    fold, then the final fit); the user sees one line, logged, and no warning escapes."""

    def hasty_mlp(seed: int) -> MLPRegressor:
        return MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3, random_state=seed)

    monkeypatch.setitem(MODELS, "mlp", ModelSpec(hasty_mlp, "stops after 3 iterations"))
    table = tmp_path / "t.csv"
    table.write_text("a,b,cost\n" + "".join(f"{i},{i % 3},{i + 1}\n" for i in range(12)))
    fit = ["fit", "--data", str(table), "--target", "cost", "--out", str(tmp_path / "m")]
    bench = ["benchmark", "--data", str(table), "--target", "cost", "--out", str(tmp_path / "b")]
    with warnings.catch_warnings(record=True) as leaked, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert run_cli(main, [*fit, "--model", "mlp", "--cv", "3"]) == 0
        assert run_cli(main, [*bench, "--models", "mlp", "--folds", "3"]) == 0
    assert [str(w.message) for w in leaked if w.category is ConvergenceWarning] == []
    ours = [r.getMessage() for r in caplog.records if r.name == "automoe.predictors.models"]
    fitted, benchmarked = ours
    assert fitted.startswith("4 model fit(s) stopped at their iteration limit before converging")
    assert "(scikit-learn: lbfgs failed to converge after 3 iteration(s) (status=1));" in fitted
    assert "model fit(s) stopped at their iteration limit" in benchmarked
    assert "\n" not in fitted + benchmarked


@parametrize_with_checks([CostPredictor(model="linear", cv=None)])
def test_passes_scikit_learn_estimator_checks(estimator: CostPredictor, check: Any) -> None:
    """Without CV (which refuses zero costs, as MAPE needs), every sklearn check applies."""
    check(estimator)
