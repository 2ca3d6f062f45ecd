"""Latency measurement (on tiny models) and the latency dataset command."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from automoe.errors import AutomoeError
from automoe.latency.__main__ import main as latency_main
from automoe.latency.measure import (
    CLOCKS,
    LatencyInputs,
    LatencySettings,
    measure_latency,
    reference_inputs,
    trimmed_mean,
)
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.model import EncoderOutput, ModelConfig, Transformer, extract
from automoe.supernet.supernet import SuperNet

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
    result = measure_latency(model, LatencyInputs(sources, targets), settings)
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
    with pytest.raises(AutomoeError, match="as many target"):
        LatencyInputs([[4, 5]], [])


def _record_task_ids(model: Transformer) -> list[list[int]]:
    """The task ids of every encoder and decoder call of `model`, in call order."""
    seen: list[list[int]] = []
    encode, decode = model.encode, model.decode

    def spied_encode(*args, task_ids=None, **kwargs):
        seen.append(task_ids.tolist())
        return encode(*args, task_ids=task_ids, **kwargs)

    def spied_decode(*args, task_ids=None, **kwargs):
        seen.append(task_ids.tolist())
        return decode(*args, task_ids=task_ids, **kwargs)

    model.encode, model.decode = spied_encode, spied_decode  # type: ignore[method-assign]
    return seen


def test_routed_archs_are_timed_with_the_task_id_of_the_inputs_pair(
    routed_space_file: Path,
) -> None:
    """The model's own id of the text's pair reaches every router, each beam row included."""
    torch.manual_seed(0)
    space = SearchSpace.load(routed_space_file)
    net = SuperNet.build(space, 60, num_tasks=3, task_names=("de-en", "en-de", "en-fr"))
    largest = space.largest()
    inputs = LatencyInputs([[4, 5, 6, 7, 8, 9]], [[20, 21, 22, 23]])
    settings = LatencySettings(src_len=6, tgt_len=4, beam=3, warmup=0, runs=2)
    for mode in ("token", "sentence", "task"):
        arch = ArchConfig.from_dict(
            {
                **largest.to_dict(),
                "encoder_routing": [mode] * largest.encoder_layers,
                "decoder_routing": [mode] * largest.decoder_layers,
            }
        )
        assert arch.routing_modes == (mode,)
        model = extract(net, arch)
        seen = _record_task_ids(model)
        assert measure_latency(model, inputs, settings).latency_ms > 0
        assert seen == [[1], *[[1, 1, 1]] * 4] * 2
    with pytest.raises(AutomoeError, match="not trained on 'en-cs'"):
        measure_latency(model, LatencyInputs(inputs.sources, inputs.targets, "en-cs"), settings)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _dataset_args(out: Path, space: Path, run: Path, data_dir: Path) -> list[str]:
    """A quick `dataset` command line: two timed runs per architecture, no warm-up."""
    return [
        "dataset",
        f"--out={out}",
        f"--space={space}",
        f"--supernet={run}",
        f"--data-dir={data_dir}",
        "--runs=2",
        "--warmup=0",
        "--threads=1",
        "--no-progress",
    ]


def test_dataset_appends_resumes_and_refuses_other_settings(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path
) -> None:
    out = tmp_path / "lat.csv"
    base = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
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
    inputs = LatencyInputs([[4, 5, 6, 7, 8, 9]], [[20, 21, 22, 23]])
    timed = {
        clock: measure_latency(
            model,
            inputs,
            LatencySettings(src_len=6, tgt_len=4, warmup=1, runs=3, clock=clock),
        )
        for clock in ("wall", "cpu")
    }
    assert timed["wall"].encoder_ms >= 30.0
    assert timed["cpu"].encoder_ms < 15.0
    with pytest.raises(AutomoeError, match="unknown clock 'gpu'; choices: wall, cpu"):
        LatencySettings(clock="gpu")


class _IdleModel(nn.Module):
    """A model whose every encoder call takes `seconds[key]` on a fake clock: a machine's speed
    in a box, exact whatever else the machine is doing."""

    config = ModelConfig(50, 4, ARCH)

    def __init__(self, seconds: dict[str, float], key: str, clock: dict[str, float]) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 4)
        self.seconds, self.key, self.clock = seconds, key, clock

    def encode(self, src: torch.Tensor, padding: torch.Tensor, **kwargs: object) -> EncoderOutput:
        self.clock["now"] += self.seconds[self.key]
        return EncoderOutput([torch.zeros(1, src.shape[1], 4)], padding)

    def decode(self, tokens: torch.Tensor, enc: EncoderOutput, **kwargs: object) -> None:
        return None

    def reorder_cache(self, cache: list, order: torch.Tensor) -> None:
        return None


def test_a_reference_timed_beside_the_model_cancels_the_machines_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same model on a machine three times slower: raw latency triples, the latency
    rescaled to the reference's fixed speed does not move."""
    clock = {"now": 0.0}
    monkeypatch.setitem(CLOCKS, "wall", lambda: clock["now"])
    inputs = LatencyInputs([[4, 5, 6, 7, 8, 9]], [[20, 21, 22, 23]])
    settings = LatencySettings(src_len=6, tgt_len=4, warmup=1, runs=4)
    raw, rescaled = {}, {}
    for slowdown in (1, 3):
        idle = {"model": 0.02 * slowdown, "reference": 0.01 * slowdown}
        model = _IdleModel(idle, "model", clock)
        reference = _IdleModel(idle, "reference", clock)
        result = measure_latency(model, inputs, settings, reference)  # type: ignore[arg-type]
        assert result.reference_ms == pytest.approx(10.0 * slowdown)
        raw[slowdown] = result.latency_ms
        rescaled[slowdown] = result.rescaled(10.0)
    assert raw[3] == pytest.approx(3.0 * raw[1])
    assert rescaled[3].latency_ms == pytest.approx(rescaled[1].latency_ms)
    assert rescaled[1].latency_ms == pytest.approx(20.0)
    scaled = rescaled[1]
    assert scaled.reference_ms == 10.0
    assert scaled.latency_ms == pytest.approx(scaled.encoder_ms + scaled.decoder_ms)


def test_only_a_paired_latency_rescales() -> None:
    model, _ = _counting_model()
    settings = LatencySettings(src_len=6, tgt_len=4, warmup=0, runs=2)
    inputs = LatencyInputs([[4, 5, 6, 7, 8, 9]], [[20, 21, 22, 23]])
    alone = measure_latency(model, inputs, settings)
    assert alone.reference_ms is None
    with pytest.raises(AutomoeError, match="against a reference"):
        alone.rescaled(10.0)
    reference, calls = _counting_model()
    paired = measure_latency(model, inputs, settings, reference)
    assert calls["encode"] == 2 and calls["decode"] == 2 * 4, "one reference run per run"
    with pytest.raises(AutomoeError, match="positive"):
        paired.rescaled(0.0)


def test_dataset_with_a_reference_keeps_one_speed_across_resumes(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path
) -> None:
    out = tmp_path / "lat.csv"
    base = [*_dataset_args(out, tiny_space_file, tiny_run, data_dir), "--reference=smallest"]
    assert latency_main([*base, "--count=2"]) == 0
    speed = json.loads(out.with_suffix(".csv.json").read_text())["reference"]["ms"]
    assert speed > 0
    assert latency_main([*base, "--count=3"]) == 0
    rows = _rows(out)
    assert len(rows) == 3
    assert json.loads(out.with_suffix(".csv.json").read_text())["reference"]["ms"] == speed
    for row in rows:
        factor = speed / float(row["reference_ms"])
        assert float(row["latency_ms"]) == pytest.approx(float(row["raw_ms"]) * factor)
    with pytest.raises(AutomoeError, match=r"other settings \(reference\)"):
        latency_main([*base, "--count=3", f"--reference-ms={speed * 2}"])


def test_measure_reports_at_the_given_reference_speed(
    tiny_run: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["measure", f"--model={tiny_run}", "--runs=2", "--warmup=0", "--threads=1"]
    paired = [*args, f"--data-dir={data_dir}", "--reference=smallest", "--reference-ms=50"]
    assert latency_main(paired) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference"]["ms"] == 50.0
    factor = 50.0 / report["reference_ms"]
    assert report["latency_ms"] == pytest.approx(report["raw_ms"] * factor)
    with pytest.raises(AutomoeError, match="--reference-ms needs --reference"):
        latency_main([*args, f"--data-dir={data_dir}", "--reference-ms=50"])


def test_merge_averages_passes_of_one_dataset_and_refuses_others(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path
) -> None:
    passes = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for out in passes:
        args = [*_dataset_args(out, tiny_space_file, tiny_run, data_dir), "--count=3"]
        assert latency_main([*args, "--reference=smallest", "--reference-ms=20"]) == 0
    merged = tmp_path / "merged" / "mean.csv"
    assert latency_main(["merge", *map(str, passes), f"--out={merged}"]) == 0
    first, second, mean = _rows(passes[0]), _rows(passes[1]), _rows(merged)
    by_key = {row["arch_key"]: row for row in second}
    assert [row["arch_key"] for row in mean] == [row["arch_key"] for row in first]
    for a, m in zip(first, mean, strict=True):
        b = by_key[a["arch_key"]]
        for column in ("latency_ms", "raw_ms", "reference_ms", "decoder_ms"):
            assert float(m[column]) == pytest.approx((float(a[column]) + float(b[column])) / 2)
        assert int(m["runs"]) == 4 and m["arch"] == a["arch"]
    meta = json.loads(merged.with_suffix(".csv.json").read_text())
    assert len(meta["passes"]) == 2 and meta["reference"]["ms"] == 20.0

    other_speed = tmp_path / "c.csv"
    args = [*_dataset_args(other_speed, tiny_space_file, tiny_run, data_dir), "--count=3"]
    assert latency_main([*args, "--reference=smallest", "--reference-ms=30"]) == 0
    with pytest.raises(AutomoeError, match=r"other settings than .*\['reference'\]"):
        latency_main(["merge", str(passes[0]), str(other_speed), f"--out={merged}"])
    fewer = tmp_path / "d.csv"
    args = [*_dataset_args(fewer, tiny_space_file, tiny_run, data_dir), "--count=2"]
    assert latency_main([*args, "--reference=smallest", "--reference-ms=20"]) == 0
    with pytest.raises(AutomoeError, match="other architectures"):
        latency_main(["merge", str(passes[0]), str(fewer), f"--out={merged}"])
    with pytest.raises(AutomoeError, match="at least two passes"):
        latency_main(["merge", str(passes[0]), f"--out={merged}"])
    with pytest.raises(AutomoeError, match="not a latency dataset"):
        latency_main(["merge", str(passes[0]), str(tmp_path / "none.csv"), f"--out={merged}"])


def _quick(out: Path, space: Path, data_dir: Path) -> list[str]:
    """A quick `dataset` command line on random weights (no SuperNet)."""
    return [
        "dataset",
        f"--out={out}",
        f"--space={space}",
        f"--data-dir={data_dir}",
        "--runs=1",
        "--warmup=0",
        "--threads=1",
        "--no-progress",
    ]


def test_dataset_without_a_supernet_measures_every_routing_of_the_space(
    tmp_path: Path, routed_space_file: Path, data_dir: Path
) -> None:
    out = tmp_path / "lat.csv"
    assert latency_main([*_quick(out, routed_space_file, data_dir), "--count=8"]) == 0
    rows = _rows(out)
    assert len(rows) == 8 and all(row["weights"] == "random" for row in rows)
    modes = {m for row in rows for m in ArchConfig.from_json(row["arch"]).routing_modes}
    assert modes == {"token", "sentence", "task"}


@pytest.mark.parametrize(
    "option",
    [
        "--count=0",
        "--runs=0",
        "--warmup=-1",
        "--beam=0",
        "--src-len=0",
        "--tgt-len=0",
        "--threads=0",
        "--seed=-1",
        "--reference-ms=0",
        "--reference-ms=nan",
    ],
)
def test_dataset_refuses_impossible_numbers_before_writing(
    tmp_path: Path,
    tiny_space_file: Path,
    data_dir: Path,
    option: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lat.csv"
    args = [
        *_quick(out, tiny_space_file, data_dir),
        "--count=2",
        "--reference=smallest",
    ]
    with pytest.raises(SystemExit) as exit_info:
        latency_main([*args, option])
    assert exit_info.value.code == 2
    assert option.split("=")[0] in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".csv.json").exists()


def test_measure_refuses_impossible_numbers(tiny_run: Path) -> None:
    with pytest.raises(SystemExit):
        latency_main(["measure", f"--model={tiny_run}", "--runs=0"])


def _left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_a_failed_dataset_leaves_nothing_and_the_corrected_rerun_works(
    tmp_path: Path,
    tiny_space_file: Path,
    tiny_run: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "lat.csv"
    base = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
    with pytest.raises(AutomoeError, match="cannot read architecture file"):
        latency_main([*base, "--count=2", f"--reference={tmp_path / 'none.yaml'}"])
    with pytest.raises(AutomoeError, match="exceeds the space"):
        latency_main([*base, "--count=1000000000000", "--reference=smallest"])
    with pytest.raises(AutomoeError, match=r"holds no (supernet|tokenizer)|not a run folder"):
        latency_main([*base, f"--supernet={tmp_path}", "--count=2"])
    assert _left(tmp_path) == []

    import automoe.latency.__main__ as command

    def broken(*args: object, **kwargs: object) -> None:
        raise AutomoeError("the model broke")

    monkeypatch.setattr(command, "measure_latency", broken)
    with pytest.raises(AutomoeError, match="the model broke"):
        latency_main([*base, "--count=2", "--seed=3"])
    assert _left(tmp_path) == []
    monkeypatch.undo()
    assert latency_main([*base, "--count=2"]) == 0
    assert len(_rows(out)) == 2


def test_a_dataset_with_a_header_only_has_not_started(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path
) -> None:
    """What earlier versions left after a failed start: a header and a sidecar of other
    settings. They hold no measurement, so a run with other settings starts afresh."""
    out = tmp_path / "lat.csv"
    base = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
    assert latency_main([*base, "--count=1"]) == 0
    header = out.read_text().splitlines()[0]
    out.write_text(header + "\r\n")
    assert latency_main([*[a for a in base if a != "--runs=2"], "--runs=1", "--count=2"]) == 0
    assert len(_rows(out)) == 2
    assert json.loads(out.with_suffix(".csv.json").read_text())["protocol"]["runs"] == 1


@pytest.mark.parametrize("ending", ["", "\r\n"])
def test_a_torn_last_row_is_measured_again(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path, ending: str
) -> None:
    """A kill during an append leaves part of a row (with or without its line end)."""
    out = tmp_path / "lat.csv"
    base = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
    assert latency_main([*base, "--count=3"]) == 0
    whole = _rows(out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40] + ending.encode())
    assert latency_main([*base, "--count=4"]) == 0
    rows = _rows(out)
    assert [r["arch_key"] for r in rows[:2]] == [r["arch_key"] for r in whole[:2]]
    assert sorted(r["arch_key"] for r in rows[2:]) == sorted(
        [whole[2]["arch_key"], *({r["arch_key"] for r in rows} - {r["arch_key"] for r in whole})]
    )
    assert len(rows) == 4 and len({r["arch_key"] for r in rows}) == 4
    for row in rows:
        assert None not in row and None not in row.values()
        assert float(row["raw_ms"]) > 0
        assert ArchConfig.from_json(row["arch"]).key() == row["arch_key"]
    assert out.read_bytes().endswith(b"\r\n")


def test_merge_keeps_the_previous_output_when_writing_fails(
    tmp_path: Path,
    tiny_space_file: Path,
    tiny_run: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passes = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for out in passes:
        args = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
        assert latency_main([*args, "--count=2"]) == 0
    merged = tmp_path / "mean.csv"
    assert latency_main(["merge", *map(str, passes), f"--out={merged}"]) == 0
    before = merged.read_bytes(), merged.with_suffix(".csv.json").read_bytes()

    def full_disk(self: object, rows: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full_disk)
    with pytest.raises(OSError, match="No space"):
        latency_main(["merge", *map(str, passes), f"--out={merged}"])
    assert (merged.read_bytes(), merged.with_suffix(".csv.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU that computes bf16, whatever this machine's is."""
    monkeypatch.setattr("automoe.precision.cpu_bf16_instructions", lambda: "avx512_bf16")


@pytest.fixture
def autocast_seen(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype | None]:
    """The autocast dtype (None: off) every `measure_latency` of the command ran under."""
    import automoe.latency.__main__ as command

    seen: list[torch.dtype | None] = []
    real = command.measure_latency

    def recording(*args: Any, **kwargs: Any) -> Any:
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "measure_latency", recording)
    return seen


def _precision_of(path: Path) -> Any:
    return json.loads(path.with_suffix(".csv.json").read_text()).get("precision")


def test_measure_times_in_bf16_and_reports_it(
    tiny_run: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    bf16_cpu: None,
    autocast_seen: list[torch.dtype | None],
) -> None:
    args = ["measure", f"--model={tiny_run}", "--runs=2", "--warmup=0", "--threads=1"]
    assert latency_main([*args, f"--data-dir={data_dir}", "--reference=smallest"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["precision"] == {"precision": "fp32", "requested": "fp32", "reason": "asked for"}
    assert "precision" not in err  # plain fp32, the default, is not announced
    assert autocast_seen == [None, None]  # the model beside the reference, the reference alone
    assert latency_main([*args, f"--data-dir={data_dir}", "--precision=bf16"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["precision"]["precision"] == "bf16" and report["latency_ms"] > 0
    assert err.count("precision: bf16 (asked for; the CPU has avx512_bf16)") == 1
    assert autocast_seen == [None, None, torch.bfloat16]


def test_a_dataset_records_its_precision_and_grows_only_in_it(
    tmp_path: Path,
    tiny_space_file: Path,
    tiny_run: Path,
    data_dir: Path,
    bf16_cpu: None,
    autocast_seen: list[torch.dtype | None],
) -> None:
    out = tmp_path / "lat.csv"
    base = [*_dataset_args(out, tiny_space_file, tiny_run, data_dir), "--reference=smallest"]
    assert latency_main([*base, "--count=2", "--precision=bf16"]) == 0
    assert autocast_seen == [torch.bfloat16] * 3  # the reference's speed, then each arch
    assert _precision_of(out) == {
        "precision": "bf16",
        "requested": "bf16",
        "reason": "asked for; the CPU has avx512_bf16",
    }
    before = out.read_bytes()
    with pytest.raises(
        AutomoeError,
        match=rf"^{out} holds latencies measured in bf16, but this run measures in fp32 \(asked "
        r"for\), .*rerun with --precision bf16 on a device that computes bf16, or choose",
    ):
        latency_main([*base, "--count=3"])
    assert out.read_bytes() == before
    assert latency_main([*base, "--count=3", "--precision=bf16"]) == 0
    assert len(_rows(out)) == 3 and autocast_seen[3:] == [torch.bfloat16]


def test_a_dataset_from_before_precisions_were_recorded_is_fp32(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path, bf16_cpu: None
) -> None:
    out = tmp_path / "lat.csv"
    base = _dataset_args(out, tiny_space_file, tiny_run, data_dir)
    assert latency_main([*base, "--count=1"]) == 0
    meta = json.loads(out.with_suffix(".csv.json").read_text())
    assert meta.pop("precision")["precision"] == "fp32"
    out.with_suffix(".csv.json").write_text(json.dumps(meta))
    with pytest.raises(AutomoeError, match="measured in fp32, but this run measures in bf16"):
        latency_main([*base, "--count=2", "--precision=bf16"])
    assert latency_main([*base, "--count=2"]) == 0
    assert len(_rows(out)) == 2 and _precision_of(out) is None  # the sidecar is kept as it was


def test_merge_refuses_passes_of_different_precisions(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, data_dir: Path, bf16_cpu: None
) -> None:
    """Pass a measured in bf16; b, c and d copies of it whose sidecars say bf16 for another
    reason, fp32, and nothing (a sidecar from before precisions were recorded)."""
    a, b, c, d = (tmp_path / f"{name}.csv" for name in "abcd")
    args = [*_dataset_args(a, tiny_space_file, tiny_run, data_dir), "--count=2"]
    assert latency_main([*args, "--precision=bf16"]) == 0
    meta = json.loads(a.with_suffix(".csv.json").read_text())
    auto = {"precision": "bf16", "requested": "auto", "reason": "bf16 matmul 2.0x fp32 here"}
    for path, record in ((b, auto), (c, {"precision": "fp32"}), (d, None)):
        path.write_bytes(a.read_bytes())
        kept = {k: v for k, v in meta.items() if k != "precision"}
        sidecar = kept if record is None else {**kept, "precision": record}
        path.with_suffix(".csv.json").write_text(json.dumps(sidecar))
    merged = tmp_path / "mean.csv"
    assert latency_main(["merge", str(a), str(b), f"--out={merged}"]) == 0
    assert _precision_of(merged) == {"precision": "bf16"}
    for other, name in ((c, "fp32"), (d, "fp32")):
        with pytest.raises(
            AutomoeError, match=rf"^{other} holds latencies measured in {name}, {a} in bf16: "
        ):
            latency_main(["merge", str(a), str(other), f"--out={merged}"])
    assert _precision_of(merged) == {"precision": "bf16"}
    assert latency_main(["merge", str(c), str(d), f"--out={merged}"]) == 0
    assert _precision_of(merged) == {"precision": "fp32"}
    assert latency_main(["merge", str(b), str(b), f"--out={merged}"]) == 0
    assert _precision_of(merged) == _precision_of(b)
