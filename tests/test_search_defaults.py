"""The search's defaults answer a question: evolution's generations fit the budget, the
default objectives give the best model for each latency budget, and the summary says how
the search ended."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from automoe.cost import count_flops
from automoe.predictors import ArchFeatures, CostPredictor
from automoe.runs import load_model_file
from automoe.search.__main__ import main as search_main
from automoe.search.scoring import ArchScorer
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies.evolution import EvolutionarySearch, paper_schedule


def evaluations(schedule: dict[str, int]) -> int:
    children = schedule["mutations"] + schedule["crossovers"]
    return schedule["population"] + (schedule["iterations"] - 1) * children


def test_paper_schedule_keeps_the_papers_proportions_and_iterations() -> None:
    assert paper_schedule(1525, 15) == {
        "population": 125,
        "parents": 25,
        "mutations": 50,
        "crossovers": 50,
        "iterations": 15,
    }
    default = paper_schedule(300, 15)
    assert default == {
        "population": 24,
        "parents": 5,
        "mutations": 10,
        "crossovers": 9,
        "iterations": 15,
    }
    assert evaluations(default) == 290
    for budget in (1, 5, 12, 50, 121, 122, 299, 300, 301, 1000, 5000):
        schedule = paper_schedule(budget, 15)
        assert 0.85 * budget <= evaluations(schedule) <= budget
        assert schedule["parents"] <= schedule["population"]
        bigger = paper_schedule(budget + 60, 15)
        assert bigger["iterations"] >= schedule["iterations"]
    assert paper_schedule(12, 15)["iterations"] == 1  # too small to evolve: random sampling
    assert paper_schedule(300, 30)["iterations"] == 30  # HAT's count, when asked for


def test_evolution_scales_to_its_budget_unless_sizes_are_given() -> None:
    space = SearchSpace.load("multi30k")
    assert len(EvolutionarySearch(space, budget=300).ask(1000)) == 24
    assert len(EvolutionarySearch(space).ask(1000)) == 125
    assert len(EvolutionarySearch(space, budget=300, population=30).ask(1000)) == 30
    evo = EvolutionarySearch(space, budget=50, seed=3)
    rng = random.Random(0)
    while archs := evo.ask(7):
        assert evo.generations[0] < evo.generations[1]
        evo.tell(archs, [(rng.random(),) for _ in archs])
    assert evo.done and evo.generations == (6, 6) and len(evo.history) == 50


@pytest.fixture(scope="module")
def tiny_predictor(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A latency predictor of the tiny space fitted on a made-up latency that grows with
    FLOPs, so latency and loss pull against each other as on a real machine."""
    net = load_model_file(tiny_run)[0]
    rng = random.Random(0)
    archs = [net.space.sample(rng) for _ in range(60)]
    kw = {"qkv_dim": net.config.qkv_dim, "vocab_size": net.config.vocab_size}
    latency = [1 + count_flops(a, **kw).without_output / 1e5 for a in archs]
    predictor = CostPredictor(model="linear", cv=None)
    predictor.fit_archs(archs, latency, ArchFeatures.from_space(net.space))
    path = tmp_path_factory.mktemp("predictor") / "latency.predictor"
    predictor.save(path)
    return path


def search_args(run: Path, tiny_run: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"--supernet={tiny_run}",
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--valid-size=20",
        "--threads=1",
        "--no-progress",
        *extra,
    ]


def test_default_search_is_a_complete_evolution_over_loss_and_latency(
    tmp_path: Path,
    tiny_run: Path,
    tiny_predictor: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "default"
    args = search_args(run, tiny_run, data_dir, f"--predictor={tiny_predictor}")
    assert search_main([*args, "--strategy=evolution", "--evaluations=60"]) == 0
    settings = json.loads((run / "search.json").read_text())
    assert settings["objectives"] == ["loss", "latency_ms"]
    assert settings["options"] == {"budget": 60}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ending"]["strategy_finished"] is True
    assert "finished its schedule (7 of 7 generations)" in summary["ending"]["text"]
    assert summary["evaluations"] == evaluations(paper_schedule(60, 15))
    assert "for each latency_ms budget" in summary["question"]
    front = summary["front"]
    assert len(front) >= 2
    latencies = [p["latency_ms"] for p in front]
    losses = [p["loss"] for p in front]
    assert latencies == sorted(latencies) and losses == sorted(losses, reverse=True)
    assert [p["file"] for p in front] == [f"front/{i + 1:02d}.yaml" for i in range(len(front))]
    for point in front:
        assert ArchConfig.load(run / point["file"]).key() == point["arch_key"]
    assert ArchConfig.load(run / "best.yaml").key() == front[-1]["arch_key"]
    assert summary["best"]["loss"] == min(losses)
    out = capsys.readouterr().out
    assert "finished its schedule" in out and "front/01.yaml" in out
    assert f"front/{len(front):02d}.yaml" in out  # the most accurate point is always shown


def test_summary_says_when_the_budget_cut_the_strategy_short(
    tmp_path: Path, tiny_run: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "short"
    sizes = ["--option=population=10", "--option=parents=4", "--option=mutations=4"]
    args = search_args(run, tiny_run, data_dir, "--strategy=evolution", "--objectives=loss")
    assert search_main([*args, *sizes, "--option=crossovers=4", "--evaluations=14"]) == 0
    ending = json.loads((run / "summary.json").read_text())["ending"]
    assert ending["strategy_finished"] is False and ending["stopped_by"] == "evaluations"
    assert "ended before the strategy was done: generation 2 of 15" in ending["text"]
    assert "generation 2 of 15" in capsys.readouterr().out


def test_scaled_evolution_resumes_exactly_after_an_interruption(
    tmp_path: Path,
    tiny_run: Path,
    tiny_predictor: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = ["--strategy=evolution", f"--predictor={tiny_predictor}", "--batch=4"]
    straight = tmp_path / "straight"
    assert (
        search_main([*search_args(straight, tiny_run, data_dir, *common), "--evaluations=40"]) == 0
    )
    real = ArchScorer.__call__
    calls = []

    def interrupted(self: ArchScorer, arch: ArchConfig) -> dict[str, float]:
        calls.append(arch)
        if len(calls) > 3 + 17:  # the three references, then part of generation 1
            raise KeyboardInterrupt
        return real(self, arch)

    run = tmp_path / "interrupted"
    monkeypatch.setattr(ArchScorer, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        search_main([*search_args(run, tiny_run, data_dir, *common), "--evaluations=40"])
    monkeypatch.setattr(ArchScorer, "__call__", real)
    assert not (run / "summary.json").exists()
    assert 0 < len((run / "evaluations.jsonl").read_text().splitlines()) < 17
    assert search_main([*search_args(run, tiny_run, data_dir, *common), "--resume"]) == 0
    key = ("arch_key", "loss", "latency_ms")
    read = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (straight / "evaluations.jsonl").read_text().splitlines()]
    assert [[r[k] for k in key] for r in read] == [[r[k] for k in key] for r in want]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ending"]["strategy_finished"] is True
