"""A joint SentencePiece vocabulary over every language, with target-language tag tokens.

One vocabulary shared by all languages lets a single model translate one-to-many, steered by
a `<2xx>` tag on the source. Training is cached by a hash of its inputs and settings, so
every run of a search reuses the same model instead of rebuilding (and subtly changing) it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from automoe.data.corpus import read_lines
from automoe.data.registry import sha256_file
from automoe.errors import AutomoeError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
DEFAULT_LANGS = ("en", "de", "fr", "cs")
MODEL_FILE = "tokenizer.model"
_TAG = re.compile(r"<2([a-z]{2,3})>")
_SPM_LOCATION = re.compile(r"^[A-Z_]+: \S+\(\d+\) \[.*?\] ")  # C++ source position in errors
_CACHE_FORMAT = 1  # bump when training changes in a way the settings below do not capture


class TokenizerError(AutomoeError, ValueError):
    """A tokenizer model that is missing, corrupt, or cannot be trained with given settings."""


def lang_tag(lang: str) -> str:
    """The piece that asks for output in `lang`, e.g. '<2de>'."""
    return f"<2{lang}>"


class Tokenizer:
    """SentencePiece model with pad=0, unk=1, bos=2, eos=3 and one `<2xx>` piece per language."""

    def __init__(self, model_proto: bytes, source: str = "<memory>") -> None:
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except RuntimeError:
            raise TokenizerError(
                f"{source} is not a SentencePiece model (corrupt or truncated); "
                "delete it and train the tokenizer again"
            ) from None
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise TokenizerError(
                f"{source} has special ids pad/unk/bos/eos={ids}, expected "
                f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; use a model trained by automoe"
            )
        self._tags: dict[str, int] = {}
        for piece_id in range(EOS_ID + 1, self._sp.get_piece_size()):
            match = _TAG.fullmatch(self._sp.id_to_piece(piece_id))
            if match is None:
                break
            self._tags[match.group(1)] = piece_id
        self._specials = frozenset((PAD_ID, BOS_ID, EOS_ID, *self._tags.values()))

    @classmethod
    def train_or_load(
        cls,
        inputs: Mapping[str, Iterable[str]] | Sequence[str | Path],
        vocab_size: int,
        cache_dir: str | Path,
        *,
        langs: Sequence[str] = DEFAULT_LANGS,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        max_sentences: int = 1_000_000,
        seed: int = 0,
        num_threads: int = 4,
    ) -> Tokenizer:
        """Load the model cached for these inputs and settings, training it on first use.

        `inputs` is either texts by name (e.g. {"train.en": [...], "train.de": [...]}) or a
        list of plain/gzipped text files; all of it goes into one joint vocabulary. The thread
        count is fixed rather than taken from the machine because it changes the model.
        """
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        for lang in langs:
            if not _TAG.fullmatch(lang_tag(lang)):
                raise TokenizerError(f"bad language code {lang!r}; use 2-3 lowercase letters")
        settings = {
            "format": _CACHE_FORMAT,
            "vocab_size": vocab_size,
            "langs": list(langs),
            "model_type": model_type,
            "character_coverage": character_coverage,
            "max_sentences": max_sentences,
            "seed": seed,
            "num_threads": num_threads,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        if isinstance(inputs, Mapping):
            texts = {name: list(inputs[name]) for name in sorted(inputs)}
            for name, lines in texts.items():
                digest.update(f"\0text\0{name}\0{len(lines)}\0".encode())
                for line in lines:
                    digest.update(line.encode() + b"\n")
            sentences: Iterable[str] = (s for lines in texts.values() for s in lines)
        else:
            files = [Path(f) for f in inputs]
            for path in files:
                if not path.is_file():
                    raise TokenizerError(f"tokenizer training file {path} not found")
                digest.update(f"\0file\0{sha256_file(path)}".encode())
            sentences = (s for path in files for s in read_lines(path))
        model_path = Path(cache_dir) / f"spm-{digest.hexdigest()[:24]}.model"
        if model_path.is_file():
            try:
                return cls.load(model_path)
            except TokenizerError:
                pass  # a damaged cache entry is rebuilt below, like a missing one
        proto = _train([s for s in sentences if s], settings)
        _write_atomic(model_path, proto)
        return cls(proto, source=str(model_path))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a `.model` file, or the `tokenizer.model` inside a folder written by `save`."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise TokenizerError(
                f"tokenizer model {path} not found; check the path or train the tokenizer again"
            )
        return cls(path.read_bytes(), source=str(path))

    def save(self, directory: str | Path) -> Path:
        """Write the model as `<directory>/tokenizer.model` and return that path."""
        path = Path(directory) / MODEL_FILE
        _write_atomic(path, self._proto)
        return path

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model, for embedding in self-contained model files."""
        return self._proto

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials and language tags included."""
        return int(self._sp.get_piece_size())

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def langs(self) -> tuple[str, ...]:
        """Languages that have a `<2xx>` tag in this vocabulary."""
        return tuple(self._tags)

    def lang_tag_id(self, lang: str) -> int:
        """Id of the `<2xx>` piece requesting output in `lang`."""
        try:
            return self._tags[lang]
        except KeyError:
            raise TokenizerError(
                f"the tokenizer has no tag for language {lang!r} (it has "
                f"{', '.join(map(lang_tag, self._tags)) or 'none'}); retrain it with that language"
            ) from None

    def encode(self, text: str) -> list[int]:
        """Piece ids of `text`, without bos/eos or tags."""
        return list(self._sp.encode(text, out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenised text, dropping pad/bos/eos and language tags."""
        return str(self._sp.decode([int(i) for i in ids if int(i) not in self._specials]))


def _train(sentences: list[str], settings: dict[str, Any]) -> bytes:
    """Train a SentencePiece model in memory with `train_or_load`'s settings; return its bytes."""
    spm.set_random_generator_seed(settings["seed"])
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buffer,
            vocab_size=settings["vocab_size"],
            model_type=settings["model_type"],
            character_coverage=settings["character_coverage"],
            input_sentence_size=settings["max_sentences"],
            shuffle_input_sentence=True,
            num_threads=settings["num_threads"],
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=[lang_tag(lang) for lang in settings["langs"]],
            minloglevel=2,
        )
    except RuntimeError as err:
        reason = _SPM_LOCATION.sub("", str(err).strip()).rstrip(".")
        raise TokenizerError(
            f"cannot train the tokenizer with vocab_size={settings['vocab_size']}, "
            f"model_type={settings['model_type']!r}: "
            f"{reason}; adjust the tokenizer settings (e.g. a smaller --vocab-size)"
        ) from None
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see a half-written model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
