"""Token-budget batching: budget, coverage, padding, determinism and mixed-task batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.data.batching import (
    Batch,
    BatchingError,
    Example,
    TokenBatcher,
    collate,
    encode_examples,
    make_batches,
    task_shares,
)
from automoe.data.corpus import TranslationTask, load_split, read_lines
from automoe.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

token = st.integers(min_value=4, max_value=999)
examples_strategy = st.lists(
    st.builds(
        Example,
        src=st.lists(token, min_size=1, max_size=40),
        tgt=st.lists(token, min_size=0, max_size=40),
        task_id=st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=60,
)


@pytest.fixture(scope="module")
def tok(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    folder = data_dir / "multi30k"
    texts = {lang: read_lines(folder / f"train.{lang}.gz")[:3000] for lang in ("en", "de")}
    return Tokenizer.train_or_load(texts, 800, tmp_path_factory.mktemp("spm"))


def check_batch(batch: Batch, examples: list[Example]) -> None:
    """Every row of `batch` holds its example exactly, padded and masked correctly."""
    assert batch.src_tokens.dtype == batch.target.dtype == torch.long
    assert batch.src_padding_mask.dtype == batch.tgt_padding_mask.dtype == torch.bool
    assert batch.prev_output_tokens.shape == batch.target.shape == batch.tgt_padding_mask.shape
    assert batch.src_tokens.shape == batch.src_padding_mask.shape
    assert batch.num_tokens == int((~batch.tgt_padding_mask).sum())
    for row, index in enumerate(batch.indices.tolist()):
        ex = examples[index]
        s, t = len(ex.src), len(ex.tgt) + 1
        assert batch.src_tokens[row, :s].tolist() == list(ex.src)
        assert batch.src_padding_mask[row].tolist() == [False] * s + [True] * (
            batch.src_tokens.shape[1] - s
        )
        assert (batch.src_tokens[row, s:] == PAD_ID).all()
        assert batch.prev_output_tokens[row, :t].tolist() == [BOS_ID, *ex.tgt]
        assert batch.target[row, :t].tolist() == [*ex.tgt, EOS_ID]
        assert batch.tgt_padding_mask[row].tolist() == [False] * t + [True] * (
            batch.target.shape[1] - t
        )
        assert (batch.target[row, t:] == PAD_ID).all()
        assert (batch.prev_output_tokens[row, t:] == PAD_ID).all()
        assert batch.task_ids[row].item() == ex.task_id


@settings(max_examples=60, deadline=None)
@given(
    examples=examples_strategy,
    max_tokens=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**31),
    epoch=st.integers(min_value=0, max_value=5),
    shuffle=st.booleans(),
    bucket=st.booleans(),
)
def test_batches_cover_examples_within_budget(
    examples: list[Example], max_tokens: int, seed: int, epoch: int, shuffle: bool, bucket: bool
) -> None:
    batches = make_batches(examples, max_tokens, seed, shuffle, bucket, epoch)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))
    for indices in batches:
        longest = max(max(examples[i].src_len, examples[i].tgt_len) for i in indices)
        assert len(indices) * longest <= max_tokens or len(indices) == 1
    assert make_batches(examples, max_tokens, seed, shuffle, bucket, epoch) == batches


@settings(max_examples=40, deadline=None)
@given(examples=examples_strategy, max_tokens=st.integers(min_value=40, max_value=300))
def test_collated_batches_hold_examples_with_correct_masks(
    examples: list[Example], max_tokens: int
) -> None:
    batcher = TokenBatcher(examples, max_tokens, seed=3)
    seen = []
    for batch in batcher.batches(epoch=1):
        check_batch(batch, examples)
        assert batch.src_tokens.shape[1] * len(batch) <= max_tokens or len(batch) == 1
        assert batch.target.shape[1] * len(batch) <= max_tokens or len(batch) == 1
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(len(examples)))


def test_seed_and_epoch_control_the_order() -> None:
    examples = [Example([5] * (1 + i % 17), [6] * (i % 13), 0) for i in range(300)]
    epoch0 = make_batches(examples, 64, seed=1, epoch=0)
    assert make_batches(examples, 64, seed=1, epoch=0) == epoch0
    assert make_batches(examples, 64, seed=1, epoch=1) != epoch0
    assert make_batches(examples, 64, seed=2, epoch=0) != epoch0


def test_unshuffled_buckets_are_sorted_and_reproducible() -> None:
    examples = [Example([5] * (1 + (7 * i) % 23), [6] * ((5 * i) % 19), 0) for i in range(100)]
    batches = make_batches(examples, 80, seed=0, shuffle=False)
    longest = [max(max(examples[i].src_len, examples[i].tgt_len) for i in b) for b in batches]
    assert longest == sorted(longest)
    assert make_batches(examples, 80, seed=9, shuffle=False) == batches
    in_order = make_batches(examples, 10**6, shuffle=False, bucket=False)
    assert in_order == [list(range(100))]


def test_oversized_example_gets_own_batch() -> None:
    examples = [Example([5] * 3, [6] * 3, 0), Example([5] * 50, [6], 0), Example([5], [6], 0)]
    batches = make_batches(examples, max_tokens=20, shuffle=False)
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2]


def test_bad_budget_is_a_user_error() -> None:
    with pytest.raises(BatchingError, match="max_tokens must be a positive integer"):
        make_batches([Example([5], [6], 0)], 0)


def test_collate_by_hand_and_to_device() -> None:
    batch = collate([Example([7, 8, 9], [10], 2), Example([11], [12, 13, 14], 0)])
    assert batch.src_tokens.tolist() == [[7, 8, 9], [11, 0, 0]]
    assert batch.src_padding_mask.tolist() == [[False, False, False], [False, True, True]]
    assert batch.prev_output_tokens.tolist() == [[2, 10, 0, 0], [2, 12, 13, 14]]
    assert batch.target.tolist() == [[10, 3, 0, 0], [12, 13, 14, 3]]
    assert batch.tgt_padding_mask.tolist() == [[False, False, True, True], [False] * 4]
    assert batch.task_ids.tolist() == [2, 0] and batch.num_tokens == 6 and len(batch) == 2
    moved = batch.to("meta")
    assert moved.src_tokens.device.type == "meta" and moved.num_tokens == 6


def test_encode_examples_tags_and_truncates(tok: Tokenizer) -> None:
    task = TranslationTask("en", "de")
    long = " ".join(["a dog runs"] * 30)
    short, trimmed = encode_examples(
        [("A dog.", "Ein Hund."), (long, long)], tok, task, task_id=4, max_len=16
    )
    de = tok.lang_tag_id("de")
    assert short.src == (de, *tok.encode("A dog.")) and short.tgt == tuple(tok.encode("Ein Hund."))
    assert short.task_id == 4
    assert trimmed.src[0] == de and trimmed.src_len == 16 and trimmed.tgt_len == 16
    (plain,) = encode_examples([("A dog.", "Ein Hund.")], tok, task, 0, 16, add_lang_tag=False)
    assert plain.src == tuple(tok.encode("A dog."))
    with pytest.raises(BatchingError, match=r"en-de pair 2: source '' encodes to no tokens"):
        encode_examples([("a", "b"), ("", "c")], tok, task, 0, 16, add_lang_tag=False)
    with pytest.raises(BatchingError, match="max_len must be at least 2"):
        encode_examples([("a", "b")], tok, task, 0, max_len=1)


def test_mixed_task_batches_carry_their_tags_and_ids(tok: Tokenizer, data_dir: Path) -> None:
    tasks = [TranslationTask.parse(name) for name in ("en-de", "en-fr", "en-cs")]
    examples: list[Example] = []
    for task_id, task in enumerate(tasks):
        pairs = load_split(data_dir, "val", task.src, task.tgt)[:100]
        examples += encode_examples(pairs, tok, task, task_id, max_len=64)
    tag_of_task = {i: tok.lang_tag_id(t.tgt) for i, t in enumerate(tasks)}
    mixed = 0
    for batch in TokenBatcher(examples, max_tokens=1024, seed=7).batches(epoch=2):
        check_batch(batch, examples)
        for row in range(len(batch)):
            assert batch.src_tokens[row, 0].item() == tag_of_task[batch.task_ids[row].item()]
        mixed += len(set(batch.task_ids.tolist())) > 1
    assert mixed > 0


# ----------------------------------------------------------------- multilingual task sampling


def test_task_shares_follow_the_temperature() -> None:
    assert task_shares([300, 100], 1.0) == pytest.approx([0.75, 0.25])
    assert task_shares([300, 100], float("inf")) == pytest.approx([0.5, 0.5])
    flat = task_shares([300, 100], 5.0)
    assert 0.5 < flat[0] < 0.75
    with pytest.raises(BatchingError, match="temperature must be positive"):
        task_shares([3, 1], 0.0)


def unequal_tasks() -> list[Example]:
    big = [Example((5, 6, i % 7 + 4), (7, i % 5 + 4), 0) for i in range(300)]
    small = [Example((5, i % 3 + 4), (8,), 1) for i in range(40)]
    return big + small


@pytest.mark.parametrize("temperature", [1.0, 2.0, float("inf")])
def test_batcher_draws_each_task_at_its_share(temperature: float) -> None:
    examples = unequal_tasks()
    batcher = TokenBatcher(examples, 64, seed=3, task_temperature=temperature)
    drawn = [i for batch in batcher.batch_indices(epoch=2) for i in batch]
    small = sum(examples[i].task_id == 1 for i in drawn)
    expected = task_shares([300, 40], temperature)[1] * len(examples)
    assert abs(small - expected) <= 1
    assert len(drawn) == pytest.approx(len(examples), abs=1)
    assert drawn == [i for b in batcher.batch_indices(epoch=2) for i in b]
    assert drawn != [i for b in batcher.batch_indices(epoch=3) for i in b]
    # a repeated task is seen in whole passes: counts differ by at most one
    counts = torch.bincount(torch.tensor([i for i in drawn if i >= 300]) - 300)
    assert int(counts.max() - counts.min()) <= 1
    for batch in batcher.batches(epoch=2):
        assert batch.task_ids.tolist() == [examples[i].task_id for i in batch.indices.tolist()]
