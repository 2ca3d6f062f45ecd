"""Numeric options of `python -m automoe.search` and `python -m automoe.plot` refuse impossible
values when the command line is parsed, instead of running something else or nothing."""

from __future__ import annotations

import pytest

from automoe.errors import AutomoeError
from automoe.plot.__main__ import parse_reference
from automoe.search import __main__ as search


@pytest.mark.parametrize(
    "option",
    [
        "--evaluations=0",
        "--evaluations=-3",
        "--batch=0",
        "--jobs=0",
        "--valid-size=0",
        "--threads=0",
        "--time-limit=0",
        "--time-limit=nan",
        "--seed=-1",
        "--evaluations=2.5",
    ],
)
def test_search_refuses_impossible_numbers(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        search.build_parser().parse_args(["--strategy=random", option])
    assert exit_info.value.code == 2
    assert option.split("=")[0] in capsys.readouterr().err


def test_search_evaluations_default_is_explicit() -> None:
    args = search.build_parser().parse_args(["--strategy=random"])
    assert args.evaluations is None  # on --resume: the run's own budget
    assert search.DEFAULT_EVALUATIONS == 300
    assert (
        search.build_parser().parse_args(["--strategy=random", "--evaluations=7"]).evaluations == 7
    )


@pytest.mark.parametrize("text", ["9,0", "9,-5", "9,inf", "nan,200"])
def test_plot_reference_point_must_be_beatable(text: str) -> None:
    with pytest.raises(AutomoeError, match="--reference"):
        parse_reference(text)
