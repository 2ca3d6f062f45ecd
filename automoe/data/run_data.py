"""A run folder's data: corpus lookup, the joint tokenizer, encoded examples and batches.

Training, evaluation and search all read a run's data the same way, through `RunData`, so the
validation subset a search scores architectures on is the one training validated on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automoe.data import (
    Batch,
    Example,
    TokenBatcher,
    Tokenizer,
    TranslationTask,
    cache_root,
    dataset_tokenizer,
    encode_examples,
    get_dataset,
    load_split,
    resolve_dataset_dir,
)
from automoe.data.tokenizer import MODEL_FILE
from automoe.errors import AutomoeError

TOKENIZER_FILE = MODEL_FILE


@dataclass
class DataSettings:
    """Which corpus and tasks a run uses and how they are cut into batches."""

    dataset: str = "multi30k"
    pairs: tuple[str, ...] = ("en-de",)
    vocab_size: int = 8000
    max_len: int = 64
    max_tokens: int = 4096
    train_limit: int = 0
    valid_size: int = 500
    seed: int = 1
    task_temperature: float = 1.0

    def __post_init__(self) -> None:
        self.pairs = tuple(self.pairs)
        if not self.pairs:
            raise AutomoeError("no translation pair given; use e.g. --pairs en-de")
        for name, value in (
            ("vocab_size", self.vocab_size),
            ("max_len", self.max_len),
            ("max_tokens", self.max_tokens),
            ("valid_size", self.valid_size),
        ):
            if value <= 0:
                raise AutomoeError(f"{name} must be positive, got {value}")
        if not self.task_temperature > 0:
            raise AutomoeError(
                f"task_temperature must be positive (1 = data proportions, inf = balanced), "
                f"got {self.task_temperature}"
            )
        if self.train_limit < 0:
            raise AutomoeError(f"train_limit must be 0 (all) or positive, got {self.train_limit}")

    @property
    def tasks(self) -> list[TranslationTask]:
        return [TranslationTask.parse(p) for p in self.pairs]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pairs"] = list(self.pairs)
        return out


class RunData:
    """Tokenizer, examples and batches of one run; the corpus is read once, lazily."""

    def __init__(
        self,
        settings: DataSettings,
        data_dir: str | Path | None = None,
        tokenizer: Tokenizer | None = None,
        cache_dir: str | Path | None = None,
        task_ids: Sequence[int] | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = settings.tasks
        # The id each task's examples carry: a trained model's own ids (`runs.task_ids_for`),
        # never the pair's position in this run's list; positions when training a new model.
        self.task_ids = list(range(len(self.tasks))) if task_ids is None else list(task_ids)
        if len(self.task_ids) != len(self.tasks):
            raise AutomoeError(
                f"{len(self.task_ids)} task ids for {len(self.tasks)} pairs {settings.pairs}"
            )
        self.dataset_dir = resolve_dataset_dir(settings.dataset, data_dir)
        spec = get_dataset(settings.dataset)
        for task in self.tasks:
            for lang in (task.src, task.tgt):
                if lang not in spec.languages:
                    raise AutomoeError(
                        f"{settings.dataset} has no language {lang!r} (pair {task.name}); "
                        f"languages: {list(spec.languages)}"
                    )
        if tokenizer is None:
            cache = Path(cache_dir) if cache_dir else cache_root().parent / "tokenizers"
            tokenizer = dataset_tokenizer(
                self.dataset_dir, self.tasks, settings.vocab_size, cache, settings.dataset
            )
        self.tokenizer = tokenizer
        self._examples: dict[str, list[list[Example]]] = {}

    def pairs(self, split: str, task: TranslationTask) -> list[tuple[str, str]]:
        return load_split(self.dataset_dir, split, task.src, task.tgt, self.settings.dataset)

    def examples(self, split: str) -> list[Example]:
        """Encoded examples of every task; train is cut to `train_limit` per task if set."""
        return [e for i in range(len(self.tasks)) for e in self.task_examples(split, i)]

    def task_examples(self, split: str, position: int) -> list[Example]:
        """The encoded examples of the task at `position` of this run's pairs."""
        if split not in self._examples:
            limit = self.settings.train_limit if split == "train" else 0
            per_task = []
            for task, task_id in zip(self.tasks, self.task_ids, strict=True):
                pairs = self.pairs(split, task)
                if limit:
                    pairs = pairs[:limit]
                per_task.append(
                    encode_examples(pairs, self.tokenizer, task, task_id, self.settings.max_len)
                )
            self._examples[split] = per_task
        return self._examples[split][position]

    def train_batcher(self) -> TokenBatcher:
        """Training batches; several tasks are mixed at `task_temperature` shares."""
        return TokenBatcher(
            self.examples("train"),
            self.settings.max_tokens,
            seed=self.settings.seed,
            task_temperature=self.settings.task_temperature if len(self.tasks) > 1 else None,
        )

    def valid_examples(self, size: int | None = None) -> list[Example]:
        """The fixed validation subset: the first `size` sentences of every task."""
        size = size or self.settings.valid_size
        return [e for i in range(len(self.tasks)) for e in self.task_examples("val", i)[:size]]

    def valid_references(self, size: int | None = None) -> list[str]:
        """Reference translations of `valid_examples(size)`, in the same order."""
        size = size or self.settings.valid_size
        return [tgt for task in self.tasks for _, tgt in self.pairs("val", task)[:size]]

    def valid_batches(self, size: int | None = None) -> list[Batch]:
        """The validation subset bucketed into batches, unshuffled."""
        batcher = TokenBatcher(self.valid_examples(size), self.settings.max_tokens, shuffle=False)
        return list(batcher.batches())
