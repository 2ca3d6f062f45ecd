"""Measured inference latency of one model under the papers' protocol.

Default protocol (AutoMoE/HAT): batch 1, a 30-token source; the encoder once, then 30
incremental decoder steps with the key/value cache over a beam of 5, warm-up runs, then
timed runs summarised by a 10% trimmed mean of encoder plus decoder time. Unlike the released
code, the model runs in eval mode without autograd, and inputs are real sentences: a constant
dummy input sends every token to the same expert and misstates a MoE model's latency.

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
from automoe.errors import AutomoeError
from automoe.experiment import DataSettings, RunData
from automoe.supernet.model import Transformer
from automoe.supernet.modes import inference

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


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


def latency_inputs(
    tokenizer: Tokenizer, data_dir: str | None, settings: LatencySettings
) -> tuple[list[list[int]], list[list[int]]]:
    """Real Multi30k en-de validation text cut into protocol-length sources and targets."""
    data = RunData(DataSettings(), data_dir, tokenizer=tokenizer)
    examples = data.examples("val")
    sources = reference_inputs([e.src for e in examples], settings.src_len, settings.runs)
    targets = reference_inputs([e.tgt for e in examples], settings.tgt_len, settings.runs)
    return sources, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_once(
    model: Transformer, src: Tensor, tgt: Tensor, beam: int, order: Tensor, clock: str
) -> tuple[float, float]:
    """Seconds for the encoder and for the incremental decoder over one input pair."""
    now = CLOCKS[clock]
    device = src.device
    padding = torch.zeros_like(src, dtype=torch.bool)
    _sync(device)
    started = now()
    enc = model.encode(src, padding)
    _sync(device)
    encoded = now()
    enc = enc.index_select(torch.zeros(beam, dtype=torch.long, device=device))
    cache: list = []
    for step in range(tgt.shape[1]):
        tokens = tgt[:, step : step + 1].expand(beam, 1)
        model.decode(tokens, enc, cache=cache, start=step)
        model.reorder_cache(cache, order)
    _sync(device)
    return encoded - started, now() - encoded


def measure_latency(
    model: Transformer,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    settings: LatencySettings | None = None,
    reference: Transformer | None = None,
) -> LatencyResult:
    """Time `model` (an extracted sub-network) on real inputs, cycling through them per run.

    The decoder is fed the reference target's tokens at every beam row and reorders its cache
    each step as beam search does, so cost is that of real decoding without search noise.
    With a `reference` model, each run of `model` is followed by one of the reference on the
    same input, so both see the machine at the same speed (see the module docstring).
    """
    s = settings or LatencySettings()
    if not sources or len(sources) != len(targets):
        raise AutomoeError("latency needs as many target as source inputs, at least one")
    device = model.embed.weight.device
    if s.clock == "cpu" and device.type != "cpu":
        raise AutomoeError("the cpu clock times CPU work only; use clock 'wall' on a GPU")
    if reference is not None and reference.embed.weight.device != device:
        raise AutomoeError("the reference model must be on the same device as the model")
    order = torch.arange(s.beam, device=device).roll(1)
    pairs = [
        (
            torch.tensor([src[: s.src_len]], device=device),
            torch.tensor([tgt[: s.tgt_len]], device=device),
        )
        for src, tgt in zip(sources, targets, strict=True)
    ]
    enc_times, dec_times, ref_times = [], [], []
    with inference(model), inference(reference) if reference is not None else nullcontext():
        for i in range(s.warmup + s.runs):
            src, tgt = pairs[i % len(pairs)]
            enc_s, dec_s = _run_once(model, src, tgt, s.beam, order, s.clock)
            ref_s = (
                sum(_run_once(reference, src, tgt, s.beam, order, s.clock))
                if reference is not None
                else 0.0
            )
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
