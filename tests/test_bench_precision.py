"""benchmarks/bench_precision.py: its helpers, and a --quick run end to end on a tiny SuperNet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_precision as bp
import common

from automoe.cost.flops import count_params
from automoe.errors import run_cli
from automoe.precision import FP32, Precision, cpu_bf16_instructions
from automoe.space import SearchSpace


def test_split_even_keeps_order_and_balances_sizes() -> None:
    assert bp.split_even(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert bp.split_even([1, 2], 2) == [[1], [2]]
    with pytest.raises(ValueError):
        bp.split_even([1, 2], 3)


def run_of(other_cores: list[float]) -> dict:
    """A `common.interleaved` result with these loads; CPU seconds 1, 2, 3, ... per call."""
    cpu = [float(i + 1) for i in range(len(other_cores))]
    return {"other_cores": other_cores, "variants": {p: {"cpu": cpu} for p in bp.PRECISIONS}}


def test_compare_uses_quiet_rounds_and_the_median_per_round_ratio() -> None:
    busy = common.QUIET_CORES + 1.0
    values = {"fp32": [10.0, 10.0, 10.0, 1.0], "bf16": [5.0, 20.0, 10.0, 100.0]}
    out = bp.compare(values, run_of([0.0, 0.0, 0.0, busy]))
    assert out["rounds_used"] == [0, 1, 2]
    assert out["ratios_per_round"] == [0.5, 2.0, 1.0]
    assert out["ratio_bf16_fp32"] == 1.0
    assert out["fp32"]["median"] == 10.0 and out["bf16"]["median"] == 10.0
    assert out["cpu_s_per_call"] == {"fp32": 2.0, "bf16": 2.0}
    assert not out["contended"]
    # too few quiet rounds: every round counts, and the result says it was contended
    crowded = bp.compare(values, run_of([busy] * 4))
    assert crowded["rounds_used"] == [0, 1, 2, 3] and crowded["contended"]
    assert crowded["ratio_bf16_fp32"] == pytest.approx((1.0 + 2.0) / 2)


def test_agreement_measures_rank_order_and_loss_shift() -> None:
    fp32 = [3.0, 2.0, 4.0, 1.0]
    same_order = bp.agreement(fp32, [x + 0.01 for x in fp32])
    assert same_order["kendall_tau"] == pytest.approx(1.0)
    assert same_order["tau_met"] and same_order["same_best"]
    assert same_order["max_abs_diff"] == pytest.approx(0.01)
    reversed_order = bp.agreement(fp32, [-x for x in fp32])
    assert reversed_order["kendall_tau"] == pytest.approx(-1.0)
    assert not reversed_order["tau_met"] and not reversed_order["same_best"]
    assert reversed_order["mean_abs_diff"] == pytest.approx(2 * sum(fp32) / 4)


def test_interleave_alternates_and_drops_warmup(keep_threads: None) -> None:
    calls: list[str] = []

    def call(p: str) -> float:
        calls.append(p)
        return float(len(calls))

    args = argparse.Namespace(quick=True, max_rounds=None, wait_quiet=0.0)
    figures, run = bp.interleave(call, rounds=3, warmup=1, args=args)
    assert calls == ["fp32", "bf16", "fp32", "bf16", "bf16", "fp32", "fp32", "bf16"]
    assert figures == {"fp32": [3.0, 6.0, 7.0], "bf16": [4.0, 5.0, 8.0]}
    assert len(run["other_cores"]) == 3


def test_middle_arch_is_the_median_sized_sample_outside_the_multi30k_space(
    tiny_space_file: Path,
) -> None:
    assert bp.middle_arch(SearchSpace.load("multi30k"), 8000, 0) == bp.MID
    tiny = SearchSpace.load(tiny_space_file)
    middle = bp.middle_arch(tiny, 400, 0, count=9)
    sizes = sorted(
        count_params(a, qkv_dim=tiny.qkv_dim, vocab_size=400).total
        for a in bp.sample_archs(tiny, 9, 0)
    )
    assert tiny.contains(middle)
    assert count_params(middle, qkv_dim=tiny.qkv_dim, vocab_size=400).total == sizes[4]


def test_machine_info_records_the_arguments_main_was_given() -> None:
    script = str(Path(bp.__file__))
    info = common.machine_info(1, [script, "--part", "score", "--archs", "a b"])
    assert info["command"].endswith("bench_precision.py --part score --archs 'a b'")


def test_precision_tag_keeps_fp32_names() -> None:
    assert common.precision_tag(FP32) == ""
    assert common.precision_tag(Precision("bf16", "cpu", "bf16", "asked for")) == ".bf16"


def test_parts_needing_a_supernet_are_refused_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(bp.main, ["--part", "train,decode", "--out", str(tmp_path)]) == 2
    assert "--part decode needs a trained SuperNet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bp.build_parser().parse_args(["--part", "train,sing"])
    assert list(tmp_path.iterdir()) == []


def test_a_machine_without_bf16_is_refused_before_anything_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep_threads: None,
) -> None:
    def no_bf16(requested: str, device: str = "cpu") -> Precision:
        return Precision("fp32", "cpu", requested, "this CPU has no bf16 instructions")

    monkeypatch.setattr(bp, "resolve_precision", no_bf16)
    assert run_cli(bp.main, ["--part", "train", "--out", str(tmp_path)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(cpu_bf16_instructions() is None, reason="this CPU computes no bf16")
def test_quick_run_end_to_end_keeps_earlier_parts(
    tiny_run: Path, data_dir: Path, tmp_path: Path, keep_threads: None
) -> None:
    base = [
        "--quick",
        "--threads=1",
        f"--supernet={tiny_run}",
        f"--data-dir={data_dir}",
        f"--out={tmp_path}",
        "--keep-contended",  # fixed file names whatever the machine's load
    ]
    assert run_cli(bp.main, base) == 0
    payload = json.loads((tmp_path / "precision.quick.json").read_text())
    parts = payload["parts"]
    assert list(parts) == list(bp.PARTS)
    assert all("--quick" in entry["machine"]["command"] for entry in parts.values())

    train = parts["train"]["result"]["archs"]
    assert set(train) == {"mid", "full"}
    for entry in train.values():
        assert entry["same_tokens"]  # both precisions trained on the same batches
        assert entry["precision"]["bf16"]["precision"] == "bf16"
        assert entry["tokens_per_s"]["fp32"]["median"] > 0
        assert entry["tokens_per_s"]["bf16"]["median"] > 0

    score = parts["score"]["result"]
    assert score["settings"]["archs"] == 10 and len(set(score["arch_keys"])) == 10
    assert all(len(score["losses"][p]) == 10 for p in bp.PRECISIONS)
    assert score["agreement"]["max_abs_diff"] > 0  # bf16 really ran: its losses differ
    assert -1.0 <= score["agreement"]["kendall_tau"] <= 1.0

    decode = parts["decode"]["result"]["models"]
    assert set(decode) == {"smallest", "middle", "largest"}
    for model in decode.values():
        assert model["batch_1"]["sentences"] == 2
        assert model["batch_4"]["sentences"] == 8
        assert 0.0 <= model["batch_4"]["same_output_share"] <= 1.0

    latency = parts["latency"]["result"]["models"]
    assert set(latency) == {"smallest", "middle", "largest"}
    assert all(m["latency_ms"]["bf16"]["median"] > 0 for m in latency.values())

    tables = (tmp_path / "precision_tables.quick.md").read_text()
    assert all(f"## {part}" in tables for part in bp.PARTS)
    assert "Kendall tau" in tables and "--quick" in tables

    # a later run of one part replaces that part and keeps the others
    assert run_cli(bp.main, [*base, "--part=score", "--archs=2", "--score-rounds=1"]) == 0
    again = json.loads((tmp_path / "precision.quick.json").read_text())["parts"]
    assert list(again) == list(bp.PARTS)
    assert again["score"]["result"]["settings"]["archs"] == 2
    assert again["train"] == parts["train"]
