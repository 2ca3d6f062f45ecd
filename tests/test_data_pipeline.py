"""From the registered corpus and a task list to a joint tokenizer and examples per split."""

from __future__ import annotations

from pathlib import Path

from automoe.data.corpus import TranslationTask
from automoe.data.pipeline import dataset_tokenizer, load_corpus_tasks, task_languages


def test_one_to_many_pipeline(data_dir: Path, tmp_path: Path) -> None:
    tasks = [TranslationTask.parse(name) for name in ("en-de", "en-fr")]
    assert task_languages(tasks) == ("en", "de", "fr")
    tok = dataset_tokenizer(data_dir, tasks, 500, tmp_path, max_sentences=3000)
    assert tok.langs == ("en", "de", "fr", "cs")
    assert dataset_tokenizer(data_dir / "multi30k", tasks, 500, tmp_path, max_sentences=3000)
    assert len(list(tmp_path.glob("*.model"))) == 1  # same inputs either way: one cached model
    splits = load_corpus_tasks(data_dir, tasks, tok, max_len=32, splits=["val"])
    assert list(splits) == ["val"]
    val = splits["val"]
    assert len(val) == 2 * 1014
    assert [e.task_id for e in val] == [0] * 1014 + [1] * 1014
    assert val[0].src[0] == tok.lang_tag_id("de") and val[-1].src[0] == tok.lang_tag_id("fr")
    assert all(e.src_len <= 32 and e.tgt_len <= 32 for e in val)
