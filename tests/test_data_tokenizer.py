"""Joint SentencePiece tokenizer: round trip, specials, language tags, caching, save/load."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest
import sentencepiece as spm

from automoe.data import tokenizer as tokenizer_module
from automoe.data.corpus import read_lines
from automoe.data.tokenizer import DEFAULT_LANGS, Tokenizer, TokenizerError

VOCAB = 1000
SENTENCES = [
    "Two young, White males are outside near many bushes.",
    "A man in an orange hat starring at something.",
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Dva mladí bílí muži jsou venku poblíž mnoha keřů.",
    "Un homme en short et en t-shirt vert regarde l'écran.",
]


@pytest.fixture(scope="module")
def texts(data_dir: Path) -> dict[str, list[str]]:
    folder = data_dir / "multi30k"
    return {lang: read_lines(folder / f"train.{lang}.gz")[:3000] for lang in DEFAULT_LANGS}


@pytest.fixture(scope="module")
def tok(texts: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer.train_or_load(texts, VOCAB, tmp_path_factory.mktemp("spm"))


class TrainCounter:
    """Wraps the trainer to count how often a model is actually built."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = tokenizer_module._train

        def counted(*args: object) -> bytes:
            self.calls += 1
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(tokenizer_module, "_train", counted)


def test_round_trip(tok: Tokenizer, data_dir: Path) -> None:
    for sentence in SENTENCES:
        ids = tok.encode(sentence)
        assert ids and all(isinstance(i, int) and 0 <= i < VOCAB for i in ids)
        assert tok.decode(ids) == sentence
    for lang in ("en", "cs"):  # val sentences unseen in training
        for sentence in read_lines(data_dir / "multi30k" / f"val.{lang}.gz")[:200]:
            assert tok.decode(tok.encode(sentence)) == sentence


def test_specials_and_language_tags(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == VOCAB
    assert tok.langs == ("en", "de", "fr", "cs")
    tags = [tok.lang_tag_id(lang) for lang in tok.langs]
    assert len(set(tags)) == 4 and all(3 < t < VOCAB for t in tags)
    assert tok.lang_tag_id("de") in tok.encode("<2de>")  # one piece, not split up
    ids = tok.encode(SENTENCES[0])
    assert tok.decode([tok.bos_id, tags[1], *ids, tok.eos_id, tok.pad_id]) == SENTENCES[0]
    with pytest.raises(TokenizerError, match=r"no tag for language 'es'.*<2en>"):
        tok.lang_tag_id("es")


def test_second_call_loads_cache(
    texts: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = TrainCounter(monkeypatch)
    small = {lang: lines[:500] for lang, lines in texts.items()}
    first = Tokenizer.train_or_load(small, 300, tmp_path)
    (model,) = tmp_path.glob("*.model")
    stamp = model.stat().st_mtime_ns
    second = Tokenizer.train_or_load(dict(reversed(small.items())), 300, tmp_path)
    assert counter.calls == 1 and model.stat().st_mtime_ns == stamp
    assert second.encode(SENTENCES[0]) == first.encode(SENTENCES[0])
    Tokenizer.train_or_load(small, 301, tmp_path)  # other settings: another model
    Tokenizer.train_or_load({**small, "en": small["en"][:-1]}, 300, tmp_path)  # other text
    assert counter.calls == 3 and len(list(tmp_path.glob("*.model"))) == 3


def test_file_inputs_are_cached_by_content(
    texts: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = TrainCounter(monkeypatch)
    files = []
    for lang in ("en", "de"):
        data = "\n".join(texts[lang][:500]).encode()
        files.append(tmp_path / f"{lang}.gz")
        files[-1].write_bytes(gzip.compress(data))
    first = Tokenizer.train_or_load(files, 300, tmp_path / "cache")
    os.utime(files[0], (0, 0))  # touched but same content: still cached
    copies = [tmp_path / "copy_en.gz", tmp_path / "copy_de.gz"]
    for src, dst in zip(files, copies, strict=True):
        dst.write_bytes(src.read_bytes())
    again = Tokenizer.train_or_load(copies, 300, tmp_path / "cache")
    assert counter.calls == 1
    assert again.encode(SENTENCES[0]) == first.encode(SENTENCES[0])


def test_training_is_deterministic(texts: dict[str, list[str]], tmp_path: Path) -> None:
    small = {"en": texts["en"][:500], "de": texts["de"][:500]}
    a = Tokenizer.train_or_load(small, 300, tmp_path / "a").save(tmp_path / "sa")
    b = Tokenizer.train_or_load(small, 300, tmp_path / "b").save(tmp_path / "sb")
    assert a.read_bytes() == b.read_bytes()


def test_save_and_load(tok: Tokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path / "out")
    assert path == tmp_path / "out" / "tokenizer.model"
    for source in (path, tmp_path / "out"):
        loaded = Tokenizer.load(source)
        assert loaded.encode(SENTENCES[2]) == tok.encode(SENTENCES[2])
        assert loaded.lang_tag_id("cs") == tok.lang_tag_id("cs")


def test_missing_or_corrupt_model(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.load(tmp_path / "none.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(TokenizerError, match=rf"{bad} is not a SentencePiece model"):
        Tokenizer.load(bad)


def test_corrupt_cache_entry_is_rebuilt(texts: dict[str, list[str]], tmp_path: Path) -> None:
    small = {"en": texts["en"][:300]}
    Tokenizer.train_or_load(small, 200, tmp_path)
    (model,) = tmp_path.glob("*.model")
    model.write_bytes(b"truncated")
    rebuilt = Tokenizer.train_or_load(small, 200, tmp_path)
    assert rebuilt.vocab_size == 200 and Tokenizer.load(model).vocab_size == 200


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"vocab_size=5000.*Vocabulary size too high"):
        Tokenizer.train_or_load({"en": ["a tiny corpus"] * 5}, 5000, tmp_path)
    with pytest.raises(TokenizerError, match="bad language code 'EN'"):
        Tokenizer.train_or_load({"en": ["a"]}, 100, tmp_path, langs=["EN"])


def test_foreign_model_with_other_special_ids_is_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 3), model_writer=buffer, vocab_size=60, minloglevel=2
    )
    (tmp_path / "plain.model").write_bytes(buffer.getvalue())
    with pytest.raises(TokenizerError, match=r"special ids.*trained by automoe"):
        Tokenizer.load(tmp_path / "plain.model")
