"""The saved-predictor file: a zip holding `manifest.json` and the fitted model in skops format.

The manifest is plain JSON (`unzip -p MODEL manifest.json`) and says everything needed to
trust or rebuild the model: feature columns, the search space and the number format of the
latencies it was fitted on, target, chosen model and CV scores, library versions and the
training CSV with its sha256.

The model is stored with skops (`skops.io`), which writes an object's state, not code: loading
builds only the types in `TRUSTED_TYPES` and skops's own safe set (plain data, numpy arrays,
scikit-learn estimators), and a file naming any other type is refused with that type's name,
before anything is built. Format 1 files held a pickle instead, and unpickling runs whatever
code the file holds: such a model is never unpickled, only refitted from its training CSV.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pickletools
import platform
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from automoe import __version__
from automoe.files import atomic_path
from automoe.predictors.errors import PredictorError
from automoe.predictors.models import TRUSTED_TYPES

FORMAT = "automoe-cost-predictor"
FORMAT_VERSION = 2
PICKLE_FORMAT_VERSION = 1  # read only to refit: its model is a pickle
MANIFEST = "manifest.json"
MODEL = "model.skops"
PICKLED_MODEL = "model.pkl"
_MANIFEST_KEYS = ("params", "model", "cv_scores", "features", "target", "training_data", "versions")
REFIT_COMMAND = "python -m automoe.predictors fit --data LATENCY.csv --out"


class ModelUnreadable(Exception):
    """The stored model cannot be used here, but refitting it from its CSV can (the text says
    why; `remedy` is another way out, if any)."""

    def __init__(self, reason: str, remedy: str | None = None) -> None:
        super().__init__(reason)
        self.remedy = remedy


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions that decide whether a stored model loads and predicts the same."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "skops": importlib.metadata.version("skops"),
        "automoe": __version__,
    }


def write_bundle(path: Path, manifest: dict[str, Any], model: object) -> None:
    """Write atomically (a crash mid-save leaves any earlier file at `path` intact), and only
    a model that `read_model` will load."""
    import skops.io  # imports every scikit-learn estimator: only when a file is written or read

    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    state = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)
    foreign = sorted(set(skops.io.get_untrusted_types(data=state)) - set(TRUSTED_TYPES))
    if foreign:  # a file read_model would refuse is worse than none
        raise PredictorError(
            f"cannot save the predictor to {path}: its model holds {', '.join(foreign)}, which "
            f"automoe.predictors.models.TRUSTED_TYPES lacks (scikit-learn {sklearn.__version__} "
            "builds this model from other types than automoe was checked with), so it could not "
            "be loaded back; use another scikit-learn or add the type(s) to TRUSTED_TYPES"
        )
    try:
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
            bundle.writestr(MODEL, state)
    except OSError as err:
        raise PredictorError(f"cannot save the predictor to {path}: {err.strerror}") from None


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
    version = manifest.get("format_version")
    if version not in (PICKLE_FORMAT_VERSION, FORMAT_VERSION):
        raise PredictorError(
            f"{path} has predictor format version {version!r}; this automoe reads version "
            f"{FORMAT_VERSION}: refit it with this version"
        )
    keys = _MANIFEST_KEYS if version == PICKLE_FORMAT_VERSION else (*_MANIFEST_KEYS, "space")
    missing = [key for key in keys if key not in manifest]
    if missing:
        raise PredictorError(
            f"{path}: {MANIFEST} lacks {missing}; fit and save the predictor again"
        )
    manifest.setdefault("space", None)  # format 1 recorded none
    manifest.setdefault("precision", "fp32")  # latencies were all fp32 before it was recorded
    return manifest


def read_model(path: Path, saved_sklearn: str) -> object:
    """The stored model, built from trusted types only.

    `ModelUnreadable` when it cannot be used here (a pickle, another scikit-learn version,
    damage), so a refit may replace it; `PredictorError` when it names an untrusted type,
    which no refit should paper over.
    """
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        if MODEL not in names:
            if PICKLED_MODEL in names:
                raise ModelUnreadable(_pickle_reason(bundle.read(PICKLED_MODEL)))
            raise ModelUnreadable(f"it holds no {MODEL}")
        state = bundle.read(MODEL)
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        with warnings.catch_warnings():
            # scikit-learn does not promise that a model of another version predicts the same
            warnings.simplefilter("error", InconsistentVersionWarning)
            return skops.io.loads(state, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as err:
        untrusted = sorted(set(skops.io.get_untrusted_types(data=state)) - set(TRUSTED_TYPES))
        raise PredictorError(
            f"refusing to load the model in {path}: it holds the untrusted type(s) "
            f"{', '.join(untrusted) or err}, which no automoe cost predictor is made of, so "
            f"the file was altered or written by something else; fit a new one with "
            f"`{REFIT_COMMAND} {path}`"
        ) from None
    except InconsistentVersionWarning:
        raise ModelUnreadable(
            f"it was saved with scikit-learn {saved_sklearn}, this is {sklearn.__version__}",
            f"install scikit-learn=={saved_sklearn}",
        ) from None
    except Exception as err:  # a damaged or foreign state can fail with any exception type
        raise ModelUnreadable(f"{type(err).__name__}: {err}") from None


def _pickle_reason(data: bytes) -> str:
    foreign = [n for n in _pickle_imports(data) if not n.startswith(("sklearn.", "numpy."))]
    would = f"; this one would import {', '.join(foreign)}" if foreign else ""
    return (
        f"its model is a pickle, which automoe no longer opens because unpickling runs "
        f"whatever code the file holds{would}"
    )


_NO_PUSH = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}


def _pickle_imports(data: bytes) -> list[str]:
    """What a pickle would import, read opcode by opcode without running any of it.

    A STACK_GLOBAL is named when the two values before it are literal strings (the usual
    case); one built from the memo is left out rather than guessed.
    """
    found: list[str] = []
    recent: list[object] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and [type(v) for v in recent] == [str, str]:
                found.append(".".join(map(str, recent)))
            if opcode.name not in _NO_PUSH:
                recent = [*recent, arg if isinstance(arg, str) else None][-2:]
    except Exception:  # a damaged pickle: what was read before the damage still counts
        pass
    return sorted(set(found))
