"""Throughput and peak memory of what serves one pair, every model measured in one run.

The models are untrained (`Plan.shaped`), so their outputs' lengths are forced: each sentence
decodes as many tokens as its source has, times the ratio of target to source tokens over
the timed sentences, eos held back until then (`forced_lengths`). The work a decode does
then depends on the architecture alone, and totals what the references would cost.

Throughput: beam-search decoding (the evaluation's beam) of the same first
`throughput_sentences` test sentences of the pair, in batches of each batch size; one call
per model and batch size per round, rounds rotating the order (`common.interleaved`), so a
slow phase of the machine hits all of them alike. Reported per batch size: sentences per
second from the median call over the quiet rounds, and the median per-round ratio to the
dense and token-MoE models.

Memory: peak resident set (VmHWM) of a fresh `python -m automoe.translate` process
translating the first `memory_sentences` test sentences: the whole process, interpreter and
torch included; a process that only imports the command gives that floor. An untrained model
rarely ends a sentence early, so its outputs run to the length limit: an upper bound.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from common import interleaved, machine_info, paired_ratio, quiet_rounds, set_threads
from staged.decoding import decode_run, load_models, sentence_batches

from automoe.data import Batch
from automoe.data.corpus import read_lines
from automoe.data.registry import resolve_dataset_dir
from automoe.files import write_text_atomic
from automoe.supernet.decode import DecodeSettings

BASELINES = ("dense", "token")


def read_latency(path: Path) -> float:
    """Milliseconds of a `latency measure` report."""
    return float(json.loads(path.read_text())["latency_ms"])


def measure_throughput(
    models: dict[str, Path], out: Path, sizes: Any, threads: int, data_dir: str | None
) -> None:
    """Sentences per second of every model at every batch size, interleaved; to `out`."""
    set_threads(threads)
    pair = sizes.pairs[0]
    loaded = load_models({row: (path, None) for row, path in models.items()})
    count = sizes.throughput_sentences
    variants: dict[str, Callable[[], None]] = {}
    sentences: dict[int, int] = {}
    ratios: dict[str, float] = {}
    for row, (net, tokenizer) in loaded.items():
        for size in sizes.batch_sizes:
            batches = sentence_batches(net, tokenizer, data_dir, pair, count, size)
            sentences[size] = len(batches) * size
            decode = forced_lengths(batches, sizes.beam, net.config.max_positions)
            ratios[row] = decode.max_len_a
            variants[f"{row}@{size}"] = _all_batches(
                decode_run(net, batches, decode, []), len(batches)
            )
    run = interleaved(variants, sizes.timing_rounds, warmup=1, wait_s=sizes.timing_wait_s)
    rounds = quiet_rounds(run["other_cores"], threshold=common.QUIET_CORES)
    walls = {k: [run["variants"][k]["wall"][i] for i in rounds] for k in variants}
    record: dict[str, Any] = {
        "machine": machine_info(threads),
        "settings": {
            "pair": pair,
            "beam": sizes.beam,
            "batch_sizes": list(sizes.batch_sizes),
            "sentences": sentences,
            "threads": threads,
            "lengths": "forced: source tokens x target_per_source_token",
            "target_per_source_token": ratios,
        },
        "other_cores_per_round": run["other_cores"],
        "rounds_used": rounds,
        "models": {},
    }
    for row in loaded:
        entry = {"path": str(models[row]), "batch": {}}
        for size in sizes.batch_sizes:
            wall = walls[f"{row}@{size}"]
            entry["batch"][str(size)] = {
                "sentences_per_s": sentences[size] / statistics.median(wall),
                "median_s": statistics.median(wall),
                **{
                    f"vs_{base}": paired_ratio(walls[f"{base}@{size}"], wall)
                    for base in BASELINES
                    if base in loaded
                },
                "samples_s": [round(x, 4) for x in run["variants"][f"{row}@{size}"]["wall"]],
            }
        record["models"][row] = entry
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")


def forced_lengths(batches: list[Batch], beam: int, positions: int) -> DecodeSettings:
    """Beam search in which every sentence decodes `ratio` x its source tokens, `ratio`
    being the batches' reference tokens (eos excluded: beam search forces it at the limit)
    per source token; `min_len` at the position table's size keeps eos from ending a
    sentence before its limit."""
    source = sum(int((~b.src_padding_mask).sum()) for b in batches)
    target = sum(int((~b.tgt_padding_mask).sum()) - len(b.task_ids) for b in batches)
    return DecodeSettings(beam_size=beam, max_len_a=target / source, max_len_b=0, min_len=positions)


def _all_batches(call: Callable[[], None], count: int) -> Callable[[], None]:
    """One timed unit: every batch once (`call` decodes the next batch each time)."""

    def run() -> None:
        for _ in range(count):
            call()

    return run


# Imports a command's module (mode "run": runs its main on the remaining arguments) and writes
# the process's own peak resident set (VmHWM, kB) to the file named first. Not the kernel's
# rusage: a child's ru_maxrss keeps the size of the process it was forked from, here the
# benchmark with every model loaded.
_PEAK = """
import importlib, sys
out, module, mode, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
main = importlib.import_module(module).main
code = main(args) if mode == "run" else 0
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
with open(out, "w") as f:
    f.write(peak)
sys.exit(code)
"""


def measure_memory(
    models: dict[str, Path], out: Path, sizes: Any, threads: int, data_dir: str | None
) -> None:
    """Peak RSS of a translate process per model (and of one that only imports); to `out`."""
    pair = sizes.pairs[0]
    source = resolve_dataset_dir(data_dir=data_dir) / f"test_2016_flickr.{pair.split('-')[0]}.gz"
    text = out.with_name("memory_input.txt")
    write_text_atomic(text, "\n".join(read_lines(source)[: sizes.memory_sentences]) + "\n")
    record: dict[str, Any] = {
        "machine": machine_info(threads),
        "settings": {"pair": pair, "sentences": sizes.memory_sentences, "beam": sizes.beam},
        "import_only_mib": _peak_rss_mib(out, "automoe.translate", None),
        "models": {},
    }
    for row, path in models.items():
        args = [
            f"--model={path}",
            f"--pair={pair}",
            f"--input={text}",
            f"--beam={sizes.beam}",
            f"--threads={threads}",
        ]
        peak = _peak_rss_mib(out, "automoe.translate", args)
        record["models"][row] = {"peak_rss_mib": peak, "path": str(path)}
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")


def _peak_rss_mib(out: Path, module: str, args: list[str] | None) -> float:
    """Peak resident set of a fresh process running `module`'s main on `args` (None: only
    importing it), in MiB."""
    peak = out.with_name("peak_kb.txt")
    mode = "import" if args is None else "run"
    command = [sys.executable, "-c", _PEAK, str(peak), module, mode, *(args or [])]
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    kib = int(peak.read_text())
    peak.unlink()
    return kib / 1024
