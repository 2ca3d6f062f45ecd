"""Turning sentence pairs into padded tensor batches under a token budget.

Batches are sized by tokens, not sentences, so memory per step stays flat whatever the
sentence lengths; length bucketing keeps padding low. Examples of different tasks mix freely:
each carries its own task id and `<2xx>` tag, so one-to-many training uses the same path.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch.nn.utils.rnn import pad_sequence

from automoe.data.corpus import TranslationTask
from automoe.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from automoe.errors import AutomoeError


class BatchingError(AutomoeError, ValueError):
    """Batching settings or sentences that cannot form a batch."""


@dataclass(frozen=True)
class Example:
    """One encoded pair: source ids (tag included), target ids (no bos/eos), task index."""

    src: tuple[int, ...]
    tgt: tuple[int, ...]
    task_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", tuple(self.src))
        object.__setattr__(self, "tgt", tuple(self.tgt))
        if not self.src:
            raise ValueError("Example.src must hold at least one token")

    @property
    def src_len(self) -> int:
        """Encoder positions this example needs."""
        return len(self.src)

    @property
    def tgt_len(self) -> int:
        """Decoder positions this example needs (target plus bos/eos)."""
        return len(self.tgt) + 1


@dataclass(frozen=True)
class Batch:
    """Padded tensors for one training step; masks are True at padding.

    `indices` are the positions of the rows in the example list they came from, so outputs
    can be put back in corpus order after a bucketed pass.
    """

    src_tokens: torch.Tensor  # [B, S] long
    src_padding_mask: torch.Tensor  # [B, S] bool
    prev_output_tokens: torch.Tensor  # [B, T] long: bos + target
    target: torch.Tensor  # [B, T] long: target + eos
    tgt_padding_mask: torch.Tensor  # [B, T] bool
    task_ids: torch.Tensor  # [B] long
    indices: torch.Tensor  # [B] long
    num_tokens: int  # non-padding target tokens

    def __len__(self) -> int:
        return int(self.src_tokens.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor on `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def encode_examples(
    pairs: Iterable[tuple[str, str]],
    tokenizer: Tokenizer,
    task: TranslationTask,
    task_id: int,
    max_len: int,
    add_lang_tag: bool = True,
) -> list[Example]:
    """Encode pairs of one task, truncating so source and bos/eos-extended target fit `max_len`.

    With `add_lang_tag` the source starts with the target language's `<2xx>` tag.
    """
    if max_len < 2:
        raise BatchingError(f"max_len must be at least 2 (a token plus bos/eos), got {max_len}")
    tag = [tokenizer.lang_tag_id(task.tgt)] if add_lang_tag else []
    examples = []
    for number, (src, tgt) in enumerate(pairs, start=1):
        src_ids = (tag + tokenizer.encode(src))[:max_len]
        if not src_ids:
            raise BatchingError(
                f"{task.name} pair {number}: source {src!r} encodes to no tokens; remove it"
            )
        examples.append(
            Example(tuple(src_ids), tuple(tokenizer.encode(tgt)[: max_len - 1]), task_id)
        )
    return examples


def collate(
    examples: Sequence[Example],
    pad_id: int = PAD_ID,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    indices: Sequence[int] | None = None,
) -> Batch:
    """Pad examples into one Batch; `indices` default to 0..B-1."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    src = [torch.tensor(e.src, dtype=torch.long) for e in examples]
    prev = [torch.tensor((bos_id, *e.tgt), dtype=torch.long) for e in examples]
    target = [torch.tensor((*e.tgt, eos_id), dtype=torch.long) for e in examples]
    src_lens = torch.tensor([e.src_len for e in examples])
    tgt_lens = torch.tensor([e.tgt_len for e in examples])
    src_tokens = pad_sequence(src, batch_first=True, padding_value=pad_id)
    target_tokens = pad_sequence(target, batch_first=True, padding_value=pad_id)
    return Batch(
        src_tokens=src_tokens,
        src_padding_mask=torch.arange(src_tokens.shape[1])[None, :] >= src_lens[:, None],
        prev_output_tokens=pad_sequence(prev, batch_first=True, padding_value=pad_id),
        target=target_tokens,
        tgt_padding_mask=torch.arange(target_tokens.shape[1])[None, :] >= tgt_lens[:, None],
        task_ids=torch.tensor([e.task_id for e in examples], dtype=torch.long),
        indices=torch.tensor(range(len(examples)) if indices is None else list(indices)),
        num_tokens=int(tgt_lens.sum()),
    )


def make_batches(
    examples: Sequence[Example],
    max_tokens: int,
    seed: int = 0,
    shuffle: bool = True,
    bucket: bool = True,
    epoch: int = 0,
) -> list[list[int]]:
    """Group example indices into batches whose padded source and target each fit `max_tokens`.

    With `bucket`, examples are sorted by length (ties in seeded random order) and cut into
    batches greedily; with `shuffle`, the batch order is shuffled by (seed, epoch). An example
    longer than the budget gets a batch of its own instead of being dropped.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise BatchingError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    if bucket:
        lengths = [(max(e.src_len, e.tgt_len), e.src_len) for e in examples]
        order.sort(key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    max_len = 0
    for index in order:
        example = examples[index]
        longest = max(max_len, example.src_len, example.tgt_len)
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current, longest = [], max(example.src_len, example.tgt_len)
        current.append(index)
        max_len = longest
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def task_shares(sizes: Sequence[int], temperature: float) -> list[float]:
    """Sampling shares of tasks of `sizes` examples: p_i proportional to n_i ** (1 / T).

    T = 1 keeps the data's own proportions, larger T flattens them, T = inf is balanced.
    """
    if not temperature > 0:
        raise BatchingError(
            f"task temperature must be positive (inf = balanced), got {temperature}"
        )
    if any(n <= 0 for n in sizes):
        raise BatchingError(f"every task needs examples to sample from, got sizes {list(sizes)}")
    weights = [n ** (1.0 / temperature) for n in sizes]
    return [w / sum(weights) for w in weights]


def resample_tasks(
    examples: Sequence[Example], temperature: float, rng: random.Random
) -> list[int]:
    """Indices of one epoch: as many examples as given, each task drawn at its share.

    A task drawn more often than it has examples is repeated in whole shuffled passes, so no
    example of it is seen twice before every one of them is seen once.
    """
    by_task: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        by_task.setdefault(example.task_id, []).append(index)
    tasks = sorted(by_task)
    shares = task_shares([len(by_task[t]) for t in tasks], temperature)
    chosen: list[int] = []
    for task, share in zip(tasks, shares, strict=True):
        pool, wanted = by_task[task], max(1, round(share * len(examples)))
        while wanted > 0:
            order = rng.sample(pool, len(pool))
            chosen += order[:wanted]
            wanted -= len(order)
    return chosen


class TokenBatcher:
    """Epoch-by-epoch Batches over a fixed list of examples (any mix of tasks).

    With `task_temperature`, each epoch resamples the tasks to temperature-based shares (see
    `task_shares`) instead of using every example once.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        max_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        bucket: bool = True,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        task_temperature: float | None = None,
    ) -> None:
        self.examples = list(examples)
        self.max_tokens = max_tokens
        self.task_temperature = task_temperature
        self.seed = seed
        self.shuffle = shuffle
        self.bucket = bucket
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def batch_indices(self, epoch: int = 0) -> list[list[int]]:
        """Example indices of each batch of `epoch`, in the order they are served."""
        if self.task_temperature is None:
            return make_batches(
                self.examples, self.max_tokens, self.seed, self.shuffle, self.bucket, epoch
            )
        rng = random.Random(f"tasks:{self.seed}:{epoch}")
        drawn = resample_tasks(self.examples, self.task_temperature, rng)
        batches = make_batches(
            [self.examples[i] for i in drawn],
            self.max_tokens,
            self.seed,
            self.shuffle,
            self.bucket,
            epoch,
        )
        return [[drawn[i] for i in batch] for batch in batches]

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        """Collated batches of `epoch`; the same epoch and seed always give the same batches."""
        for indices in self.batch_indices(epoch):
            chosen = [self.examples[i] for i in indices]
            yield collate(chosen, self.pad_id, self.bos_id, self.eos_id, indices)
