"""Atomic writes keep the old file on failure; CLI number types refuse impossible values."""

from __future__ import annotations

import argparse

import pytest

from automoe.argtypes import nonnegative_int, positive_float, positive_int, probability
from automoe.files import atomic_path, previous_path, write_text_atomic


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_killed_writers_temporary_is_cleared_by_the_next_write(tmp_path):
    target = tmp_path / "ckpt.pt"
    (tmp_path / ".ckpt.pt.abc123.part").write_text("half a checkpoint")
    write_text_atomic(target, "whole")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_keep_previous_holds_the_replaced_copy(tmp_path):
    target = tmp_path / "ckpt.pt"
    for text in ("v1", "v2", "v3"):
        with atomic_path(target, keep_previous=True) as tmp:
            tmp.write_text(text)
    assert target.read_text() == "v3"
    assert previous_path(target).read_text() == "v2"


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (positive_int, ["1", "300"], ["0", "-3", "1.5", "x"]),
        (nonnegative_int, ["0", "7"], ["-1", "two"]),
        (positive_float, ["0.5", "40"], ["0", "-2", "nan", "inf"]),
        (probability, ["0", "0.3", "1"], ["1.1", "-0.1"]),
    ],
)
def test_number_types(parse, good, bad):
    for text in good:
        parse(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_argparse_names_the_option(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--evaluations", type=positive_int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--evaluations", "0"])
    assert exit_info.value.code == 2
    assert "--evaluations: 0 must be a whole number above 0" in capsys.readouterr().err
