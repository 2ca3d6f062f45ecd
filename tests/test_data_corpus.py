"""Parallel corpus reading: real splits and every error a user can cause."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from automoe.data.corpus import CorpusError, TranslationTask, load_split, read_parallel
from automoe.data.registry import DatasetError


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_load_real_val_split(data_dir: Path) -> None:
    pairs = load_split(data_dir, "val", "en", "de", verify=True)
    assert len(pairs) == 1014
    assert pairs[0][0].startswith("A group of men are loading cotton")
    assert all(src and tgt and src == src.strip() for src, tgt in pairs)
    assert load_split(data_dir / "multi30k", "test_2016_flickr", "en", "cs")[0][1]


def test_plain_and_gzip_give_same_pairs(tmp_path: Path) -> None:
    src = b"Hello world.\r\nA cat \xc3\xa9t\xc3\xa9.\n"
    tgt = b"Hallo Welt.\nEine Katze."  # no final newline
    plain = read_parallel(write(tmp_path / "a.en", src), write(tmp_path / "a.de", tgt))
    gzipped = read_parallel(
        write(tmp_path / "b.en.gz", src, gz=True), write(tmp_path / "b.de", tgt, gz=True)
    )
    assert plain == gzipped == [("Hello world.", "Hallo Welt."), ("A cat été.", "Eine Katze.")]


def test_lines_empty_on_both_sides_are_dropped(tmp_path: Path) -> None:
    pairs = read_parallel(write(tmp_path / "s", b"a\n\nb\n"), write(tmp_path / "t", b"x\n \ny\n"))
    assert pairs == [("a", "x"), ("b", "y")]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"nope\.de not found"):
        read_parallel(write(tmp_path / "s.en", b"a\n"), tmp_path / "nope.de")


def test_line_counts_differ_names_both_files_and_counts(tmp_path: Path) -> None:
    src, tgt = write(tmp_path / "s.en", b"a\nb\nc\n"), write(tmp_path / "t.de", b"x\ny\n")
    with pytest.raises(CorpusError) as info:
        read_parallel(src, tgt)
    assert f"{src} has 3 lines but {tgt} has 2" in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_empty_file(tmp_path: Path, gz: bool) -> None:
    empty = write(tmp_path / "t.de", b"", gz=gz)
    with pytest.raises(CorpusError, match=rf"{empty} is empty"):
        read_parallel(write(tmp_path / "s.en", b"a\n"), empty)


@pytest.mark.parametrize("gz", [False, True])
def test_undecodable_bytes_name_file_and_line(tmp_path: Path, gz: bool) -> None:
    bad = write(tmp_path / "t.de", b"gut\nauch gut\nschlecht \xff\xfe\n", gz=gz)
    with pytest.raises(CorpusError, match=rf"{bad}:3: bytes .* not UTF-8"):
        read_parallel(write(tmp_path / "s.en", b"a\nb\nc\n"), bad)


def test_one_sided_empty_line_names_file_and_line(tmp_path: Path) -> None:
    src, tgt = write(tmp_path / "s.en", b"a\nb\nc\n"), write(tmp_path / "t.de", b"x\n\nz\n")
    with pytest.raises(CorpusError, match=rf"{tgt}:2: empty line while {src}:2 is not"):
        read_parallel(src, tgt)
    with pytest.raises(CorpusError, match=rf"{tgt}:2: empty line while {src}:2 is not"):
        read_parallel(tgt, src)


def test_corrupt_gzip(tmp_path: Path) -> None:
    broken = write(tmp_path / "t.de.gz", gzip.compress(b"x\ny\n")[:-6])
    with pytest.raises(CorpusError, match=rf"cannot read {broken}.*damaged"):
        read_parallel(write(tmp_path / "s.en", b"a\nb\n"), broken)


def test_load_split_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no split 'dev'"):
        load_split(tmp_path, "dev", "en", "de")
    with pytest.raises(CorpusError, match=r"train\.en\.gz not found"):
        load_split(tmp_path, "train", "en", "de")


def test_translation_task() -> None:
    task = TranslationTask.parse("en-de")
    assert task == TranslationTask("en", "de")
    assert task.name == "en-de"
    for bad in ("en", "en-de-fr", "EN-de", "en-", "en-en"):
        with pytest.raises(CorpusError):
            TranslationTask.parse(bad)
