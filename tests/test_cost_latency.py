"""Latency measurement (on tiny models) and the latency dataset command."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

from automoe.arch import ArchConfig
from automoe.cost.latency import (
    LatencySettings,
    measure_latency,
    reference_inputs,
    trimmed_mean,
)
from automoe.errors import AutomoeError
from automoe.latency import main as latency_main
from automoe.supernet.model import ModelConfig, Transformer

ARCH = ArchConfig(16, 16, [[32, 16], [32]], [2, 2], [1, 1], [[32, 16]], [2], [2], [2], [1])


def test_trimmed_mean_drops_both_tails() -> None:
    values = [100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, -50.0]
    assert trimmed_mean(values, 0.1) == pytest.approx(4.5)
    assert trimmed_mean(values, 0.0) == pytest.approx(sum(values) / 10)
    assert trimmed_mean([7.0], 0.4) == 7.0


def test_reference_inputs_are_real_text_of_exact_length() -> None:
    sentences = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    out = reference_inputs(sentences, 4, 3)
    stream = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert all(len(x) == 4 for x in out)
    for piece in out:
        text = ",".join(map(str, stream))
        assert ",".join(map(str, piece)) in text
    with pytest.raises(AutomoeError, match="at least 40 tokens"):
        reference_inputs(sentences, 40, 1)


def _counting_model() -> tuple[Transformer, dict[str, int]]:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(50, 16, ARCH)).train()
    calls = {"encode": 0, "decode": 0, "tokens": 0}
    encode, decode = model.encode, model.decode

    def counted_encode(*args, **kwargs):
        calls["encode"] += 1
        assert not torch.is_grad_enabled() and not model.training
        return encode(*args, **kwargs)

    def counted_decode(tokens, *args, **kwargs):
        calls["decode"] += 1
        calls["tokens"] += tokens.shape[1]
        assert tokens.shape[0] == 5 and kwargs.get("cache") is not None
        return decode(tokens, *args, **kwargs)

    model.encode, model.decode = counted_encode, counted_decode  # type: ignore[method-assign]
    return model, calls


def test_protocol_runs_encoder_once_and_incremental_decoder_per_step() -> None:
    model, calls = _counting_model()
    settings = LatencySettings(src_len=6, tgt_len=4, beam=5, warmup=2, runs=3)
    sources = [[4, 5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17]]
    targets = [[20, 21, 22, 23, 24], [25, 26, 27, 28, 29]]
    result = measure_latency(model, sources, targets, settings)
    assert calls["encode"] == 5
    assert calls["decode"] == 5 * 4 and calls["tokens"] == 5 * 4
    assert model.training, "the model's mode is restored"
    assert result.runs == 3
    assert result.latency_ms == pytest.approx(result.encoder_ms + result.decoder_ms)
    assert result.encoder_ms > 0 and result.decoder_ms > 0
    assert result.iqr_ms >= 0 and result.median_ms > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(AutomoeError):
        LatencySettings(runs=0)
    with pytest.raises(AutomoeError):
        LatencySettings(trim=0.5)
    model, _ = _counting_model()
    with pytest.raises(AutomoeError, match="as many target"):
        measure_latency(model, [[4, 5]], [], LatencySettings(src_len=2, tgt_len=2))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_dataset_appends_resumes_and_refuses_other_settings(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path
) -> None:
    out = tmp_path / "lat.csv"
    base = [
        "dataset",
        f"--out={out}",
        f"--space={tiny_space_file}",
        f"--supernet={tiny_run}",
        f"--data-dir={data_dir}",
        "--runs=2",
        "--warmup=0",
        "--threads=1",
        "--no-progress",
    ]
    assert latency_main([*base, "--count=3"]) == 0
    first = _rows(out)
    assert len(first) == 3 and len({r["arch_key"] for r in first}) == 3
    for row in first:
        arch = ArchConfig.from_json(row["arch"])
        assert arch.key() == row["arch_key"]
        assert float(row["latency_ms"]) > 0 and row["weights"] == "trained"
        assert float(row["enc_embed"]) == arch.encoder_embed_dim
    assert latency_main([*base, "--count=5"]) == 0
    second = _rows(out)
    assert second[:3] == first and len(second) == 5
    meta = json.loads(out.with_suffix(".csv.json").read_text())
    assert meta["protocol"]["runs"] == 2 and meta["weights"] == "trained"
    with pytest.raises(AutomoeError, match="other settings"):
        latency_main([*[a for a in base if a != "--runs=2"], "--runs=3", "--count=5"])


def test_measure_command_reports_trained_weights(
    tiny_run: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["measure", f"--model={tiny_run}", "--arch=smallest", "--runs=2", "--warmup=0"]
    assert latency_main([*args, f"--data-dir={data_dir}", "--threads=1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == "trained" and report["latency_ms"] > 0
    assert report["machine"]["torch_threads"] == 1


def test_cpu_clock_does_not_charge_time_the_process_was_not_running() -> None:
    """A sleeping encoder stands in for a core taken by a neighbour: wall time counts it, the
    process's CPU time does not."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(50, 16, ARCH))
    encode = model.encode

    def idle_encode(*args, **kwargs):
        time.sleep(0.03)
        return encode(*args, **kwargs)

    model.encode = idle_encode  # type: ignore[method-assign]
    sources, targets = [[4, 5, 6, 7, 8, 9]], [[20, 21, 22, 23]]
    timed = {
        clock: measure_latency(
            model,
            sources,
            targets,
            LatencySettings(src_len=6, tgt_len=4, warmup=1, runs=3, clock=clock),
        )
        for clock in ("wall", "cpu")
    }
    assert timed["wall"].encoder_ms >= 30.0
    assert timed["cpu"].encoder_ms < 15.0
    with pytest.raises(AutomoeError, match="unknown clock 'gpu'; choices: wall, cpu"):
        LatencySettings(clock="gpu")
