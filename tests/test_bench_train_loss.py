"""benchmarks/bench_train_loss.py: its variants differ only in how the loss is computed, and a
tiny run writes a row per case."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_train_loss as btl
from bench_elastic import make_batches

from automoe.supernet import losses


def test_only_the_fused_variant_takes_the_fused_loss_and_both_train_alike() -> None:
    batches = make_batches(1, 40, seed=0, low=3, high=6)
    steps, _ = btl.variants(batches, lr=1e-5, seed=0)
    for key in ("dense fp32 autograd", "dense fp32 fused"):
        with mock.patch.object(losses._RowLosses, "apply", wraps=losses._RowLosses.apply) as fused:
            steps[key]()
        assert fused.call_count == (1 if key.endswith("fused") else 0)
    old, new = steps["dense fp32 autograd"].model, steps["dense fp32 fused"].model
    # the same weights, batch and dropout draws: the same gradients (Adam's first step would
    # turn rounding noise in a gradient that is zero by symmetry into a full step)
    for (name, a), b in zip(old.named_parameters(), new.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_a_tiny_run_reports_every_case(
    tmp_path: Path, keep_threads: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--repeats", "1", "--warmup", "0", "--batches", "1"]
    argv += ["--target-tokens", "40", "--min-len", "3", "--max-len", "6", "--wait-quiet", "0"]
    assert btl.main(argv) == 0
    written = list(tmp_path.glob("train_loss*.json"))
    assert len(written) == 1
    payload = json.loads(written[0].read_text())
    assert list(payload["results"]) == list(btl.COMPARISON.cases)
    for stats in payload["results"].values():
        assert stats["variants"]["fused"]["all"]["paired_ratio"] > 0
    assert payload["params"]["dense"] > payload["params"]["AutoMoE@1/2"]
    md = written[0].with_suffix(".md").read_text()
    assert md.count("\n| dense") == 2 and md.count("\n| AutoMoE@1/2") == 2
