"""The default stages of `python -m automoe.search`: built once, then reused."""

from __future__ import annotations

from pathlib import Path

from automoe.pipeline import PipelineSettings, ensure_predictor, ensure_supernet
from automoe.predictors import CostPredictor
from automoe.runs import load_model_file
from automoe.supernet.supernet import SuperNet
from automoe.train import main as train_main


def test_stages_are_built_once_and_reused(tmp_path: Path, data_dir: Path) -> None:
    settings = PipelineSettings(
        workdir=tmp_path / "work",
        data_dir=str(data_dir),
        train_steps=2,
        latency_archs=6,
        latency_runs=1,
        threads=1,
    )
    supernet = ensure_supernet(settings, progress=False)
    net, _ = load_model_file(supernet)
    assert isinstance(net, SuperNet) and net.space.name == "multi30k"
    predictor_path = ensure_predictor(settings, str(supernet), progress=False)
    predictor = CostPredictor.load(predictor_path)
    assert predictor.predict_archs([net.space.smallest()])[0] > 0
    assert len(settings.latency_csv.read_text().splitlines()) == 7
    stamps = {p: p.stat().st_mtime_ns for p in (supernet / "supernet.pt", predictor_path)}
    assert ensure_supernet(settings, progress=False) == supernet
    assert ensure_predictor(settings, str(supernet), progress=False) == predictor_path
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


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
