"""Reading cost CSVs: which columns are features, and errors that name the cell to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automoe.errors import AutomoeError
from automoe.predictors.data import align, column_difference, read_table

HEADER = (
    "enc_embed,dec_layers,arch_key,arch,latency_ms,encoder_ms,median_ms,latency_std,runs,weights"
)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ours(tmp_path: Path, *rows: str) -> Path:
    """A table shaped like `python -m automoe.latency dataset` output."""
    return write(tmp_path, "\n".join([HEADER, *rows]) + "\n")


ROW = '256,3,ab12,"{""a"": 1}",12.5,1.5,12.4,0.3,20,random'


def test_known_measurement_and_label_columns_are_not_features(tmp_path: Path) -> None:
    table = read_table(ours(tmp_path, ROW, ROW.replace("256,3", "192,1")), "latency_ms")
    assert table.columns == ["enc_embed", "dec_layers"]
    assert table.X.tolist() == [[256, 3], [192, 1]]
    assert table.y is not None and table.y.tolist() == [12.5, 12.5]
    assert table.target == "latency_ms"


def test_any_csv_with_a_named_target_and_drop_list(tmp_path: Path) -> None:
    path = write(tmp_path, "model,params,flops,latency_s\nbig,10,2.5,0.3\nsmall,1,0.5,0.05\n")
    table = read_table(path, "latency_s", drop=["model"])
    assert table.columns == ["params", "flops"]
    assert table.y is not None and table.y.tolist() == [0.3, 0.05]


def test_predict_time_reading_needs_no_target(tmp_path: Path) -> None:
    path = write(tmp_path, "params,flops\n10,2.5\n")
    table = read_table(path, "latency_ms", need_target=False, also_drop=["absent"])
    assert table.y is None and table.X.tolist() == [[10, 2.5]]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("abc", "'abc' is not a number"),
        ("", "empty cell, expected a number"),
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
    ],
)
def test_bad_feature_cell_is_named_by_line_and_column(
    tmp_path: Path, cell: str, problem: str
) -> None:
    path = ours(tmp_path, ROW, ROW.replace("256,3", f"256,{cell}"))
    with pytest.raises(AutomoeError) as err:
        read_table(path, "latency_ms")
    assert str(err.value) == (
        f"{path}, line 3, column 'dec_layers': {problem} (if it is not a feature, add --drop "
        "dec_layers)"
    )


def test_bad_target_cell_is_named_without_a_drop_hint(tmp_path: Path) -> None:
    path = ours(tmp_path, ROW.replace("12.5", ""))
    with pytest.raises(AutomoeError, match=r"line 2, column 'latency_ms': empty cell") as err:
        read_table(path, "latency_ms")
    assert "--drop" not in str(err.value)


def test_text_column_must_be_dropped_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "device,params,latency_ms\ncpu,10,3\n")
    with pytest.raises(
        AutomoeError, match=r"column 'device': 'cpu' is not a number.*--drop device"
    ):
        read_table(path, "latency_ms")


def test_missing_target_lists_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "params,flops\n10,2\n")
    with pytest.raises(AutomoeError) as err:
        read_table(path, "latency_ms")
    assert (
        str(err.value)
        == f"{path}: no target column 'latency_ms'; the columns are ['params', 'flops']"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty: expected a header row"),
        ("params,latency_ms\n", "has a header but no data rows"),
        ("params,latency_ms\n1,2\n3\n", "line 3: 1 cells, but the header has 2 columns"),
        ("a,a,latency_ms\n1,2,3\n", r"column name\(s\) \['a'\] appear more than once"),
        ("latency_ms,arch\n1,x\n", "no feature columns left"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AutomoeError, match=message):
        read_table(write(tmp_path, text), "latency_ms")


def test_unknown_drop_column_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "params,latency_ms\n1,2\n")
    with pytest.raises(AutomoeError, match=r"cannot drop column\(s\) \['parms'\]: not in the file"):
        read_table(path, "latency_ms", drop=["parms"])
    with pytest.raises(AutomoeError, match=r"cannot read .*nope.csv: No such file"):
        read_table(tmp_path / "nope.csv", "latency_ms")


def test_align_reorders_and_names_missing_and_extra_columns(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "b,a,latency_ms\n2,1,5\n"), "latency_ms")
    assert align(table, ["a", "b"]).tolist() == [[1, 2]]
    with pytest.raises(AutomoeError) as err:
        align(table, ["a", "c"])
    assert "missing column(s) c; extra column(s) b (use --drop" in str(err.value)


def test_column_difference_is_short_for_long_lists() -> None:
    want = [f"x{i}" for i in range(20)]
    assert column_difference(want, want) is None
    assert column_difference(want[::-1], want) == "the same columns in another order"
    assert column_difference([], want) == (
        "missing column(s) x0, x1, x2, x3, x4, x5, x6, x7, ... (20 in all)"
    )


def test_large_table_reads_fast_path(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 2},{i + 1}" for i in range(2000))
    table = read_table(write(tmp_path, "a,b,latency_ms\n" + rows + "\n"), "latency_ms")
    assert table.X.shape == (2000, 2)
    assert np.array_equal(table.X[:, 1], 2 * table.X[:, 0])
