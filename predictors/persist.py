"""The saved-predictor file: a zip holding `manifest.json` and the pickled fitted model.

The manifest is plain JSON (`unzip -p MODEL manifest.json`) and says everything needed to
trust or rebuild the model: feature columns, target, chosen model and CV scores, library
versions and the training CSV with its sha256. The pickle is only a cache of the fitted
regressor: pickles do not survive every library upgrade, and then the manifest is enough to
refit. Unpickling runs code from the file, so load only predictors you trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from automoe import __version__
from automoe.predictors.errors import PredictorError

FORMAT = "automoe-cost-predictor"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL = "model.pkl"
_MANIFEST_KEYS = ("params", "model", "cv_scores", "features", "target", "training_data", "versions")


class ModelUnreadable(Exception):
    """The pickled model cannot be used with the installed libraries (the reason is the text)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions that decide whether a pickled model loads and predicts the same."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "automoe": __version__,
    }


def write_bundle(path: Path, manifest: dict[str, Any], model: object) -> None:
    """Write atomically: a crash mid-save leaves any earlier file at `path` intact."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
            bundle.writestr(MODEL, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError as err:
        raise PredictorError(f"cannot save the predictor to {path}: {err.strerror}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a saved predictor; a clear error for anything that is not one."""
    try:
        with zipfile.ZipFile(path) as bundle:
            manifest = json.loads(bundle.read(MANIFEST))
    except FileNotFoundError:
        raise PredictorError(f"no saved predictor at {path}") from None
    except OSError as err:
        raise PredictorError(f"cannot read {path}: {err.strerror}") from None
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise PredictorError(
            f"{path} is not a saved cost predictor (expected a zip with {MANIFEST}); "
            "create one with `python -m automoe.predictors fit`"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PredictorError(
            f"{path} is not a saved cost predictor ({MANIFEST} has another format)"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PredictorError(
            f"{path} has predictor format version {manifest.get('format_version')!r}; this "
            f"automoe reads version {FORMAT_VERSION}: refit it with this version"
        )
    missing = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing:
        raise PredictorError(
            f"{path}: {MANIFEST} lacks {missing}; fit and save the predictor again"
        )
    return manifest


def read_model(path: Path) -> object:
    """The unpickled model; `ModelUnreadable` if the installed libraries cannot restore it.

    A pickle from another scikit-learn version counts as unreadable even if it loads:
    scikit-learn does not promise such a model predicts the same.
    """
    try:
        with zipfile.ZipFile(path) as bundle:
            data = bundle.read(MODEL)
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            return pickle.loads(data)
    except Exception as err:  # unpickling can fail with any exception type
        raise ModelUnreadable(f"{type(err).__name__}: {err}") from None
