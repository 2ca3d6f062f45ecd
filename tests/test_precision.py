"""`--precision`: how it resolves on a machine, and that every command computes and records it.

Tests that need bf16 pretend the CPU has bf16 instructions (torch's CPU autocast runs bf16 on
any x86 CPU, only slower), so they pass on every machine CI may use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from automoe import precision as precision_module
from automoe.errors import AutomoeError
from automoe.evaluate.__main__ import main as evaluate_main
from automoe.extract import main as extract_main
from automoe.latency.__main__ import main as latency_main
from automoe.precision import Precision, resolve_precision
from automoe.predictors import CostPredictor
from automoe.search.__main__ import main as search_main
from automoe.supernet.model import load_checkpoint_file
from automoe.train import trainer as trainer_module
from automoe.train.__main__ import main as train_main
from automoe.translate import main as translate_main


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_instructions", lambda: "avx512_bf16")


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_instructions", lambda: None)


def test_fp32_is_taken_as_asked(no_bf16_cpu: None) -> None:
    chosen = resolve_precision("fp32")
    assert (chosen.name, chosen.dtype, chosen.notice()) == ("fp32", torch.float32, None)


def test_bf16_without_bf16_instructions_falls_back_to_fp32_saying_why(no_bf16_cpu: None) -> None:
    for requested in ("bf16", "auto"):
        chosen = resolve_precision(requested)
        assert chosen.name == "fp32"
        assert "no bf16 instructions" in chosen.notice()


def test_auto_takes_bf16_only_where_it_times_faster(bf16_cpu: None) -> None:
    fast = resolve_precision("auto", speedup=lambda dtype, device: 2.4)
    slow = resolve_precision("auto", speedup=lambda dtype, device: 1.05)
    assert fast.name == "bf16" and "2.4x" in fast.reason
    assert slow.name == "fp32" and "only 1.05x" in slow.reason
    assert resolve_precision("bf16").name == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8")


def test_autocast_runs_matmuls_in_bf16_and_keeps_fp32_for_fp32(bf16_cpu: None) -> None:
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with resolve_precision("bf16").autocast():
        assert (x @ w).dtype == torch.bfloat16
    with resolve_precision("fp32").autocast():
        assert (x @ w).dtype == torch.float32


def test_bf16_training_records_its_precision_and_tracks_fp32(
    bf16_cpu: None,
    tmp_path: Path,
    tiny_space_file: Path,
    train_tiny: Callable[..., Path],
) -> None:
    """Same seed and data: bf16 follows the fp32 loss curve closely, and resumes exactly."""
    fp32 = train_tiny(tmp_path / "fp32", tiny_space_file, max_steps=12, log_every=4)
    whole = train_tiny(
        tmp_path / "bf16", tiny_space_file, max_steps=12, log_every=4, precision="bf16"
    )
    split = train_tiny(
        tmp_path / "split", tiny_space_file, max_steps=12, log_every=4, precision="bf16", stop_at=6
    )
    assert train_main([f"--run={split}", "--resume", "--no-progress"]) == 0

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    run_file = json.loads((whole / "run.json").read_text())
    assert run_file["train"]["precision"] == "bf16"
    assert run_file["precision"]["precision"] == "bf16"
    state = load_checkpoint_file(whole / "checkpoint.pt")
    assert state["precision"]["precision"] == "bf16"
    assert losses(whole) != losses(fp32)  # bf16 really ran
    assert losses(whole) == pytest.approx(losses(fp32), rel=0.02)
    assert losses(split) == losses(whole)


def test_training_falls_back_to_fp32_on_a_cpu_without_bf16(
    no_bf16_cpu: None,
    tmp_path: Path,
    tiny_space_file: Path,
    train_tiny: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = train_tiny(tmp_path / "run", tiny_space_file, max_steps=2, precision="bf16")
    assert "precision: fp32 (this CPU has no bf16 instructions" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["precision"]["precision"] == "fp32"


def test_evaluate_and_translate_in_bf16(
    bf16_cpu: None,
    tmp_path: Path,
    tiny_run: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = [f"--model={tiny_run}", f"--data-dir={data_dir}", "--limit=20", "--beam=2"]
    figures = {}
    for name in ("fp32", "bf16"):
        out = tmp_path / f"{name}.json"
        assert evaluate_main([*common, f"--precision={name}", f"--out={out}"]) == 0
        figures[name] = json.loads(out.read_text())
    assert figures["bf16"]["precision"]["precision"] == "bf16"
    assert figures["fp32"]["precision"]["precision"] == "fp32"
    bf16, fp32 = figures["bf16"]["results"][0], figures["fp32"]["results"][0]
    assert bf16["precision"] == "bf16"
    assert bf16["loss"] != fp32["loss"]
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.02)
    capsys.readouterr()
    assert translate_main(["a dog runs .", f"--model={tiny_run}", "--precision=bf16"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1  # the translation alone; the notice goes to stderr
    assert "precision: bf16" in captured.err


def test_search_scores_in_its_precision_and_records_it(
    bf16_cpu: None, tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    losses = {}
    for name in ("fp32", "bf16"):
        run = tmp_path / name
        args = [
            "--strategy=random",
            f"--supernet={tiny_run}",
            f"--run={run}",
            f"--data-dir={data_dir}",
            "--valid-size=20",
            "--evaluations=6",
            "--objectives=loss",
            "--threads=1",
            "--no-progress",
            f"--precision={name}",
        ]
        assert search_main(args) == 0
        summary = json.loads((run / "summary.json").read_text())
        assert summary["precision"]["precision"] == name
        assert json.loads((run / "search.json").read_text())["precision_used"]["precision"] == name
        rows = [json.loads(r) for r in (run / "evaluations.jsonl").read_text().splitlines()]
        losses[name] = {r["arch_key"]: r["loss"] for r in rows}
    assert losses["fp32"].keys() == losses["bf16"].keys()  # same seed: same architectures
    for key, loss in losses["fp32"].items():
        assert losses["bf16"][key] == pytest.approx(loss, rel=0.02)
    assert losses["bf16"] != losses["fp32"]


def test_a_model_saved_in_bf16_is_half_the_file_and_translates_as_bf16_does(
    bf16_cpu: None, tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {}
    for weights in ("fp32", "bf16"):
        files[weights] = tmp_path / f"{weights}.pt"
        args = [f"--model={tiny_run}", "--arch=largest", f"--out={files[weights]}"]
        assert extract_main([*args, f"--weights={weights}"]) == 0
    saved = load_checkpoint_file(files["bf16"])

    def weight_bytes(path: Path) -> int:
        state = load_checkpoint_file(path)["state_dict"]
        return sum(t.numel() * t.element_size() for t in state.values())

    assert 0.5 < weight_bytes(files["bf16"]) / weight_bytes(files["fp32"]) < 0.55
    assert saved["weights"] == "bf16"
    dtypes = {t.dim() >= 2: t.dtype for t in saved["state_dict"].values()}
    assert dtypes == {True: torch.bfloat16, False: torch.float32}
    sources = ["a dog runs on the grass .", "two men are talking .", "a girl in a red dress ."]

    def translate(path: Path, precision: str) -> str:
        capsys.readouterr()
        assert translate_main([*sources, f"--model={path}", f"--precision={precision}"]) == 0
        return capsys.readouterr().out

    assert translate(files["bf16"], "bf16") == translate(files["fp32"], "bf16")
    assert translate(files["bf16"], "fp32").count("\n") == len(sources)


def test_a_search_refuses_a_predictor_of_another_precision_unless_asked(
    bf16_cpu: None, tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    """Latencies measured in bf16 would decide an fp32 search's constraints wrongly."""
    table = tmp_path / "latency.csv"
    measured = [
        "dataset",
        f"--out={table}",
        f"--supernet={tiny_run}",
        f"--data-dir={data_dir}",
        "--count=8",
        "--runs=2",
        "--warmup=0",
        "--threads=1",
        "--precision=bf16",
        "--no-progress",
    ]
    assert latency_main(measured) == 0
    predictor = tmp_path / "latency.predictor"
    CostPredictor(model="linear", cv=None).fit_csv(table).save(predictor)
    args = [
        "--strategy=random",
        f"--supernet={tiny_run}",
        f"--predictor={predictor}",
        f"--data-dir={data_dir}",
        "--valid-size=10",
        "--evaluations=3",
        "--objectives=loss,latency_ms",
        "--threads=1",
        "--no-progress",
    ]
    with pytest.raises(AutomoeError, match=r"bf16.*fp32|fp32.*bf16"):
        search_main([*args, f"--run={tmp_path / 'fp32'}"])
    assert not (tmp_path / "fp32").exists()
    assert search_main([*args, f"--run={tmp_path / 'bf16'}", "--precision=bf16"]) == 0
    run = tmp_path / "mixed"
    assert search_main([*args, f"--run={run}", "--allow-precision-mismatch"]) == 0
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 3


def test_fp16_trains_with_loss_scaling_and_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_space_file: Path,
    train_tiny: Callable[..., Path],
) -> None:
    """The CUDA-without-bf16 path (fp16 + GradScaler), exercised on the CPU: the scaler's
    state is checkpointed, so a resumed run equals an uninterrupted one."""
    fp16 = Precision("fp16", "cpu", "auto", "a device without bf16 (test)")
    monkeypatch.setattr(trainer_module, "resolve_precision", lambda requested, device: fp16)
    whole = train_tiny(tmp_path / "whole", tiny_space_file, max_steps=8, log_every=2)
    split = train_tiny(tmp_path / "split", tiny_space_file, max_steps=8, log_every=2, stop_at=4)
    state = load_checkpoint_file(split / "checkpoint.pt")
    assert state["precision"]["precision"] == "fp16" and "scale" in state["grad_scaler"]
    assert train_main([f"--run={split}", "--resume", "--no-progress"]) == 0

    def losses(run: Path) -> list[float]:
        return [
            json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
        ]

    assert all(math.isfinite(x) for x in losses(whole))
    assert losses(split) == losses(whole)
