"""Reading cost tables: a CSV of numeric feature columns plus a target column.

Any CSV works, not only `python -m automoe.latency dataset` output, so a latency table
measured elsewhere can train a predictor. Which columns are features:

    every column, except
      - the target column (e.g. `latency_ms`);
      - columns named in `drop` (`--drop`);
      - known non-feature columns: `arch`, `arch_key`, `weights`, `runs`
        (`NON_FEATURE_COLUMNS`), and any column whose name ends in `_ms` or `_std`
        (`NON_FEATURE_SUFFIXES`: other measurements and their spread, e.g. `encoder_ms`,
        `median_ms`, `iqr_ms`, `latency_std`).

Every feature cell (and every target cell, when the target is read) must be a finite number;
a text column that is not a feature must be dropped by name, so that a feature column
spoilt by one bad cell is reported rather than silently left out.

A table may come with a JSON sidecar (`sidecar_path`: `lat.csv.json` beside `lat.csv`) saying
how it was made; `python -m automoe.latency dataset` writes one holding the search space the
architectures were drawn from and the number format (fp32, bf16) the latencies were measured
in, both of which a predictor fitted on the table records. A table without a sidecar, or a
sidecar from before latencies recorded a format, was measured in fp32.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automoe.predictors.errors import PredictorError

NON_FEATURE_COLUMNS: tuple[str, ...] = ("arch", "arch_key", "weights", "runs")
NON_FEATURE_SUFFIXES: tuple[str, ...] = ("_ms", "_std")


@dataclass(frozen=True)
class Table:
    """The feature matrix (and target, when read) of one CSV, rows in file order."""

    path: Path
    columns: list[str]
    X: np.ndarray
    y: np.ndarray | None
    target: str


def sidecar_path(csv_path: Path) -> Path:
    """Where a cost table keeps how it was measured (`lat.csv` -> `lat.csv.json`)."""
    return csv_path.with_suffix(csv_path.suffix + ".json")


def read_sidecar(csv_path: Path) -> dict[str, Any]:
    """The sidecar of a cost table (empty when it has none); an unreadable one is refused."""
    sidecar = sidecar_path(csv_path)
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise PredictorError(
            f"cannot read {sidecar}, the sidecar of {csv_path}: {err}; repair or remove it"
        ) from None
    if not isinstance(meta, dict):
        raise PredictorError(
            f"{sidecar}, the sidecar of {csv_path}, is not a JSON object; repair or remove it"
        )
    return meta


def recorded_precision(meta: Mapping[str, Any]) -> str:
    """The format a table's latencies were measured in, from its sidecar: the resolved name of
    its `precision` record (`automoe.precision.Precision.record`), fp32 when it has none."""
    return (meta.get("precision") or {}).get("precision", "fp32")


def precision_option(name: str) -> str:
    """The `--precision` choice that measures in format `name` (fp16 is what bf16 resolves to
    on a GPU without bf16)."""
    return "bf16" if name == "fp16" else name


def is_feature(name: str, target: str, drop: Sequence[str]) -> bool:
    """Whether column `name` is a feature under the rule in this module's docstring."""
    return not (
        name == target
        or name in drop
        or name in NON_FEATURE_COLUMNS
        or name.endswith(NON_FEATURE_SUFFIXES)
    )


def read_table(
    path: str | Path,
    target: str,
    drop: Sequence[str] = (),
    *,
    need_target: bool = True,
    also_drop: Sequence[str] = (),
) -> Table:
    """Features (and the target if `need_target`) of CSV `path`; errors name column and line.

    Every `drop` column must exist (a typo is an error); `also_drop` columns are left out
    where present (e.g. the columns a predictor's training data dropped).
    """
    path = Path(path)
    header, rows, lines = _read_rows(path)
    unknown = [name for name in drop if name not in header]
    if unknown:
        raise PredictorError(
            f"{path}: cannot drop column(s) {unknown}: not in the file (columns: {header})"
        )
    if need_target and target not in header:
        raise PredictorError(f"{path}: no target column {target!r}; the columns are {header}")
    excluded = [*drop, *also_drop]
    columns = [name for name in header if is_feature(name, target, excluded)]
    if not columns:
        raise PredictorError(f"{path}: no feature columns left (columns: {header}); see --drop")
    X = _numbers(path, header, rows, lines, columns, hint=True)
    y = _numbers(path, header, rows, lines, [target], hint=False)[:, 0] if need_target else None
    return Table(path, columns, X, y, target)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, non-blank rows and each row's line number; ragged rows are refused."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except OSError as err:
        raise PredictorError(f"cannot read {path}: {err.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise PredictorError(f"{path} is not a readable CSV file: {err}") from None
    if not header:
        raise PredictorError(f"{path} is empty: expected a header row of column names")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise PredictorError(f"{path}: column name(s) {duplicates} appear more than once")
    if not rows:
        raise PredictorError(f"{path} has a header but no data rows")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise PredictorError(
                f"{path}, line {line}: {len(row)} cells, but the header has {len(header)} columns"
            )
    return header, rows, lines


def _numbers(
    path: Path,
    header: list[str],
    rows: list[list[str]],
    lines: list[int],
    columns: list[str],
    hint: bool,
) -> np.ndarray:
    """The given columns as a float matrix; the first bad cell is reported by line and name."""
    index = [header.index(name) for name in columns]
    cells = [[row[i] for i in index] for row in rows]
    try:
        matrix = np.array(cells, dtype=float)
    except ValueError:  # numpy names no cell: parse one by one to report the first bad one
        matrix = None
    if matrix is not None and np.isfinite(matrix).all():
        return matrix
    matrix = np.empty((len(cells), len(columns)))
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            problem = _cell_problem(cell)
            if problem:
                fix = f" (if it is not a feature, add --drop {columns[c]})" if hint else ""
                raise PredictorError(
                    f"{path}, line {lines[r]}, column {columns[c]!r}: {problem}{fix}"
                )
            matrix[r, c] = float(cell)
    return matrix


def _cell_problem(cell: str) -> str | None:
    if not cell.strip():
        return "empty cell, expected a number"
    try:
        value = float(cell)
    except ValueError:
        return f"{cell!r} is not a number"
    return None if np.isfinite(value) else f"{cell!r} is not a finite number"


def column_difference(have: Sequence[str], want: Sequence[str]) -> str | None:
    """What differs between two feature column lists (None when equal), for error messages."""
    if list(have) == list(want):
        return None
    missing = [name for name in want if name not in have]
    extra = [name for name in have if name not in want]
    parts = []
    if missing:
        parts.append(f"missing column(s) {_names(missing)}")
    if extra:
        parts.append(f"extra column(s) {_names(extra)}")
    return "; ".join(parts) or "the same columns in another order"


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def align(table: Table, columns: Sequence[str]) -> np.ndarray:
    """`table`'s features in the order of `columns`; missing or extra columns are named."""
    have = set(table.columns)
    difference = column_difference(sorted(have), sorted(columns))
    if difference:
        raise PredictorError(
            f"{table.path} does not have the model's feature columns: {difference} "
            "(use --drop for columns that are not features)"
        )
    order = [table.columns.index(name) for name in columns]
    return table.X[:, order]
