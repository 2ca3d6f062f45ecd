"""Dataset registry: pinned checksums and the data-dir / env / cache / download lookup order."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
from pathlib import Path

import pytest

from automoe.data import registry
from automoe.data.registry import (
    MULTI30K,
    ChecksumError,
    DatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    resolve_dataset_dir,
    sha256_file,
)

CONTENT = {
    f"{split}.{lang}.gz": gzip.compress(f"{split} {lang}\n".encode(), mtime=0)
    for split in ("train", "val")
    for lang in ("xx", "yy")
}
TOY = DatasetSpec(
    name="toy",
    languages=("xx", "yy"),
    splits=("train", "val"),
    url_template="https://example.invalid/toy/{file}",
    sha256={name: hashlib.sha256(data).hexdigest() for name, data in CONTENT.items()},
)


class FakeDownloader:
    """Stands in for the network: serves CONTENT (or `payload`) and counts requests."""

    def __init__(self, payload: bytes | None = None, error: Exception | None = None) -> None:
        self.urls: list[str] = []
        self.payload = payload
        self.error = error

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        dest.write_bytes(self.payload or CONTENT[url.rsplit("/", 1)[1]])


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDownloader:
    """No network, an empty user cache, no env var, and the toy dataset registered."""
    fake = FakeDownloader()
    monkeypatch.setattr(registry, "download_file", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(registry.ENV_DATA_DIR, raising=False)
    monkeypatch.setitem(registry.DATASETS, TOY.name, TOY)
    return fake


def make_copy(base: Path) -> Path:
    """A complete toy corpus at base/toy."""
    folder = base / "toy"
    folder.mkdir(parents=True)
    for name, data in CONTENT.items():
        (folder / name).write_bytes(data)
    return folder


def test_real_files_match_registry(data_dir: Path) -> None:
    folder = resolve_dataset_dir("multi30k", data_dir=data_dir, download=False, verify=True)
    assert folder == data_dir / "multi30k"
    assert len(MULTI30K.files) == 12
    for name in MULTI30K.files:
        assert sha256_file(folder / name) == MULTI30K.sha256[name]


def test_multi30k_urls_point_at_official_repo() -> None:
    assert MULTI30K.url("train.en.gz") == (
        "https://github.com/multi30k/dataset/raw/master/data/task1/raw/train.en.gz"
    )


def test_explicit_dir_accepts_container_or_dataset_folder(tmp_path: Path) -> None:
    folder = make_copy(tmp_path / "mine")
    assert resolve_dataset_dir("toy", data_dir=tmp_path / "mine") == folder
    assert resolve_dataset_dir("toy", data_dir=folder) == folder


def test_explicit_dir_beats_env_beats_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: FakeDownloader
) -> None:
    explicit = make_copy(tmp_path / "explicit")
    env = make_copy(tmp_path / "env")
    cache = make_copy(tmp_path / "xdg" / "automoe" / "data")
    monkeypatch.setenv(registry.ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_dataset_dir("toy", data_dir=tmp_path / "explicit") == explicit
    assert resolve_dataset_dir("toy") == env
    monkeypatch.delenv(registry.ENV_DATA_DIR)
    assert resolve_dataset_dir("toy") == cache
    assert isolated.urls == []


def test_env_without_dataset_falls_back_to_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_copy(tmp_path / "xdg" / "automoe" / "data")
    monkeypatch.setenv(registry.ENV_DATA_DIR, str(tmp_path / "elsewhere"))
    assert resolve_dataset_dir("toy") == cache


def test_wrong_explicit_dir_is_an_error_not_a_download(
    tmp_path: Path, isolated: FakeDownloader
) -> None:
    with pytest.raises(DatasetNotFoundError, match="--data-dir") as info:
        resolve_dataset_dir("toy", data_dir=tmp_path / "typo")
    assert str(tmp_path / "typo") in str(info.value)
    assert isolated.urls == []


def test_incomplete_copy_names_missing_files(tmp_path: Path) -> None:
    folder = make_copy(tmp_path / "mine")
    (folder / "val.yy.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lacks 1 file\(s\): val\.yy\.gz"):
        resolve_dataset_dir("toy", data_dir=folder)


def test_download_only_when_nothing_local_then_cached(
    tmp_path: Path, isolated: FakeDownloader
) -> None:
    folder = resolve_dataset_dir("toy")
    assert folder == tmp_path / "xdg" / "automoe" / "data" / "toy"
    assert sorted(isolated.urls) == sorted(TOY.url(f) for f in TOY.files)
    assert {p.name for p in folder.iterdir()} == set(TOY.files)  # no temp files left
    assert resolve_dataset_dir("toy") == folder
    assert len(isolated.urls) == len(TOY.files)


def test_interrupted_download_resumes_with_missing_files_only(
    tmp_path: Path, isolated: FakeDownloader
) -> None:
    folder = make_copy(tmp_path / "xdg" / "automoe" / "data")
    (folder / "train.xx.gz").unlink()
    assert resolve_dataset_dir("toy") == folder
    assert isolated.urls == [TOY.url("train.xx.gz")]


def test_download_with_bad_checksum_is_refused_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "download_file", FakeDownloader(payload=b"<html>oops</html>"))
    with pytest.raises(ChecksumError, match="discarded"):
        resolve_dataset_dir("toy")
    cache = tmp_path / "xdg" / "automoe" / "data" / "toy"
    assert list(cache.iterdir()) == []


def test_offline_not_found_lists_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = FakeDownloader(error=urllib.error.URLError("no network"))
    monkeypatch.setattr(registry, "download_file", offline)
    monkeypatch.setenv(registry.ENV_DATA_DIR, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("toy")
    message = str(info.value)
    assert "\n" not in message
    for expected in (
        f"AUTOMOE_DATA_DIR: {tmp_path / 'env'} does not exist",
        str(tmp_path / "xdg" / "automoe" / "data" / "toy"),
        "download from https://example.invalid/toy/",
        "no network",
        "--data-dir",
    ):
        assert expected in message
    assert len(offline.urls) == 1


def test_download_disabled_says_so(isolated: FakeDownloader) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"DATA_DIR: not set.*download: disabled"):
        resolve_dataset_dir("toy", download=False)
    assert isolated.urls == []


def test_verify_names_corrupt_local_file(tmp_path: Path) -> None:
    folder = make_copy(tmp_path / "mine")
    (folder / "val.xx.gz").write_bytes(b"tampered")
    assert resolve_dataset_dir("toy", data_dir=folder) == folder  # not hashed unless asked
    with pytest.raises(ChecksumError, match=r"val\.xx\.gz.*re-download"):
        resolve_dataset_dir("toy", data_dir=folder, verify=True)


def test_unknown_dataset_and_names() -> None:
    with pytest.raises(DatasetError, match="registered datasets: multi30k"):
        resolve_dataset_dir("wmt99")
    with pytest.raises(DatasetError, match="no split 'dev'"):
        MULTI30K.file_name("dev", "en")
    with pytest.raises(DatasetError, match="no language 'es'"):
        MULTI30K.file_name("train", "es")
