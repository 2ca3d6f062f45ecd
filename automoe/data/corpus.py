"""Reading line-aligned parallel text (plain or gzipped) with errors that point at the line.

A misaligned or half-empty corpus trains a model that looks fine and translates badly, so
every defect that breaks the line alignment is an error rather than a silent skip.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from automoe.data.registry import dataset_folder, get_dataset, verify_files
from automoe.errors import AutomoeError

_GZIP_MAGIC = b"\x1f\x8b"
_LANG = re.compile(r"[a-z]{2,3}")


class CorpusError(AutomoeError, ValueError):
    """A corpus file that is missing, unreadable or misaligned with its other side."""


@dataclass(frozen=True)
class TranslationTask:
    """One translation direction, e.g. English to German."""

    src: str
    tgt: str

    def __post_init__(self) -> None:
        for side in (self.src, self.tgt):
            if not isinstance(side, str) or not _LANG.fullmatch(side):
                raise CorpusError(
                    f"bad language code {side!r} in task {self.src}-{self.tgt}; "
                    "use 2-3 lowercase letters as in 'en-de'"
                )
        if self.src == self.tgt:
            raise CorpusError(f"task {self.src}-{self.tgt} translates a language into itself")

    @property
    def name(self) -> str:
        """The task as written on the command line, e.g. 'en-de'."""
        return f"{self.src}-{self.tgt}"

    @classmethod
    def parse(cls, text: str) -> TranslationTask:
        """Parse 'src-tgt' such as 'en-de'."""
        parts = text.strip().split("-")
        if len(parts) != 2:
            raise CorpusError(f"bad task {text!r}; write it as SRC-TGT, e.g. 'en-de'")
        return cls(parts[0], parts[1])


def read_lines(path: str | Path) -> list[str]:
    """The stripped lines of a UTF-8 text file, gzipped or not (detected by content)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} not found; check the path or the --data-dir")
    try:
        raw = path.read_bytes()
        if raw.startswith(_GZIP_MAGIC):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise CorpusError(
            f"cannot read {path} ({err}); the file is damaged, re-download or recreate it"
        ) from None
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    if not chunks:
        raise CorpusError(f"corpus file {path} is empty; it needs one sentence per line")
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"{path}:{number}: bytes {chunk[err.start : err.end]!r} at byte {err.start + 1} "
                "are not UTF-8; re-encode the file as UTF-8 (e.g. with iconv)"
            ) from None
        lines.append(text.lstrip("\ufeff").strip() if number == 1 else text.strip())
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Sentence pairs from two line-aligned files; lines empty on both sides are dropped."""
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(
            f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
            "the two sides must be line-aligned translations of each other"
        )
    pairs = []
    for number, (src, tgt) in enumerate(zip(src_lines, tgt_lines, strict=True), start=1):
        if bool(src) != bool(tgt):
            empty, other = (src_path, tgt_path) if not src else (tgt_path, src_path)
            raise CorpusError(
                f"{empty}:{number}: empty line while {other}:{number} is not; "
                "the files are misaligned or a translation is missing"
            )
        if src:
            pairs.append((src, tgt))
    return pairs


def load_split(
    dataset_dir: str | Path,
    split: str,
    src_lang: str,
    tgt_lang: str,
    name: str = "multi30k",
    verify: bool = False,
) -> list[tuple[str, str]]:
    """Sentence pairs of one split of a registered corpus (as found by resolve_dataset_dir)."""
    spec = get_dataset(name)
    folder = dataset_folder(dataset_dir, spec)
    files = [spec.file_name(split, src_lang), spec.file_name(split, tgt_lang)]
    if verify:
        verify_files(folder, spec, [f for f in files if (folder / f).is_file()])
    return read_parallel(folder / files[0], folder / files[1])
