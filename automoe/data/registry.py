"""Registered corpora and where to find them: explicit folder, env var, user cache, download.

Every file of a registered corpus has a pinned sha256, so a download that was truncated or
tampered with is refused instead of silently training on different data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from automoe.errors import AutomoeError

ENV_DATA_DIR = "AUTOMOE_DATA_DIR"


class DatasetError(AutomoeError, ValueError):
    """A corpus that is unknown, missing, incomplete or corrupt."""


class DatasetNotFoundError(DatasetError):
    """No usable copy of a corpus exists locally and it could not be downloaded."""


class ChecksumError(DatasetError):
    """A corpus file whose sha256 differs from the registered one."""


@dataclass(frozen=True)
class DatasetSpec:
    """A corpus as a grid of `{split}.{lang}.gz` files, each with a download URL and sha256."""

    name: str
    languages: tuple[str, ...]
    splits: tuple[str, ...]
    url_template: str
    sha256: Mapping[str, str]

    def file_name(self, split: str, lang: str) -> str:
        """The file holding one side of one split; rejects names the corpus does not have."""
        if split not in self.splits:
            raise DatasetError(
                f"{self.name} has no split {split!r}; choose one of {', '.join(self.splits)}"
            )
        if lang not in self.languages:
            raise DatasetError(
                f"{self.name} has no language {lang!r}; choose one of {', '.join(self.languages)}"
            )
        return f"{split}.{lang}.gz"

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the corpus, in a fixed order."""
        return tuple(self.file_name(s, lang) for s in self.splits for lang in self.languages)

    def url(self, file_name: str) -> str:
        """Official download location of one file."""
        return self.url_template.format(file=file_name)


MULTI30K = DatasetSpec(
    name="multi30k",
    languages=("en", "de", "fr", "cs"),
    splits=("train", "val", "test_2016_flickr"),
    url_template="https://github.com/multi30k/dataset/raw/master/data/task1/raw/{file}",
    sha256={
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
        "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
        "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
        "test_2016_flickr.en.gz": (
            "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"
        ),
        "test_2016_flickr.de.gz": (
            "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"
        ),
        "test_2016_flickr.fr.gz": (
            "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"
        ),
        "test_2016_flickr.cs.gz": (
            "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1"
        ),
    },
)

DATASETS: dict[str, DatasetSpec] = {MULTI30K.name: MULTI30K}


def get_dataset(name: str) -> DatasetSpec:
    """The registered corpus called `name`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; registered datasets: {', '.join(sorted(DATASETS))}"
        ) from None


def cache_root() -> Path:
    """Per-user download folder: `$XDG_CACHE_HOME/automoe/data` or `~/.cache/automoe/data`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "automoe" / "data"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(dataset_dir: Path, spec: DatasetSpec, files: Iterable[str] | None = None) -> None:
    """Check the sha256 of `files` (default: all) in `dataset_dir`; only called on request."""
    for file_name in spec.files if files is None else files:
        path = Path(dataset_dir) / file_name
        actual = sha256_file(path)
        if actual != spec.sha256[file_name]:
            raise ChecksumError(
                f"{path} is corrupt or not the official {spec.name} file (sha256 {actual[:12]}…, "
                f"expected {spec.sha256[file_name][:12]}…); delete it and re-download "
                f"it from {spec.url(file_name)}"
            )


def download_file(url: str, dest: Path) -> None:
    """Fetch `url` into `dest` (tests replace this to stay offline)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def download_dataset(spec: DatasetSpec, dest_dir: Path) -> Path:
    """Download the files missing from `dest_dir`, verifying each before it takes its name.

    Each file goes to a temporary name first and is renamed only once its checksum matches,
    so an interrupted or corrupt download never looks like a complete corpus.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    for file_name in spec.files:
        final = dest_dir / file_name
        if final.is_file():
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=dest_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            download_file(spec.url(file_name), tmp)
            actual = sha256_file(tmp)
            if actual != spec.sha256[file_name]:
                raise ChecksumError(
                    f"downloaded {spec.url(file_name)} has sha256 {actual[:12]}…, expected "
                    f"{spec.sha256[file_name][:12]}…; the file was discarded, retry later or "
                    f"point at a verified local copy with --data-dir or {ENV_DATA_DIR}"
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return dest_dir


def dataset_folder(path: str | Path, spec: DatasetSpec) -> Path:
    """`path/<name>` when it exists, else `path`: callers may pass either folder."""
    path = Path(path)
    return path / spec.name if (path / spec.name).is_dir() else path


def _locate(base: Path, spec: DatasetSpec) -> tuple[Path | None, str]:
    """Find a complete copy at `base/<name>` or `base` itself; otherwise say what is wrong."""
    for candidate in (base / spec.name, base):
        if candidate.is_dir() and any((candidate / f).is_file() for f in spec.files):
            missing = [f for f in spec.files if not (candidate / f).is_file()]
            if not missing:
                return candidate, ""
            return None, f"{candidate} lacks {len(missing)} file(s): {', '.join(missing)}"
    if not base.is_dir():
        return None, f"{base} does not exist"
    return None, f"neither {base / spec.name} nor {base} holds {spec.name} files"


def resolve_dataset_dir(
    name: str = "multi30k",
    data_dir: str | Path | None = None,
    download: bool = True,
    verify: bool = False,
) -> Path:
    """Folder holding the corpus files, looking in this order:

    1. `data_dir` (the folder containing `<name>/`, or `<name>/` itself); when given it must
       hold the corpus, so a mistyped `--data-dir` never silently falls back to a download;
    2. the folder in `$AUTOMOE_DATA_DIR`;
    3. the user cache (`cache_root()`);
    4. a download into the cache, when `download` is true.

    `verify` checks the sha256 of every file of a local copy (downloads are always checked).
    """
    spec = get_dataset(name)
    hint = (
        f"point at a local copy with --data-dir DIR or {ENV_DATA_DIR}=DIR "
        f"(DIR holding {spec.name}/ or its files {spec.files[0]}, ...)"
    )
    if data_dir is not None:
        found, problem = _locate(Path(data_dir).expanduser(), spec)
        if found is None:
            raise DatasetNotFoundError(f"{spec.name} not found via --data-dir: {problem}; {hint}")
        if verify:
            verify_files(found, spec)
        return found

    looked: list[str] = []
    env_value = os.environ.get(ENV_DATA_DIR)
    if env_value:
        found, problem = _locate(Path(env_value).expanduser(), spec)
        if found is not None:
            if verify:
                verify_files(found, spec)
            return found
        looked.append(f"{ENV_DATA_DIR}: {problem}")
    else:
        looked.append(f"{ENV_DATA_DIR}: not set")

    cache = cache_root() / spec.name
    found, problem = _locate(cache, spec)
    if found is not None:
        if verify:
            verify_files(found, spec)
        return found
    looked.append(f"cache: {problem}")

    if not download:
        looked.append("download: disabled")
    else:
        try:
            return download_dataset(spec, cache)
        except OSError as err:
            looked.append(f"download from {spec.url('...')}: failed ({err})")
    raise DatasetNotFoundError(f"{spec.name} not found; looked in {'; '.join(looked)}; {hint}")
