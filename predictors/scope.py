"""Which architectures a cost predictor answers for: the search space it was fitted on.

A latency predictor fitted on one space extrapolates on another (other widths, depths, Q/K/V
width) with no sign that it does, and a constraint decided by those numbers is wrong. So a
predictor records the space of its training architectures, and a search refuses a predictor
that was not fitted on every architecture the search may ask about:

- fitted on a latency dataset (`python -m automoe.latency dataset`), the space is read from
  the dataset's sidecar; on another CSV of architecture features, `--space` (`space=`) gives
  it; its feature columns must be that space's (`ArchFeatures.from_space`);
- a search over space S accepts a predictor fitted on space F when every architecture of S is
  one of F: the same Q/K/V width and each choice list of S within F's, so a sub-space is
  fine. Otherwise it is refused, naming the first choice that differs;
- a predictor that records no space (fitted on a CSV without a sidecar or `--space`) cannot
  be checked: the search warns once and uses it, because tables measured elsewhere are
  supported; one without architecture features, or with fewer layer slots than S needs,
  cannot predict S's architectures at all and is refused.

Latencies also belong to the number format they were measured in: bf16 is faster than fp32
by a factor that depends on the architecture and the machine, so a predictor records the
format of its training table (`recorded_precision`) and a search in another format refuses it,
unless told to use it anyway (then it warns once).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from automoe.predictors.data import (
    column_difference,
    precision_option,
    read_sidecar,
    sidecar_path,
)
from automoe.predictors.errors import PredictorError
from automoe.predictors.features import ArchFeatures
from automoe.space import SearchSpace

log = logging.getLogger(__name__)


def space_hash(space: SearchSpace) -> str:
    """Fingerprint of a space's choices (its name aside): equal means the same architectures."""
    choices = {k: v for k, v in space.to_dict().items() if k != "name"}
    return hashlib.sha256(json.dumps(choices, sort_keys=True).encode()).hexdigest()[:16]


def space_record(space: SearchSpace) -> dict[str, Any]:
    """What a saved predictor's manifest says about its space."""
    return {"name": space.name, "hash": space_hash(space), "definition": space.to_dict()}


def recorded_space(record: dict[str, Any] | None, source: str) -> SearchSpace | None:
    return None if record is None else SearchSpace.from_dict(record["definition"], source)


def table_space(csv: Path, columns: list[str], given: SearchSpace | None) -> SearchSpace | None:
    """The space a cost table was measured on: its sidecar's, else `given`, else None.

    Refused: a `given` space other than the sidecar's, or one whose feature columns are not
    the table's.
    """
    space = given
    meta = read_sidecar(csv)
    if meta.get("space") is not None:
        sidecar = sidecar_path(csv)
        measured = SearchSpace.from_dict(meta["space"], f"{sidecar} (space)")
        if given is not None and given != measured:
            raise PredictorError(
                f"{csv} was measured on space {measured.name!r} ({space_hash(measured)}, "
                f"recorded in {sidecar}), not on the given space {given.name!r} "
                f"({space_hash(given)}); leave out --space or fit on a dataset of that space"
            )
        space = measured
    if space is not None:
        difference = column_difference(columns, ArchFeatures.from_space(space).columns)
        if difference:
            raise PredictorError(
                f"{csv}: its feature columns are not those of space {space.name!r} "
                f"({difference}); give the space its architectures were drawn from"
            )
    return space


def check_serves(
    fitted: SearchSpace | None, features: ArchFeatures | None, space: SearchSpace, name: str
) -> None:
    """Refuse `name` (a predictor fitted on `fitted` with `features`) for a search over `space`
    unless it was fitted on all of `space`'s architectures; warn once when it cannot tell."""
    if fitted is not None:
        difference = _uncovered(fitted, space)
        if difference:
            raise PredictorError(
                f"{name} was fitted on space {fitted.name!r} ({space_hash(fitted)}), which "
                f"does not hold every architecture of the search's space {space.name!r} "
                f"({space_hash(space)}): {difference}, so its latencies there would be guesses; "
                f"{_refit_hint(space)}"
            )
        return
    if features is None:
        raise PredictorError(
            f"{name} was not fitted on architecture features, so it cannot predict the "
            f"latency of architectures of space {space.name!r}: "
            f"{_refit_hint(space)}"
        )
    needed = ArchFeatures.from_space(space)
    if (
        features.max_encoder_layers < needed.max_encoder_layers
        or features.max_decoder_layers < needed.max_decoder_layers
    ):
        raise PredictorError(
            f"{name} has feature slots for {features.max_encoder_layers} encoder and "
            f"{features.max_decoder_layers} decoder layers (schema {features.schema}), but "
            f"space {space.name!r} has up to {needed.max_encoder_layers} and "
            f"{needed.max_decoder_layers} (schema {needed.schema}): "
            f"{_refit_hint(space)}"
        )
    log.warning(
        "%s records no search space (fitted on a CSV without a latency-dataset sidecar or "
        "--space), so nothing checks that it was fitted on space %r; fit it with --space %s to "
        "record it",
        name,
        space.name,
        _space_option(space),
    )


def check_precision(fitted: str, wanted: str, name: str, allow_other: bool) -> None:
    """Refuse `name`, fitted on latencies measured in `fitted`, for a search in `wanted`;
    with `allow_other`, warn once instead."""
    if fitted == wanted:
        return
    if allow_other:
        log.warning(
            "%s was fitted on latencies measured in %s, but the search runs in %s: using it "
            "anyway (--allow-precision-mismatch), so its latencies may be off by the speed "
            "difference of the two formats",
            name,
            fitted,
            wanted,
        )
        return
    raise PredictorError(
        f"{name} was fitted on latencies measured in {fitted}, but the search runs in "
        f"{wanted}, and latencies of one number format do not predict another's: measure a "
        f"dataset with `python -m automoe.latency dataset --precision {precision_option(wanted)} "
        "--out lat.csv` on the search's device and refit (`python -m automoe.predictors fit "
        "--data lat.csv --out PREDICTOR`), or pass --allow-precision-mismatch to use it anyway"
    )


def _uncovered(fitted: SearchSpace, space: SearchSpace) -> str | None:
    """The first choice of `space` that `fitted` lacks, in words; None if it lacks none."""
    if space.qkv_dim != fitted.qkv_dim:
        return f"qkv_dim is {space.qkv_dim}, the predictor's {fitted.qkv_dim}"
    for flag in ("fractional_experts", "identity_experts"):
        if getattr(space, flag) and not getattr(fitted, flag):
            return f"{flag} is true, the predictor's false"
    for side in ("encoder", "decoder"):
        ours = {**getattr(space, side), "routing": space.routing[side]}
        theirs = {**getattr(fitted, side), "routing": fitted.routing[side]}
        for key, values in ours.items():
            if not set(values) <= set(theirs[key]):
                return f"{side}.{key} is {list(values)}, the predictor's {list(theirs[key])}"
    return None


def _space_option(space: SearchSpace) -> str:
    """How `--space` names `space`: the preset's name when it is one, else its YAML file."""
    preset = space.name in SearchSpace.presets() and SearchSpace.load(space.name) == space
    return space.name if preset else "SPACE.yaml"


def _refit_hint(space: SearchSpace) -> str:
    return (
        f"fit one on latencies of its architectures: `python -m automoe.latency dataset "
        f"--space {_space_option(space)} --out lat.csv`, then `python -m automoe.predictors "
        f"fit --data lat.csv --out PREDICTOR`"
    )
