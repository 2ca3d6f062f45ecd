"""What a search reads before it writes: task ids of the pairs it scores, the task routers in
its parameter counts, and inputs refused before anything lands in the run folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY_SPACE

from automoe.cost import count_params
from automoe.errors import AutomoeError
from automoe.runs import RUN_FILE, SUPERNET_FILE, load_model_file
from automoe.search.__main__ import main as search_main
from automoe.search.scoring import ArchScorer, ScoringSettings
from automoe.space import ArchConfig

TASK_SPACE = (
    TINY_SPACE.replace("name: tiny", "name: tiny-task")
    .replace("  experts: [1, 2]\n", "  experts: [2]\n")
    .replace("  top_k: [1]\n", "  top_k: [1]\n  routing: [task]\n")
)


@pytest.fixture(scope="module")
def two_task_run(tmp_path_factory: pytest.TempPathFactory, train_tiny: Callable[..., Path]) -> Path:
    """A tiny SuperNet with task routers, trained on en-de then en-fr: task ids 0 and 1."""
    folder = tmp_path_factory.mktemp("two-task")
    space = folder / "space.yaml"
    space.write_text(TASK_SPACE)
    return train_tiny(folder / "run", space, pairs="en-de,en-fr", max_steps=5, train_limit=100)


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


def test_search_params_count_the_task_routers(
    two_task_run: Path, tmp_path: Path, data_dir: Path
) -> None:
    run = tmp_path / "search"
    args = [
        f"--supernet={two_task_run}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--strategy=random",
        "--objectives=loss",
        "--evaluations=3",
        "--valid-size=8",
        "--threads=1",
        "--no-progress",
    ]
    assert search_main(args) == 0
    vocab = load_model_file(two_task_run)[0].config.vocab_size
    for line in (run / "evaluations.jsonl").read_text().splitlines():
        row = json.loads(line)
        arch = ArchConfig.from_dict(row["arch"])
        expected = count_params(arch, qkv_dim=32, vocab_size=vocab, num_tasks=2)
        assert row["params"] == expected.without_embeddings


def test_a_refused_search_writes_nothing(
    tmp_path: Path, tiny_run: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    wider = tmp_path / "wider.yaml"
    wider.write_text(
        tiny_space_file.read_text().replace("embed_dim: [24, 32]", "embed_dim: [24, 48]")
    )
    cases = [
        (["--strategy=evolution", "--option=population=0"], "population"),
        (["--strategy=random", "--option=colour=red"], "no option"),
        (["--strategy=random", "--constraint=flops<=10"], "cannot be met"),
        (["--strategy=random", f"--space={wider}"], "within the SuperNet"),
        (["--strategy=random", f"--predictor={tmp_path / 'missing'}"], "missing"),
    ]
    for i, (extra, needle) in enumerate(cases):
        run = tmp_path / f"run{i}"
        args = [
            f"--supernet={tiny_run}",
            f"--run={run}",
            f"--data-dir={data_dir}",
            "--objectives=loss",
            "--valid-size=8",
            "--threads=1",
            "--no-progress",
            *extra,
        ]
        with pytest.raises(AutomoeError, match=needle):
            search_main(args)
        assert not run.exists(), extra


def test_a_refused_resume_leaves_the_run_as_it_was(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    run = tmp_path / "run"
    args = [
        f"--supernet={tiny_run}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--strategy=random",
        "--objectives=loss",
        "--valid-size=8",
        "--threads=1",
        "--no-progress",
    ]
    assert search_main([*args, "--evaluations=4"]) == 0
    (run / "strategy_state.json").write_text("{torn")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(AutomoeError, match="corrupt"):
        search_main([*args, "--resume", "--evaluations=8"])
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
