"""What a search reads before it writes: task ids of the pairs it scores, the task routers in
its parameter counts, and inputs refused before anything lands in the run folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from automoe.errors import AutomoeError
from automoe.runs import RUN_FILE, SUPERNET_FILE
from automoe.scoring import ArchScorer, ScoringSettings


@pytest.fixture(scope="module")
def two_task_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_space_file: Path, train_tiny: Callable[..., Path]
) -> Path:
    """A tiny SuperNet trained on en-de then en-fr: task ids 0 and 1."""
    run = tmp_path_factory.mktemp("two-task") / "run"
    return train_tiny(run, tiny_space_file, pairs="en-de,en-fr", max_steps=5, train_limit=100)


def with_pairs(run: Path, folder: Path, pairs: list[str]) -> Path:
    """The same SuperNet in a run folder whose data settings name other pairs."""
    folder.mkdir()
    (folder / SUPERNET_FILE).symlink_to(run / SUPERNET_FILE)
    settings = json.loads((run / RUN_FILE).read_text())
    settings["data"]["pairs"] = pairs
    (folder / RUN_FILE).write_text(json.dumps(settings))
    return folder


def test_scorer_takes_task_ids_from_the_model_not_the_pair_position(
    two_task_run: Path, tmp_path: Path, data_dir: Path
) -> None:
    run = with_pairs(two_task_run, tmp_path / "fr", ["en-fr"])
    scorer = ArchScorer(ScoringSettings(str(run), valid_size=8, data_dir=str(data_dir)))
    assert {e.task_id for e in scorer.examples} == {1}
    assert all(b.task_ids.tolist() == [1] * len(b.task_ids) for b in scorer.batches)


def test_scorer_refuses_a_pair_the_model_was_not_trained_on(
    two_task_run: Path, tmp_path: Path, data_dir: Path
) -> None:
    run = with_pairs(two_task_run, tmp_path / "cs", ["en-cs"])
    with pytest.raises(AutomoeError, match=r"not trained on 'en-cs'.*en-de.*en-fr"):
        ArchScorer(ScoringSettings(str(run), valid_size=8, data_dir=str(data_dir)))


def test_a_supernet_file_alone_is_scored_on_its_own_pairs(
    two_task_run: Path, tmp_path: Path, data_dir: Path
) -> None:
    alone = tmp_path / "supernet.pt"
    alone.symlink_to(two_task_run / SUPERNET_FILE)
    scorer = ArchScorer(ScoringSettings(str(alone), valid_size=8, data_dir=str(data_dir)))
    assert [t.name for t in scorer.data.tasks] == ["en-de", "en-fr"]
    assert sorted({e.task_id for e in scorer.examples}) == [0, 1]
