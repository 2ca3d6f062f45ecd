"""The default stages of `python -m automoe.search`: built once, then reused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from automoe.errors import AutomoeError
from automoe.predictors import CostPredictor
from automoe.runs import load_model_file
from automoe.search.__main__ import main as search_main
from automoe.search.pipeline import PipelineSettings, ensure_predictor, ensure_supernet
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.supernet import SuperNet
from automoe.train.__main__ import main as train_main


def test_default_search_pipeline_on_a_routed_space_builds_once_and_reuses(
    tmp_path: Path, data_dir: Path, routed_space_file: Path
) -> None:
    """Token-, sentence- and task-routed architectures are trained, measured, predicted and
    searched; `--latency measured` times them as well."""
    settings = PipelineSettings(
        workdir=tmp_path / "work",
        space=str(routed_space_file),
        data_dir=str(data_dir),
        train_steps=2,
        latency_archs=8,
        latency_runs=1,
        threads=1,
    )
    supernet = ensure_supernet(settings, progress=False)
    net, _ = load_model_file(supernet)
    assert isinstance(net, SuperNet) and net.space.name == "tiny-routed"
    predictor_path = ensure_predictor(settings, str(supernet), progress=False)
    predictor = CostPredictor.load(predictor_path)
    assert predictor.predict_archs([net.space.smallest()])[0] > 0
    with settings.latency_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    modes = {m for row in rows for m in ArchConfig.from_json(row["arch"]).routing_modes}
    assert modes == {"token", "sentence", "task"}
    stamps = {p: p.stat().st_mtime_ns for p in (supernet / "supernet.pt", predictor_path)}
    assert ensure_supernet(settings, progress=False) == supernet
    assert ensure_predictor(settings, str(supernet), progress=False) == predictor_path
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    common = [
        f"--space={routed_space_file}",
        f"--data-dir={data_dir}",
        "--strategy=random",
        "--evaluations=4",
        "--batch=4",
        "--valid-size=5",
        "--threads=1",
        "--no-progress",
    ]
    searched = tmp_path / "search"
    assert search_main([*common, f"--workdir={settings.workdir}", f"--run={searched}"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    timed = tmp_path / "timed"
    measured = [*common, f"--supernet={supernet}", "--latency=measured", f"--run={timed}"]
    assert search_main(measured) == 0
    for run in (searched, timed):
        evaluations = [json.loads(line) for line in (run / "evaluations.jsonl").open()]
        assert len(evaluations) == 4 and all(e["latency_ms"] > 0 for e in evaluations)


def test_a_work_folder_of_another_space_is_refused(
    tmp_path: Path, data_dir: Path, tiny_space_file: Path
) -> None:
    run = tmp_path / "work" / "supernet"
    run.mkdir(parents=True)
    space = SearchSpace.load(tiny_space_file).to_dict()
    (run / "run.json").write_text(json.dumps({"space": space}))
    other = PipelineSettings(workdir=tmp_path / "work", data_dir=str(data_dir))
    with pytest.raises(AutomoeError, match=r"holds the stages of space 'tiny'.*another --workdir"):
        ensure_supernet(other, progress=False)


def test_interrupted_training_stage_resumes(tmp_path: Path, data_dir: Path) -> None:
    settings = PipelineSettings(workdir=tmp_path / "work", data_dir=str(data_dir), train_steps=3)
    run = settings.supernet_dir
    flags = [
        f"--run={run}",
        f"--data-dir={data_dir}",
        "--max-steps=3",
        "--warmup-steps=100",
        "--validate-every=200",
        "--checkpoint-every=50",
        "--threads=1",
        "--no-progress",
    ]
    assert train_main([*flags, "--stop-at=1"]) == 0
    assert not (run / "supernet.pt").exists()
    assert ensure_supernet(settings, progress=False) == run
    assert (run / "supernet.pt").is_file()
