"""benchmarks/bench_train_attention.py: its two variants really differ in the kernel, and a
tiny run writes a row per model and precision."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_train_attention as bta
from bench_elastic import make_batches


def test_only_the_fused_variant_calls_the_fused_kernel() -> None:
    batches = make_batches(1, 40, seed=0, low=3, high=6)
    steps, _ = bta.variants(batches, lr=1e-5, seed=0)
    for key in ("dense fp32 matmuls", "dense fp32 fused"):
        with mock.patch.object(
            F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention
        ) as fused:
            steps[key]()
        # 4 encoder self-attentions, 4 decoder self- and 4 cross-attentions per forward
        assert fused.call_count == (12 if key.endswith("fused") else 0)


def test_a_tiny_run_reports_every_model_and_precision(
    tmp_path: Path, keep_threads: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--repeats", "1", "--warmup", "0", "--batches", "1"]
    argv += ["--target-tokens", "40", "--min-len", "3", "--max-len", "6", "--wait-quiet", "0"]
    assert bta.main(argv) == 0
    written = list(tmp_path.glob("train_attention*.json"))
    assert len(written) == 1
    payload = json.loads(written[0].read_text())
    assert set(payload["results"]) == {"dense fp32", "dense bf16", "moe fp32", "moe bf16"}
    for stats in payload["results"].values():
        assert stats["variants"]["fused"]["all"]["paired_ratio"] > 0
    assert payload["params"]["moe"] > payload["params"]["dense"]
    md = written[0].with_suffix(".md").read_text()
    assert md.count("\n| dense") == 2 and md.count("\n| moe") == 2
