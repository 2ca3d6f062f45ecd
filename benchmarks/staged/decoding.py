"""Timed beam-search decoding of real test sentences, shared by the benchmarks' throughput
runs: models loaded for timing, test batches of a fixed size, and one timed call."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from automoe.data import Batch, Tokenizer, collate
from automoe.data.run_data import DataSettings, RunData
from automoe.runs import load_model_file, resolve_arch, task_ids_for
from automoe.supernet.decode import DecodeSettings, translate_ids
from automoe.supernet.model import Transformer, extract
from automoe.supernet.modes import inference

Models = dict[str, tuple[Path, str | None]]


def load_models(models: Models) -> dict[str, tuple[Transformer, Tokenizer]]:
    """Each model file (or the SuperNet sub-network named by its arch), in eval mode."""
    out = {}
    for name, (path, arch) in models.items():
        net, tokenizer = load_model_file(path)
        if arch is not None:
            net = extract(net, resolve_arch(arch, net))
        out[name] = (net.eval(), tokenizer)
    return out


def sentence_batches(
    net: Transformer,
    tokenizer: Tokenizer,
    data_dir: str | None,
    pair: str,
    count: int,
    size: int,
) -> list[Batch]:
    """Batches of exactly `size` test sentences of `pair` (at least one), from the first
    `count`, carrying `net`'s task id of the pair."""
    data = RunData(
        DataSettings(pairs=(pair,)), data_dir, tokenizer, task_ids=task_ids_for(net, [pair])
    )
    examples = data.task_examples("test_2016_flickr", 0)
    whole = max(1, min(count, len(examples)) // size)
    return [collate(examples[i * size : (i + 1) * size]) for i in range(whole)]


def decode_run(
    net: Transformer, batches: list[Batch], decode: DecodeSettings, values: list[float]
) -> Callable[[], None]:
    """Decode the next batch per call; appends its seconds to `values`."""

    def run() -> None:
        batch = batches[len(values) % len(batches)]
        started = time.perf_counter()
        with inference(net):
            translate_ids(
                net, batch.src_tokens, batch.src_padding_mask, None, decode, batch.task_ids
            )
        values.append(time.perf_counter() - started)

    return run
