"""From a registered corpus and a list of tasks to a tokenizer and encoded examples per split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from automoe.data.batching import Example, encode_examples
from automoe.data.corpus import TranslationTask, load_split
from automoe.data.registry import dataset_folder, get_dataset
from automoe.data.tokenizer import Tokenizer


def task_languages(tasks: Sequence[TranslationTask]) -> tuple[str, ...]:
    """Every language the tasks read or write, in first-seen order."""
    return tuple(dict.fromkeys(lang for task in tasks for lang in (task.src, task.tgt)))


def dataset_tokenizer(
    dataset_dir: str | Path,
    tasks: Sequence[TranslationTask],
    vocab_size: int,
    cache_dir: str | Path,
    name: str = "multi30k",
    **settings: Any,
) -> Tokenizer:
    """The joint tokenizer over the training side of every language the tasks use (cached).

    Tags are made for all the corpus's languages, so a vocabulary trained for en-de still
    carries `<2fr>`/`<2cs>` and ids do not shift when tasks are added.
    """
    spec = get_dataset(name)
    folder = dataset_folder(dataset_dir, spec)
    files = [folder / spec.file_name("train", lang) for lang in task_languages(tasks)]
    settings.setdefault("langs", spec.languages)
    return Tokenizer.train_or_load(files, vocab_size, cache_dir, **settings)


def load_corpus_tasks(
    dataset_dir: str | Path,
    tasks: Sequence[TranslationTask],
    tokenizer: Tokenizer,
    max_len: int,
    splits: Sequence[str] | None = None,
    name: str = "multi30k",
    add_lang_tag: bool = True,
) -> dict[str, list[Example]]:
    """Encoded examples of all tasks for each split; a task's id is its position in `tasks`."""
    chosen = get_dataset(name).splits if splits is None else splits
    examples: dict[str, list[Example]] = {}
    for split in chosen:
        examples[split] = []
        for task_id, task in enumerate(tasks):
            pairs = load_split(dataset_dir, split, task.src, task.tgt, name)
            examples[split] += encode_examples(
                pairs, tokenizer, task, task_id, max_len, add_lang_tag
            )
    return examples
