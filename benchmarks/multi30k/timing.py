"""Latency and throughput of every model of the table, measured in one run, interleaved.

Latency follows the paper's protocol (`automoe.cost.measure_latency`: batch 1, a 30-token
real source, the encoder once, 30 cached decoder steps over a beam of 5), one protocol run
per model per round; rounds rotate the models' order (`common.interleaved`), so a slow phase
of the machine hits all of them alike. The figures are the median and IQR over the rounds in
which other processes left the cores free (all rounds when fewer than three were), and each
model's median over rounds of its latency divided by the dense model's in the same round.

Throughput is not a library command: real beam-search decoding (the evaluation's beam) of
test sentences in batches of `throughput_batch`, one batch per model per round, reported as
sentences per second over the rounds used.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from common import interleaved, machine_info, quiet_rounds, set_threads
from staged.decoding import Models, decode_run, load_models, sentence_batches

from automoe.data import Batch, Tokenizer
from automoe.files import write_text_atomic
from automoe.latency import LatencyInputs, LatencySettings, latency_inputs, measure_latency
from automoe.supernet.decode import DecodeSettings
from automoe.supernet.model import Transformer

BASELINE = "dense"
PAIR = "en-de"


def _tokenizer_key(tokenizer: Tokenizer) -> str:
    return hashlib.sha1(tokenizer.model_proto).hexdigest()


def _rounds(run: dict[str, Any]) -> list[int]:
    return quiet_rounds(run["other_cores"], threshold=common.QUIET_CORES)


def _summary(samples: list[float], base: list[float]) -> dict[str, Any]:
    q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return {
        "median": statistics.median(samples),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "n": len(samples),
        "vs_dense": statistics.median(x / y for x, y in zip(samples, base, strict=True)),
    }


def _record(
    loaded: dict[str, tuple[Transformer, Tokenizer]],
    run: dict[str, Any],
    values: dict[str, list[float]],
    threads: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    rounds = _rounds(run)
    base = values.get(BASELINE) or next(iter(values.values()))
    return {
        "machine": machine_info(threads),
        "settings": settings,
        "other_cores_per_round": run["other_cores"],
        "rounds_used": rounds,
        "models": {
            name: {
                "arch_key": loaded[name][0].default_arch.key(),
                **_summary([v[i] for i in rounds], [base[i] for i in rounds]),
                "samples": [round(x, 4) for x in v],
            }
            for name, v in values.items()
        },
    }


def measure_latency_all(
    models: Models, out: Path, sizes: Any, threads: int, data_dir: str | None
) -> None:
    """Milliseconds per protocol run of every model, interleaved; written to `out`."""
    set_threads(threads)
    loaded = load_models(models)
    protocol = LatencySettings(runs=sizes.timing_runs)
    inputs: dict[str, LatencyInputs] = {}
    values: dict[str, list[float]] = {name: [] for name in loaded}
    variants: dict[str, Callable[[], None]] = {}
    for name, (net, tokenizer) in loaded.items():
        key = _tokenizer_key(tokenizer)
        if key not in inputs:
            inputs[key] = latency_inputs(tokenizer, data_dir, protocol)
        variants[name] = _protocol_run(net, inputs[key], protocol, values[name])
    run = interleaved(
        variants,
        sizes.timing_runs,
        warmup=sizes.timing_warmup,
        wait_s=sizes.timing_wait_s,
    )
    values = {name: v[sizes.timing_warmup :] for name, v in values.items()}
    settings = {**protocol.to_dict(), "warmup": sizes.timing_warmup, "threads": threads}
    record = _record(loaded, run, values, threads, settings)
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")


def _protocol_run(
    net: Transformer, inputs: LatencyInputs, protocol: LatencySettings, values: list[float]
) -> Callable[[], None]:
    """One protocol run per call on the next input; appends its milliseconds to `values`."""
    one = LatencySettings(
        src_len=protocol.src_len, tgt_len=protocol.tgt_len, beam=protocol.beam, warmup=0, runs=1
    )

    def run() -> None:
        i = len(values) % len(inputs.sources)
        single = LatencyInputs([inputs.sources[i]], [inputs.targets[i]], inputs.pair)
        values.append(measure_latency(net, single, one).latency_ms)

    return run


def measure_throughput_all(
    models: Models, out: Path, sizes: Any, threads: int, data_dir: str | None
) -> None:
    """Sentences per second of beam-search decoding at a fixed batch size, interleaved:
    `throughput_sentences // throughput_batch` batches of test sentences, one per round."""
    set_threads(threads)
    loaded = load_models(models)
    decode = DecodeSettings(beam_size=sizes.beam)
    values: dict[str, list[float]] = {name: [] for name in loaded}
    variants: dict[str, Callable[[], None]] = {}
    batches: list[Batch] = []
    for name, (net, tokenizer) in loaded.items():
        batches = sentence_batches(
            net, tokenizer, data_dir, PAIR, sizes.throughput_sentences, sizes.throughput_batch
        )
        variants[name] = decode_run(net, batches, decode, values[name])
    repeats = max(2, len(batches))
    run = interleaved(variants, repeats, warmup=1, wait_s=sizes.timing_wait_s)
    values = {name: v[1:] for name, v in values.items()}
    rounds = _rounds(run)
    record = _record(
        loaded,
        run,
        values,
        threads,
        {"batch": len(batches[0]), "beam": sizes.beam, "batches": len(batches)},
    )
    for name, entry in record["models"].items():
        chosen = [values[name][i] for i in rounds]
        entry["sentences_per_s"] = len(batches[0]) * len(chosen) / sum(chosen)
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")
