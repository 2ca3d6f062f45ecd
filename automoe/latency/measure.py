"""Measured inference latency of one model under the papers' protocol.

Default protocol (AutoMoE/HAT): batch 1, a 30-token source; the encoder once, then 30
incremental decoder steps with the key/value cache over a beam of 5, warm-up runs, then
timed runs summarised by a 10% trimmed mean of encoder plus decoder time. Unlike the released
code, the model runs in eval mode without autograd, and inputs are real sentences: a constant
dummy input sends every token to the same expert and misstates a MoE model's latency. The
inputs carry their translation pair, which each timed model turns into its own task id, so
sentence- and task-routed sub-networks route as they would on that text.

The clock is wall time by default (the papers'). `clock="cpu"` reads the process's CPU time
instead: with one thread on a shared machine, time other processes take from the core is not
charged to the model, so a busy neighbour no longer inflates the figure (it still shares
caches and memory bandwidth, or a hyperthread's core). With several threads CPU time sums
them; use it with one.

A shared or virtual machine also changes speed over seconds (another tenant on the host, the
clock frequency): the same model timed twice a minute apart can differ by 10-20% on either
clock. A reference model timed on the same input right after every run moves with the
machine, so the ratio of the two is steady; `LatencyResult.rescaled` turns that ratio back into
milliseconds at one fixed speed of the reference, measured once and reused.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from automoe.data import Tokenizer
from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError
from automoe.supernet.model import Transformer
from automoe.supernet.modes import inference

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
LATENCY_PAIR = "en-de"  # the papers' protocol times Multi30k/WMT en-de text


@dataclass(frozen=True)
class LatencySettings:
    src_len: int = 30
    tgt_len: int = 30
    beam: int = 5
    warmup: int = 5
    runs: int = 20
    trim: float = 0.1
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise AutomoeError(f"unknown clock {self.clock!r}; choices: {', '.join(CLOCKS)}")
        if min(self.src_len, self.tgt_len, self.beam, self.runs) < 1 or self.warmup < 0:
            raise AutomoeError(f"latency settings must be positive: {self}")
        if not 0.0 <= self.trim < 0.5:
            raise AutomoeError(f"trim must be in [0, 0.5), got {self.trim}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyResult:
    """Milliseconds: trimmed means (the headline), medians and spread over the timed runs.

    `reference_ms` is the reference model's trimmed mean over runs paired with these (None
    when timed without one).
    """

    latency_ms: float
    encoder_ms: float
    decoder_ms: float
    median_ms: float
    iqr_ms: float
    runs: int
    reference_ms: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def rescaled(self, reference_ms: float) -> LatencyResult:
        """Every figure as if the machine had run the reference in `reference_ms`."""
        if self.reference_ms is None:
            raise AutomoeError("only a latency timed against a reference model can be rescaled")
        if reference_ms <= 0:
            raise AutomoeError(f"a reference latency must be positive, got {reference_ms}")
        factor = reference_ms / self.reference_ms
        return LatencyResult(
            latency_ms=self.latency_ms * factor,
            encoder_ms=self.encoder_ms * factor,
            decoder_ms=self.decoder_ms * factor,
            median_ms=self.median_ms * factor,
            iqr_ms=self.iqr_ms * factor,
            runs=self.runs,
            reference_ms=reference_ms,
        )


def trimmed_mean(values: Sequence[float], trim: float) -> float:
    """Mean after dropping the `trim` fraction of lowest and of highest values."""
    ordered = sorted(values)
    cut = int(len(ordered) * trim)
    kept = ordered[cut : len(ordered) - cut] or ordered
    return sum(kept) / len(kept)


def reference_inputs(
    sequences: Sequence[Sequence[int]], length: int, count: int
) -> list[list[int]]:
    """`count` token sequences of exactly `length` real tokens, cut from a running text.

    Sentences are concatenated and cut, so every input is real text of the protocol's length
    whatever the corpus's sentence lengths.
    """
    stream = [t for seq in sequences for t in seq]
    if len(stream) < length:
        raise AutomoeError(
            f"need at least {length} tokens of text for latency inputs, got {len(stream)}"
        )
    out = []
    for i in range(count):
        start = (i * length) % (len(stream) - length + 1)
        out.append(stream[start : start + length])
    return out


@dataclass(frozen=True)
class LatencyInputs:
    """Source and target token sequences of real text, all of one translation `pair`.

    The pair, not a task id, travels with the text: task ids are numbered per model (in the
    order it was trained on its pairs), so each timed model looks up its own.
    """

    sources: list[list[int]]
    targets: list[list[int]]
    pair: str = LATENCY_PAIR

    def __post_init__(self) -> None:
        if not self.sources or len(self.sources) != len(self.targets):
            raise AutomoeError("latency needs as many target as source inputs, at least one")

    def task_id(self, model: Transformer) -> int:
        """`model`'s task id for the pair; 0 for a model that records no task names."""
        return model.task_id(self.pair) if model.config.task_names else 0


def latency_inputs(
    tokenizer: Tokenizer, data_dir: str | None, settings: LatencySettings
) -> LatencyInputs:
    """Real Multi30k validation text of `LATENCY_PAIR` cut into protocol-length inputs."""
    data = RunData(DataSettings(pairs=(LATENCY_PAIR,)), data_dir, tokenizer=tokenizer)
    examples = data.examples("val")
    return LatencyInputs(
        reference_inputs([e.src for e in examples], settings.src_len, settings.runs),
        reference_inputs([e.tgt for e in examples], settings.tgt_len, settings.runs),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Timed:
    """A model with what its runs need besides the text, made before any timing."""

    model: Transformer
    task: Tensor  # [1]: the model's task id of the inputs' pair
    beam_tasks: Tensor  # [beam]: the same for every beam row
    order: Tensor  # [beam]: the reordering of the cache at every step, as beam search does


def _timed(model: Transformer, inputs: LatencyInputs, beam: int) -> _Timed:
    device = model.embed.weight.device
    task = torch.tensor([inputs.task_id(model)], device=device)
    return _Timed(model, task, task.expand(beam), torch.arange(beam, device=device).roll(1))


def _run_once(timed: _Timed, src: Tensor, tgt: Tensor, clock: str) -> tuple[float, float]:
    """Seconds for the encoder and for the incremental decoder over one input pair."""
    now = CLOCKS[clock]
    model, beam = timed.model, len(timed.beam_tasks)
    device = src.device
    padding = torch.zeros_like(src, dtype=torch.bool)
    _sync(device)
    started = now()
    enc = model.encode(src, padding, task_ids=timed.task)
    _sync(device)
    encoded = now()
    enc = enc.index_select(torch.zeros(beam, dtype=torch.long, device=device))
    cache: list = []
    for step in range(tgt.shape[1]):
        tokens = tgt[:, step : step + 1].expand(beam, 1)
        model.decode(tokens, enc, task_ids=timed.beam_tasks, cache=cache, start=step)
        model.reorder_cache(cache, timed.order)
    _sync(device)
    return encoded - started, now() - encoded


def measure_latency(
    model: Transformer,
    inputs: LatencyInputs,
    settings: LatencySettings | None = None,
    reference: Transformer | None = None,
) -> LatencyResult:
    """Time `model` (an extracted sub-network) on real inputs, cycling through them per run.

    The decoder is fed the reference target's tokens at every beam row and reorders its cache
    each step as beam search does, so cost is that of real decoding without search noise.
    Every sentence and beam row carries the model's task id of the inputs' pair.
    With a `reference` model, each run of `model` is followed by one of the reference on the
    same input, so both see the machine at the same speed (see the module docstring).
    """
    s = settings or LatencySettings()
    device = model.embed.weight.device
    if s.clock == "cpu" and device.type != "cpu":
        raise AutomoeError("the cpu clock times CPU work only; use clock 'wall' on a GPU")
    if reference is not None and reference.embed.weight.device != device:
        raise AutomoeError("the reference model must be on the same device as the model")
    timed = _timed(model, inputs, s.beam)
    paired = _timed(reference, inputs, s.beam) if reference is not None else None
    pairs = [
        (
            torch.tensor([src[: s.src_len]], device=device),
            torch.tensor([tgt[: s.tgt_len]], device=device),
        )
        for src, tgt in zip(inputs.sources, inputs.targets, strict=True)
    ]
    enc_times, dec_times, ref_times = [], [], []
    with inference(model), inference(reference) if reference is not None else nullcontext():
        for i in range(s.warmup + s.runs):
            src, tgt = pairs[i % len(pairs)]
            enc_s, dec_s = _run_once(timed, src, tgt, s.clock)
            ref_s = sum(_run_once(paired, src, tgt, s.clock)) if paired is not None else 0.0
            if i >= s.warmup:
                enc_times.append(enc_s * 1e3)
                dec_times.append(dec_s * 1e3)
                ref_times.append(ref_s * 1e3)
    totals = [e + d for e, d in zip(enc_times, dec_times, strict=True)]
    quartiles = statistics.quantiles(totals, n=4) if len(totals) > 1 else [totals[0]] * 3
    encoder = trimmed_mean(enc_times, s.trim)
    decoder = trimmed_mean(dec_times, s.trim)
    return LatencyResult(
        latency_ms=encoder + decoder,
        encoder_ms=encoder,
        decoder_ms=decoder,
        median_ms=statistics.median(totals),
        iqr_ms=quartiles[2] - quartiles[0],
        runs=s.runs,
        reference_ms=trimmed_mean(ref_times, s.trim) if reference is not None else None,
    )
