"""fp32 vs bf16 on this machine: SuperNet training, scoring, decoding and latency.

Mixed precision (`automoe.precision`) keeps weights in fp32 and runs forward passes under
`torch.autocast`; whether that pays depends on the CPU and on the work. This benchmark
measures it where the library uses it. The two precisions always run interleaved, round by
round in rotating order (fp32 bf16, bf16 fp32, ...), so slow drifts of a shared machine hit
both alike; it reports medians over rounds and the median of the per-round ratios bf16/fp32.

Parts (`--part`, default all):

- train  : SuperNet training tokens/s by the trainer's own update (`Trainer`, with
           `TrainSettings.precision`) at the elastic benchmark's `mid` and `full` architectures
           of the multi30k space, pinned per measurement, on real Multi30k batches;
- score  : validation loss with inherited weights (the search's fitness, on its validation
           subset) of `--archs` sampled architectures in both precisions: architectures/s, and
           whether bf16 keeps their ranking (Kendall tau, target >= 0.95);
- decode : beam-4 translation of real test sentences, one at a time and in batches of 64, by
           the smallest, a middle and the largest extracted sub-network;
- latency: the same three models timed by the papers' latency protocol (`automoe.latency.measure`).

score, decode and latency need a trained SuperNet (`--supernet RUN`, only read); train takes
that run's data settings and tokenizer when given. Each part's result, with its command and
machine, goes into `precision.json` beside parts from earlier runs, and the tables into
`precision_tables.md`; both are rewritten after every part, so a kill loses only the part in
progress. `--quick` shrinks everything for a smoke run (and writes `*.quick.*`).

Usage: python benchmarks/bench_precision.py --supernet runs/m30k-ende [--part train,score]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import common
import torch
from bench_elastic import ARCHS as TRAIN_ARCHS
from bench_elastic import MID
from scipy.stats import kendalltau

import automoe.train.trainer
from automoe.argtypes import positive_int
from automoe.cost.flops import count_params
from automoe.data import Batch, collate
from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError, run_cli
from automoe.files import write_text_atomic
from automoe.latency.__main__ import sample_archs
from automoe.latency.measure import LatencySettings, latency_inputs, measure_latency
from automoe.precision import Precision, resolve_precision
from automoe.search.scoring import ArchScorer, ScoringSettings
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.decode import DecodeSettings, translate_ids
from automoe.supernet.model import Transformer, extract
from automoe.supernet.modes import inference
from automoe.supernet.supernet import SuperNet
from automoe.train.trainer import Trainer, TrainSettings

NAME = "precision"
TABLES = "precision_tables"
PRECISIONS = ("fp32", "bf16")
PARTS = ("train", "score", "decode", "latency")
NEEDS_SUPERNET = ("score", "decode", "latency")
TARGET_TAU = 0.95
BEAM = 4

# per-part sizes: (full measurement, --quick); an option given on the command line wins
SIZES: dict[str, tuple[int, int]] = {
    "train_steps": (3, 1),
    "train_rounds": (5, 2),
    "archs": (200, 10),
    "score_rounds": (8, 2),
    "valid_size": (200, 20),
    "batch": (64, 4),
    "sentences": (64, 8),
    "sentences_b1": (16, 2),
    "decode_rounds": (5, 2),
    "latency_rounds": (9, 2),
    "latency_runs": (20, 3),
    "latency_warmup": (5, 1),
}


def build_parser() -> argparse.ArgumentParser:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--part",
        type=parse_parts,
        default=PARTS,
        help=f"comma-separated parts to measure: {','.join(PARTS)} (default all)",
    )
    p.add_argument("--supernet", help="trained SuperNet run folder (read only)")
    p.add_argument("--data-dir", help="folder holding multi30k/ (else $AUTOMOE_DATA_DIR)")
    p.add_argument("--split", default="test_2016_flickr", help="sentences the decode part reads")
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, archs, sentences")
    for key, (full, quick) in SIZES.items():
        p.add_argument(
            "--" + key.replace("_", "-"),
            type=positive_int,
            help=f"default {full} ({quick} with --quick)",
        )
    p.add_argument("--wait-quiet", type=float, help="max s to wait for quiet CPUs (default 120)")
    p.add_argument("--out-md", type=Path, help=f"tables file (default <out>/{TABLES}.md)")
    p.add_argument(
        "--keep-contended",
        action="store_true",
        help="write a contended run under the plain names (default: '<name>.contended.*')",
    )
    return p


def parse_parts(text: str) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in parts if t not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {unknown or [text]}; choose from {','.join(PARTS)}"
        )
    return parts


def sizes(args: argparse.Namespace) -> dict[str, int]:
    """Each size as given, else its full or --quick default."""
    return {k: getattr(args, k) or v[int(args.quick)] for k, v in SIZES.items()}


# ---- pure helpers: splitting, summaries, agreement -------------------------------------------


def split_even(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """`items` cut into `parts` consecutive pieces whose sizes differ by at most one."""
    if not 0 < parts <= len(items):
        raise ValueError(f"cannot split {len(items)} items into {parts} non-empty parts")
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(list(items[start:end]))
        start = end
    return out


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and range of one precision's per-round figures (any unit)."""
    return {k.removesuffix("_s"): v for k, v in common.summary(values).items()}


def compare(values: Mapping[str, Sequence[float]], run: Mapping[str, Any]) -> dict[str, Any]:
    """Per-precision spread and the median per-round ratio bf16/fp32 of `values` (one figure
    per round) over the quiet rounds of `run` (all rounds when fewer than 3 were quiet;
    `contended` then says so), and the process CPU seconds per call, which a busy neighbour
    inflates less than wall time."""
    other_cores = run["other_cores"]
    used = common.quiet_rounds(other_cores, common.QUIET_CORES)
    found = sum(1 for load in other_cores if load < common.QUIET_CORES)
    fp32, bf16 = (common.pick(values[p], used) for p in PRECISIONS)
    cpu = {p: statistics.median(common.pick(run["variants"][p]["cpu"], used)) for p in PRECISIONS}
    return {
        "fp32": spread(fp32),
        "bf16": spread(bf16),
        "ratio_bf16_fp32": common.paired_ratio(bf16, fp32),
        "cpu_s_per_call": cpu,
        "ratios_per_round": [round(b / a, 4) for a, b in zip(fp32, bf16, strict=True)],
        "rounds": len(other_cores),
        "quiet_rounds": found,
        "rounds_used": used,
        "contended": found < min(3, len(other_cores)),
        "other_cores_per_round": list(other_cores),
        "samples": {p: [round(v, 6) for v in values[p]] for p in PRECISIONS},
    }


def agreement(fp32: Sequence[float], bf16: Sequence[float]) -> dict[str, Any]:
    """How far bf16 moves the losses of the same architectures, and whether their order holds."""
    tau = kendalltau(fp32, bf16)
    diffs = [abs(a - b) for a, b in zip(fp32, bf16, strict=True)]
    return {
        "kendall_tau": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
        "max_abs_diff": max(diffs),
        "mean_abs_diff": statistics.fmean(diffs),
        "same_best": _argmin(fp32) == _argmin(bf16),
        "tau_target": TARGET_TAU,
        "tau_met": bool(tau.statistic >= TARGET_TAU),
    }


def _argmin(values: Sequence[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


def middle_arch(space: SearchSpace, vocab_size: int, seed: int, count: int = 25) -> ArchConfig:
    """The elastic benchmark's `mid` where the space holds it; else the median-sized (by
    parameters) of `count` seeded samples."""
    if space.contains(MID):
        return MID
    archs = sample_archs(space, min(count, space.size()), seed)
    archs.sort(key=lambda a: count_params(a, qkv_dim=space.qkv_dim, vocab_size=vocab_size).total)
    return archs[len(archs) // 2]


# ---- timing ---------------------------------------------------------------------------------


def interleave(
    call: Callable[[str], float | None],
    rounds: int,
    warmup: int,
    args: argparse.Namespace,
    extra_rounds: bool = True,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """`call(precision)` for both precisions, interleaved (`common.interleaved`).

    Returns per precision the figure of every timed call (what `call` returns, or its wall
    seconds when it returns None), and the run (walls, other processes' cores per round).
    Contended rounds are made up by extra ones unless `extra_rounds` is False (or --quick).
    """
    figures: dict[str, list[float | None]] = {p: [] for p in PRECISIONS}

    def variant(p: str) -> None:
        figures[p].append(call(p))

    # --quick never adds rounds for contention: a smoke run must stay short
    max_rounds = args.max_rounds or (rounds if args.quick else None)
    if not extra_rounds:
        max_rounds = rounds
    run = common.interleaved(
        {p: partial(variant, p) for p in PRECISIONS}, rounds, warmup, max_rounds, args.wait_quiet
    )
    out = {}
    for p in PRECISIONS:
        timed = figures[p][warmup:]
        out[p] = [
            wall if f is None else f
            for f, wall in zip(timed, run["variants"][p]["wall"], strict=True)
        ]
    return out, run


@contextmanager
def pinned_arch(arch: ArchConfig) -> Iterator[None]:
    """The trainer's own update with its sub-network fixed to `arch` instead of sampled."""
    with mock.patch.object(automoe.train.trainer, "step_archs", lambda *_: [arch]):
        yield


# ---- parts ----------------------------------------------------------------------------------


def train_part(args: argparse.Namespace, size: dict[str, int], data: RunData) -> dict[str, Any]:
    """Training tokens/s of a multi30k-space SuperNet at `mid` and `full`, fp32 vs bf16."""
    batches = list(data.train_batcher().batches(0))
    archs = {key: train_arch(args, size, data, batches, arch) for key, arch in TRAIN_ARCHS.items()}
    return {
        "settings": {
            "space": "multi30k",
            "archs": list(TRAIN_ARCHS),
            "steps_per_call": size["train_steps"],
            "rounds": size["train_rounds"],
            "warmup_rounds": args.warmup,
            "data": data.settings.to_dict(),
            "model": "SuperNet.build defaults (dropout 0.1)",
            "train": {k: v for k, v in TrainSettings().to_dict().items() if k != "precision"},
            "step": "Trainer.train_step with its sub-network pinned: forward under "
            "autocast, fp32 label-smoothed loss + 0.01 x balance loss, backward, clip, Adam",
        },
        "archs": archs,
    }


def train_arch(
    args: argparse.Namespace,
    size: dict[str, int],
    data: RunData,
    batches: Sequence[Batch],
    arch: ArchConfig,
) -> dict[str, Any]:
    """One trainer per precision, from the same weights and on the same batches, interleaved."""
    space = SearchSpace.load("multi30k")
    trainers = {}
    with tempfile.TemporaryDirectory() as never_written:
        for p in PRECISIONS:
            torch.manual_seed(args.seed)
            net = SuperNet.build(
                space,
                data.tokenizer.vocab_size,
                max_positions=max(256, data.settings.max_len + 2),
                num_tasks=len(data.tasks),
                task_names=tuple(t.name for t in data.tasks),
            )
            trainers[p] = Trainer(
                net,
                lambda _epoch: batches,
                [],
                TrainSettings(precision=p, seed=args.seed),
                never_written,
            )
        tokens: dict[str, list[int]] = {p: [] for p in PRECISIONS}

        def steps(p: str) -> None:
            with pinned_arch(arch):
                rows = [trainers[p].train_step() for _ in range(size["train_steps"])]
            tokens[p].append(sum(row["tokens"] for row in rows))

        walls, run = interleave(steps, size["train_rounds"], args.warmup, args)
    timed = {p: tokens[p][args.warmup :] for p in PRECISIONS}
    rates = {p: [n / w for n, w in zip(timed[p], walls[p], strict=True)] for p in PRECISIONS}
    active = extract(trainers["fp32"].net, arch)
    return {
        "arch": arch.to_dict(),
        "active_params": sum(x.numel() for x in active.parameters()),
        "tokens_per_s": compare(rates, run),
        "tokens_per_call": timed["fp32"],
        "same_tokens": timed["fp32"] == timed["bf16"],
        "precision": {p: trainers[p].precision.record() for p in PRECISIONS},
    }


def score_part(
    args: argparse.Namespace, size: dict[str, int], scorers: Mapping[str, ArchScorer]
) -> dict[str, Any]:
    """Validation losses of sampled archs in both precisions, as the search scores them (a
    bf16 scorer holds bf16 weight matrices): speed and rank agreement."""
    scorer = scorers["fp32"]
    space = scorer.net.space
    archs = sample_archs(space, min(size["archs"], space.size()), args.seed)
    chunks = split_even(archs, min(size["score_rounds"], len(archs)))
    todo = {p: iter(chunks) for p in PRECISIONS}
    losses: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for p in PRECISIONS:  # untimed warm-up, outside the lists
        scorers[p](space.largest())

    def score(p: str) -> float:
        chunk = next(todo[p])
        start = len(losses[p])
        losses[p].extend(scorers[p](a)["loss"] for a in chunk)
        return float(len(losses[p]) - start)

    counts, run = interleave(score, len(chunks), 0, args, extra_rounds=False)
    rates = {
        p: [n / w for n, w in zip(counts[p], run["variants"][p]["wall"], strict=True)]
        for p in PRECISIONS
    }
    return {
        "settings": {
            "supernet": args.supernet,
            "archs": len(archs),
            "rounds": len(chunks),
            "seed": args.seed,
            "valid_sentences": len(scorer.examples),
            "valid_batches": len(scorer.batches),
            "metric": "label-smoothed (0.1) validation loss per target token",
        },
        "archs_per_s": compare(rates, run),
        "agreement": agreement(losses["fp32"], losses["bf16"]),
        "losses": {p: [round(x, 6) for x in losses[p]] for p in PRECISIONS},
        "arch_keys": [a.key() for a in archs],
    }


def three_models(
    scorer: ArchScorer, seed: int, precisions: Mapping[str, Precision]
) -> dict[str, tuple[ArchConfig, dict[str, Transformer]]]:
    """Smallest, middle and largest extracted, once per precision: the bf16 copy holds bf16
    weight matrices, as `translate` and `latency` run a model in bf16."""
    net = scorer.net
    archs = {
        "smallest": net.space.smallest(),
        "middle": middle_arch(net.space, net.config.vocab_size, seed),
        "largest": net.space.largest(),
    }
    return {
        name: (arch, {p: precisions[p].for_inference(extract(net, arch)) for p in PRECISIONS})
        for name, arch in archs.items()
    }


def translate(model: Transformer, batches: Sequence[Batch]) -> list[list[int]]:
    settings = DecodeSettings(beam_size=BEAM)
    out: list[list[int]] = []
    with inference(model):
        for b in batches:
            out += translate_ids(
                model, b.src_tokens, b.src_padding_mask, None, settings, b.task_ids
            )
    return out


def decode_part(
    args: argparse.Namespace,
    size: dict[str, int],
    scorer: ArchScorer,
    models: Mapping[str, tuple[ArchConfig, dict[str, Transformer]]],
    precisions: Mapping[str, Precision],
) -> dict[str, Any]:
    """Sentences/s of beam search at batch 1 and batch `--batch`, fp32 vs bf16."""
    examples = scorer.data.task_examples(args.split, 0)
    big = examples[: size["sentences"]]
    setups = {
        "1": [collate([e]) for e in examples[: size["sentences_b1"]]],
        str(size["batch"]): [
            collate(big[i : i + size["batch"]]) for i in range(0, len(big), size["batch"])
        ],
    }
    out: dict[str, Any] = {}
    for name, (arch, model) in models.items():
        params = sum(x.numel() for x in model["fp32"].parameters())
        out[name] = {"arch": arch.to_dict(), "params": params}
        for batch, batches in setups.items():
            last: dict[str, list[list[int]]] = {}

            def run_decode(
                p: str, model: dict = model, batches: list = batches, last: dict = last
            ) -> None:
                with precisions[p].autocast():
                    last[p] = translate(model[p], batches)

            walls, run = interleave(run_decode, size["decode_rounds"], args.warmup, args)
            n = sum(len(b) for b in batches)
            rates = {p: [n / w for w in walls[p]] for p in PRECISIONS}
            same = sum(a == b for a, b in zip(last["fp32"], last["bf16"], strict=True))
            out[name][f"batch_{batch}"] = {
                "sentences": n,
                "sentences_per_s": compare(rates, run),
                "output_tokens": {p: sum(map(len, last[p])) for p in PRECISIONS},
                "same_output_share": same / n,
            }
    pair = scorer.data.tasks[0].name
    return {
        "settings": {
            "supernet": args.supernet,
            "split": args.split,
            "pair": pair,
            "beam": BEAM,
            "batches": {k: [len(b) for b in v] for k, v in setups.items()},
            "rounds": size["decode_rounds"],
            "warmup_rounds": args.warmup,
            "decode": "automoe.supernet.decode.translate_ids, beam 4, length penalty 0.6",
        },
        "models": out,
    }


def latency_part(
    args: argparse.Namespace,
    size: dict[str, int],
    scorer: ArchScorer,
    models: Mapping[str, tuple[ArchConfig, dict[str, Transformer]]],
    precisions: Mapping[str, Precision],
) -> dict[str, Any]:
    """The papers' latency protocol per model, fp32 vs bf16, one protocol call per round."""
    settings = replace(LatencySettings(), runs=size["latency_runs"], warmup=size["latency_warmup"])
    inputs = latency_inputs(scorer.data.tokenizer, args.data_dir, settings)
    out: dict[str, Any] = {}
    for name, (arch, model) in models.items():
        parts: dict[str, list[tuple[float, float]]] = {p: [] for p in PRECISIONS}

        def timed(p: str, model: dict = model, parts: dict = parts) -> float:
            with precisions[p].autocast():
                result = measure_latency(model[p], inputs, settings)
            parts[p].append((result.encoder_ms, result.decoder_ms))
            return result.latency_ms

        ms, run = interleave(timed, size["latency_rounds"], args.warmup, args)
        cut = args.warmup
        out[name] = {
            "arch": arch.to_dict(),
            "latency_ms": compare(ms, run),
            "encoder_ms": {p: statistics.median(e for e, _ in parts[p][cut:]) for p in PRECISIONS},
            "decoder_ms": {p: statistics.median(d for _, d in parts[p][cut:]) for p in PRECISIONS},
        }
    return {
        "settings": {
            "supernet": args.supernet,
            "protocol": settings.to_dict(),
            "rounds": size["latency_rounds"],
            "warmup_rounds": args.warmup,
            "figure": "per round: the protocol's trimmed mean (encoder + decoder) of one call",
        },
        "models": out,
    }


# ---- output ---------------------------------------------------------------------------------


def _fmt(s: Mapping[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['q1']:.{digits}f}-{s['q3']:.{digits}f})"


def _row(label: Sequence[str], c: Mapping[str, Any], digits: int = 1) -> list[str]:
    rounds = f"{c['quiet_rounds']}/{c['rounds']}" + (" contended" if c["contended"] else "")
    return [
        *label,
        _fmt(c["fp32"], digits),
        _fmt(c["bf16"], digits),
        f"{c['ratio_bf16_fp32']:.3f}",
        rounds,
        " / ".join(f"{c['cpu_s_per_call'][p]:.3g}" for p in PRECISIONS),
    ]


RATIO_HEAD = ["bf16/fp32 (median per round)", "quiet/all rounds", "CPU s per call fp32 / bf16"]


def part_markdown(part: str, entry: Mapping[str, Any]) -> str:
    """The tables of one measured part, with the command and machine that produced it."""
    r = entry["result"]
    lines = [f"## {part}", common.machine_markdown(entry["machine"])]
    lines.append(f"- `resolve_precision('auto')` here: {entry['auto']}")
    if part == "train":
        rows = [
            _row([key, f"{v['active_params']:,}"], v["tokens_per_s"], 0)
            for key, v in r["archs"].items()
        ]
        s = r["settings"]
        lines += [
            f"- {s['step']}; {s['steps_per_call']} steps per call, {s['rounds']} rounds after "
            f"{s['warmup_rounds']} warm-up; batches of at most {s['data']['max_tokens']} tokens",
            common.markdown_table(
                [
                    "arch",
                    "active params",
                    "fp32 tokens/s (IQR)",
                    "bf16 tokens/s (IQR)",
                    *RATIO_HEAD,
                ],
                rows,
            ),
        ]
    elif part == "score":
        a, s = r["agreement"], r["settings"]
        verdict = "met" if a["tau_met"] else "NOT met"
        lines += [
            f"- {s['archs']} sampled architectures (seed {s['seed']}) in {s['rounds']} rounds; "
            f"{s['valid_sentences']} validation sentences ({s['valid_batches']} batches)",
            common.markdown_table(
                ["", "fp32 archs/s (IQR)", "bf16 archs/s (IQR)", *RATIO_HEAD],
                [_row(["scoring"], r["archs_per_s"], 2)],
            ),
            f"**Kendall tau fp32 vs bf16 losses: {a['kendall_tau']:.4f} (target >= "
            f"{a['tau_target']}: {verdict})**; |loss difference| max {a['max_abs_diff']:.4f}, "
            f"mean {a['mean_abs_diff']:.4f}; same best architecture: {a['same_best']}.",
        ]
    elif part == "decode":
        rows = []
        for name, m in r["models"].items():
            for key, v in m.items():
                if key.startswith("batch_"):
                    label = [name, key.removeprefix("batch_"), str(v["sentences"])]
                    rows.append(
                        [*_row(label, v["sentences_per_s"], 2), f"{v['same_output_share']:.0%}"]
                    )
        lines += [
            f"- beam {r['settings']['beam']}, {r['settings']['pair']} {r['settings']['split']} "
            f"sentences; {r['settings']['rounds']} rounds after {r['settings']['warmup_rounds']} "
            "warm-up",
            common.markdown_table(
                [
                    "model",
                    "batch",
                    "sentences",
                    "fp32 sent/s (IQR)",
                    "bf16 sent/s (IQR)",
                    *RATIO_HEAD,
                    "same output",
                ],
                rows,
            ),
        ]
    else:
        rows = [
            [
                *_row([name], m["latency_ms"], 2),
                f"{m['encoder_ms']['fp32']:.1f} / {m['encoder_ms']['bf16']:.1f}",
                f"{m['decoder_ms']['fp32']:.1f} / {m['decoder_ms']['bf16']:.1f}",
            ]
            for name, m in r["models"].items()
        ]
        proto = r["settings"]["protocol"]
        lines += [
            f"- protocol: batch 1, {proto['src_len']}-token source, {proto['tgt_len']} decoder "
            f"steps, beam {proto['beam']}, {proto['warmup']} warm-up + {proto['runs']} runs per "
            f"call ({proto['trim']:.0%} trimmed mean); {r['settings']['rounds']} rounds",
            common.markdown_table(
                [
                    "model",
                    "fp32 ms (IQR over rounds)",
                    "bf16 ms (IQR)",
                    *RATIO_HEAD,
                    "encoder ms fp32 / bf16",
                    "decoder ms fp32 / bf16",
                ],
                rows,
            ),
        ]
    return "\n\n".join(lines)


def markdown(payload: Mapping[str, Any]) -> str:
    parts = payload["parts"]
    intro = (
        "Interleaved rounds (fp32 and bf16 alternate, rotating order); figures are medians over "
        "the quiet rounds (all rounds when fewer than 3 were quiet: marked 'contended') with "
        "quartiles in brackets; the ratio is the median over rounds of bf16/fp32 in the same round."
    )
    body = [part_markdown(p, parts[p]) for p in PARTS if p in parts]
    return "\n\n".join(["# fp32 vs bf16 (mixed precision): tables", intro, *body])


def write(paths: tuple[Path, Path], payload: Mapping[str, Any]) -> None:
    json_path, md_path = paths
    write_text_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    write_text_atomic(md_path, markdown(payload) + "\n")
    print(f"wrote {json_path} and {md_path}")


def output_paths(args: argparse.Namespace, contended: bool) -> tuple[Path, Path]:
    tag = (".quick" if args.quick else "") + (
        ".contended" if contended and not args.keep_contended else ""
    )
    md = args.out_md if args.out_md and not tag else None
    return args.out / f"{NAME}{tag}.json", md or args.out / f"{TABLES}{tag}.md"


def earlier(path: Path) -> dict[str, Any]:
    """The parts an earlier run stored in `path` (none when absent or unreadable)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return old.get("parts", {}) if isinstance(old, dict) else {}


def contended(result: Mapping[str, Any]) -> bool:
    """True when any comparison inside a part's result ran on a contended machine."""
    if isinstance(result, Mapping):
        if result.get("contended") is True:
            return True
        return any(contended(v) for v in result.values())
    return False


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 120.0
    if args.warmup is None:
        args.warmup = 1
    if args.repeats is not None:  # one round count for every part
        for key in ("train_rounds", "score_rounds", "decode_rounds", "latency_rounds"):
            setattr(args, key, getattr(args, key) or args.repeats)
    size = sizes(args)
    needing = [p for p in args.part if p in NEEDS_SUPERNET]
    if needing and not args.supernet:
        raise AutomoeError(
            f"--part {','.join(needing)} needs a trained SuperNet: add --supernet RUN_FOLDER"
        )
    common.set_threads(args.threads)
    precisions = {p: resolve_precision(p) for p in PRECISIONS}
    if precisions["bf16"].name != "bf16":
        raise AutomoeError(
            f"nothing to compare: bf16 runs as fp32 on this machine ({precisions['bf16'].reason})"
        )
    auto = resolve_precision("auto").line()
    print(auto)
    scorers: dict[str, ArchScorer] = {}
    if args.supernet:  # loaded and checked before anything is timed or written
        scorers = {
            p: ArchScorer(
                ScoringSettings(
                    args.supernet,
                    valid_size=size["valid_size"],
                    data_dir=args.data_dir,
                    precision=p,
                )
            )
            for p in PRECISIONS
        }
    scorer = scorers.get("fp32")
    data = scorer.data if scorer else RunData(DataSettings(), args.data_dir)
    models = {}
    if scorer and {"decode", "latency"} & set(args.part):
        models = three_models(scorer, args.seed, precisions)

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "train": lambda: train_part(args, size, data),
        "score": lambda: score_part(args, size, scorers),
        "decode": lambda: decode_part(args, size, scorer, models, precisions),
        "latency": lambda: latency_part(args, size, scorer, models, precisions),
    }
    done: dict[str, Any] = {}
    for part in args.part:
        info = common.machine_info(args.threads, None if argv is None else [__file__, *argv])
        quiet = common.wait_for_quiet(args.wait_quiet) if args.wait_quiet else None
        with common.CpuMonitor() as mon:
            result = runners[part]()
        done[part] = {
            "machine": info,
            "auto": auto,
            "quiet_wait_before_part": quiet,
            "other_processes_cores_during_part": round(mon.other_cores, 3),
            "sizes": size,
            "result": result,
        }
        print(part_markdown(part, done[part]))
        if not args.no_write:
            paths = output_paths(args, any(contended(e["result"]) for e in done.values()))
            merged = {**earlier(paths[0]), **done}
            write(paths, {"benchmark": NAME, "parts": {p: merged[p] for p in PARTS if p in merged}})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
