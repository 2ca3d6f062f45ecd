"""`python -m automoe.latency`: measure sub-network latency, or build a latency dataset.

    measure   one architecture of a SuperNet run (or an extracted model file)
    dataset   K architectures sampled from a space, one CSV row each, resumable
    merge     the per-architecture mean of several passes of one dataset

With a SuperNet (`--model`/`--supernet`), models carry trained router weights and are timed
on real sentences; without one, weights are random (routing untrained, every router of the
space present) and the output says so.

A dataset is written only once its first architecture is measured (CSV and sidecar), so a run
that fails on its inputs leaves nothing behind; each further row is flushed to disk as it is
measured, and a row cut short by a kill is dropped on the next run and measured again.

On a machine whose speed drifts (shared or virtual), `--reference smallest` times a reference
sub-network right after every run and reports each latency at one fixed speed of that
reference: measured once when a dataset starts (kept in its sidecar, so a resumed or
extended dataset uses the same), or given with `--reference-ms`. `raw_ms` keeps the
unscaled figure and `reference_ms` the reference's own, as timed beside it.

`--precision` (fp32, bf16, auto; `automoe.precision`) sets the number format every model,
the reference included, is timed in. It is resolved once per run and recorded with the result
(the dataset's sidecar, `measure`'s report): a dataset is only resumed or merged in the format
it was measured in (fp32 for sidecars that record none), and a predictor fitted on it carries
the format, so latencies of one format never pass for another's.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from automoe.argtypes import nonnegative_int, positive_float, positive_int
from automoe.cost.machine import machine_info
from automoe.data import Tokenizer
from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError, run_cli
from automoe.files import atomic_path, write_text_atomic
from automoe.latency.measure import LatencyInputs, LatencySettings, latency_inputs, measure_latency
from automoe.precision import Precision, add_precision_option, resolve_precision
from automoe.predictors.data import precision_option, recorded_precision, sidecar_path
from automoe.predictors.features import ArchFeatures
from automoe.runs import load_model_file, pick_device, resolve_arch
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.model import ModelConfig, Transformer, extract
from automoe.supernet.supernet import SuperNet

RESULT_COLUMNS = [
    "arch_key",
    "arch",
    "latency_ms",
    "encoder_ms",
    "decoder_ms",
    "median_ms",
    "iqr_ms",
    "runs",
    "weights",
    "reference_ms",
    "raw_ms",
]
# Sidecar keys a resumed dataset or a merged pass need not repeat as a whole: the machine may
# change between runs, and a precision is compared by its resolved name (its reason varies).
NOT_COMPARED = ("machine", "precision")


def _add_protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=positive_int, default=20, help="timed runs per architecture")
    p.add_argument("--warmup", type=nonnegative_int, default=5, help="untimed runs first")
    p.add_argument("--beam", type=positive_int, default=5, help="decoder batch (beam) size")
    p.add_argument("--src-len", type=positive_int, default=30)
    p.add_argument("--tgt-len", type=positive_int, default=30, help="incremental decoder steps")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (fixed)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time (default, the papers') or process CPU time, which a busy neighbour "
        "does not inflate (use with --threads 1)",
    )
    p.add_argument(
        "--reference",
        help="largest, smallest or an arch file: a reference sub-network timed after every run "
        "to cancel the machine's speed drift (needs a SuperNet, or --space for random weights)",
    )
    p.add_argument(
        "--reference-ms",
        type=positive_float,
        help="the reference's latency at the speed to report (default: measured once)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    add_precision_option(p, "every model is timed in")
    p.add_argument("--data-dir", help="folder holding multi30k/ (for the real sentences)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.latency", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="latency of one architecture")
    m.add_argument("--model", required=True, help="run folder, SuperNet or extracted model")
    m.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    _add_protocol(m)
    d = sub.add_parser("dataset", help="latency CSV of sampled architectures")
    d.add_argument("--out", required=True, help="CSV to write (appended; a rerun resumes)")
    d.add_argument("--space", default="multi30k", help="preset name or YAML file")
    d.add_argument("--supernet", help="run folder or SuperNet file (trained routers)")
    d.add_argument("--count", type=positive_int, default=500)
    d.add_argument("--seed", type=nonnegative_int, default=0)
    d.add_argument("--no-progress", action="store_true")
    _add_protocol(d)
    g = sub.add_parser("merge", help="mean of several passes over the same architectures")
    g.add_argument("datasets", nargs="+", help="latency CSVs of one protocol and arch list")
    g.add_argument("--out", required=True, help="CSV to write (with its sidecar)")
    return p


def _settings(args: argparse.Namespace) -> LatencySettings:
    return LatencySettings(
        src_len=args.src_len,
        tgt_len=args.tgt_len,
        beam=args.beam,
        warmup=args.warmup,
        runs=args.runs,
        clock=args.clock,
    )


def _reference_arch(spec: str, space: SearchSpace) -> ArchConfig:
    if spec in ("largest", "smallest"):
        return getattr(space, spec)()
    arch = ArchConfig.load(spec)
    space.validate(arch)
    return arch


def _calibrated(reference: Transformer, inputs: LatencyInputs, settings: LatencySettings) -> float:
    """The reference's own latency over five times the timed runs: the speed to report at."""
    longer = dataclasses.replace(settings, runs=settings.runs * 5)
    return measure_latency(reference, inputs, longer).latency_ms


def _precision(args: argparse.Namespace, device: torch.device) -> Precision:
    """The run's one precision, announced on stderr (`measure`'s stdout is its JSON report)."""
    precision = resolve_precision(args.precision, device)
    if precision.notice():
        print(precision.notice(), file=sys.stderr)
    return precision


def measure(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    precision = _precision(args, device)
    model, tokenizer = load_model_file(args.model)
    arch = resolve_arch(args.arch, model)
    settings = _settings(args)
    inputs = latency_inputs(tokenizer, args.data_dir, settings)
    reference = None
    if args.reference:
        if not isinstance(model, SuperNet):
            raise AutomoeError("--reference needs a SuperNet run; this is an extracted model")
        reference = extract(model, resolve_arch(args.reference, model)).to(device)
        precision.for_inference(reference)
    sub = extract(model, arch) if isinstance(model, SuperNet) else model
    precision.for_inference(sub.to(device))
    with precision.autocast():
        raw = measure_latency(sub, inputs, settings, reference)
    result, extra = raw, {}
    if reference is not None:
        with precision.autocast():
            speed = args.reference_ms or _calibrated(reference, inputs, settings)
        result = raw.rescaled(speed)
        extra = {
            "raw_ms": raw.latency_ms,
            "reference_ms": raw.reference_ms,
            "reference": {"arch": reference.default_arch.to_dict(), "ms": speed},
        }
    report = {
        "arch_key": arch.key(),
        **result.to_dict(),
        **extra,
        "weights": "trained",
        "inputs": "real sentences (Multi30k val, en-de)",
        "protocol": {**settings.to_dict(), "threads": args.threads},
        "precision": precision.record(),
        "machine": machine_info(device),
    }
    print(json.dumps(report, indent=2))
    return 0


@dataclasses.dataclass(frozen=True)
class CsvContent:
    """A dataset CSV's header and whole rows, and how many of its bytes hold them."""

    header: list[str]
    rows: list[list[str]]
    whole_bytes: int
    size: int

    @property
    def torn(self) -> bool:
        return self.whole_bytes < self.size


def read_csv(path: Path) -> CsvContent:
    """The rows of a dataset CSV, without a last row cut short by a kill during its append.

    Such a row lacks its line end or some of its cells; cells never hold line breaks, so
    every whole row is one line. A damaged row before the last is not a kill's trace: refused.
    """
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    lines = list(csv.reader(io.StringIO(data[:whole].decode(), newline="")))
    header = lines[0] if lines else []
    rows = lines[1:]
    if rows and len(rows[-1]) != len(header):
        rows.pop()
        whole = data.rfind(b"\n", 0, whole - 1) + 1
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise AutomoeError(
                f"{path}: line {number} has {len(row)} cells, not {len(header)}; the file is "
                "damaged: restore it, or delete the line to measure that architecture again"
            )
    return CsvContent(header, rows, whole, len(data))


def _csv_lines(*rows: list[Any]) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


class LatencyDataset:
    """A CSV of measured architectures with a JSON sidecar fixing how they were measured.

    A dataset has started once it holds a whole row; until then nothing of it counts (an
    earlier version's header without rows, a sidecar without its CSV) and nothing is written.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.meta_path = sidecar_path(path)
        self.content = read_csv(path) if path.exists() else None
        self.done: set[str] = set()
        self.saved: dict[str, Any] | None = None  # the sidecar, once the dataset has started
        self.meta: dict[str, Any] = {}  # how this run measures: set by `resume`
        if self.content is None or not self.content.rows:
            return
        if self.content.header != columns:
            raise AutomoeError(f"{path} has other columns than this dataset; choose another --out")
        key = columns.index("arch_key")
        self.done = {row[key] for row in self.content.rows}
        self.saved = json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def resume(self, meta: dict[str, Any]) -> None:
        """Refuse settings other than the saved ones; drop a torn last row to measure it again."""
        if self.saved is not None:
            saved, now = recorded_precision(self.saved), recorded_precision(meta)
            if saved != now:
                raise AutomoeError(
                    f"{self.path} holds latencies measured in {saved}, but this run measures in "
                    f"{now} ({meta['precision']['reason']}), and formats do not mix in one "
                    f"dataset: rerun with --precision {precision_option(saved)} on a device "
                    f"that computes {saved}, or choose another --out"
                )
            differs = sorted(
                k for k in meta if k not in NOT_COMPARED and self.saved.get(k) != meta[k]
            )
            if differs:
                raise AutomoeError(
                    f"{self.path} was measured with other settings ({', '.join(differs)}); "
                    "rerun with the same options or choose another --out"
                )
            if self.content is not None and self.content.torn:
                with atomic_path(self.path) as tmp:
                    tmp.write_bytes(self.path.read_bytes()[: self.content.whole_bytes])
        self.meta = meta

    def append(self, row: dict[str, Any]) -> None:
        """Write one row to disk; the first creates the sidecar and the CSV with its header."""
        line = _csv_lines([row[c] for c in self.columns])
        if self.saved is None:
            write_text_atomic(self.meta_path, json.dumps(self.meta, indent=2) + "\n")
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(_csv_lines(self.columns) + line)
            self.saved = self.meta
        else:
            with self.path.open("ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        self.done.add(row["arch_key"])


def sample_archs(space: SearchSpace, count: int, seed: int) -> list[ArchConfig]:
    """`count` distinct architectures, the same list for the same seed (so a rerun resumes)."""
    if count > space.size():
        raise AutomoeError(f"--count {count} exceeds the space's {space.size()} architectures")
    rng = random.Random(seed)
    seen: dict[str, ArchConfig] = {}
    while len(seen) < count:
        arch = space.sample(rng)
        seen.setdefault(arch.key(), arch)
    return list(seen.values())


def _supernet_space_tokenizer(
    args: argparse.Namespace,
) -> tuple[SuperNet | None, SearchSpace, Tokenizer]:
    """The SuperNet (if any), the space to sample and the tokenizer of a `dataset` run."""
    if not args.supernet:
        return None, SearchSpace.load(args.space), RunData(DataSettings(), args.data_dir).tokenizer
    model, tokenizer = load_model_file(args.supernet)
    if not isinstance(model, SuperNet):
        raise AutomoeError(f"--supernet {args.supernet} is an extracted model, not a SuperNet")
    space = model.space if args.space == "multi30k" else SearchSpace.load(args.space)
    return model, space, tokenizer


def dataset(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    precision = _precision(args, device)
    settings = _settings(args)
    supernet, space, tokenizer = _supernet_space_tokenizer(args)
    archs = sample_archs(space, args.count, args.seed)
    reference_arch = _reference_arch(args.reference, space) if args.reference else None
    inputs = latency_inputs(tokenizer, args.data_dir, settings)

    def build(arch: ArchConfig) -> Transformer:
        """The model timed for `arch`, its weights in the run's precision."""
        if supernet is not None:
            return precision.for_inference(extract(supernet, arch).to(device))
        torch.manual_seed(args.seed)
        config = ModelConfig(
            tokenizer.vocab_size, space.qkv_dim, arch, routers=space.routing_modes()
        )
        return precision.for_inference(Transformer(config).to(device))

    features = ArchFeatures.from_space(space)
    table = LatencyDataset(Path(args.out), [*features.columns, *RESULT_COLUMNS])
    reference = build(reference_arch) if reference_arch is not None else None
    speed = None
    if reference is not None:
        saved = (table.saved or {}).get("reference") or {}
        with precision.autocast():
            speed = args.reference_ms or saved.get("ms") or _calibrated(reference, inputs, settings)
    weights = "trained" if supernet is not None else "random"
    table.resume(
        {
            "space": space.to_dict(),
            "supernet": str(Path(args.supernet).resolve()) if args.supernet else None,
            "weights": weights,
            "protocol": {**settings.to_dict(), "threads": args.threads},
            "reference": None
            if reference is None
            else {"arch": reference.default_arch.to_dict(), "ms": speed},
            "seed": args.seed,
            "precision": precision.record(),
            "machine": machine_info(device),
        }
    )
    todo = [a for a in archs if a.key() not in table.done]
    for arch in tqdm(todo, disable=args.no_progress, unit="arch", desc="latency"):
        model = build(arch)
        with precision.autocast():
            raw = measure_latency(model, inputs, settings, reference)
        row = dict(zip(features.columns, features.transform([arch])[0].tolist(), strict=True))
        row.update(arch_key=arch.key(), arch=arch.to_json(), weights=weights)
        row.update((raw if speed is None else raw.rescaled(speed)).to_dict())
        row.update(raw_ms=raw.latency_ms, reference_ms=raw.reference_ms)
        table.append(row)
    print(f"{args.out}: {len(table.done)} architectures ({len(todo)} measured now)")
    return 0


MEASURED_COLUMNS = ["latency_ms", "encoder_ms", "decoder_ms", "median_ms", "iqr_ms", "raw_ms"]


def _read_pass(path: Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    sidecar = sidecar_path(path)
    if not path.exists() or not sidecar.exists():
        raise AutomoeError(f"{path}: not a latency dataset (needs the CSV and {sidecar.name})")
    content = read_csv(path)
    rows = [dict(zip(content.header, row, strict=True)) for row in content.rows]
    missing = [c for c in RESULT_COLUMNS if c not in (rows[0] if rows else {})]
    if missing:
        raise AutomoeError(
            f"{path}: no rows with the columns of `python -m automoe.latency dataset` "
            f"(missing {missing}); remeasure it with this version"
        )
    return rows, json.loads(sidecar.read_text())


def _number(path: Path, row: dict[str, str], column: str) -> float:
    try:
        return float(row[column])
    except ValueError:
        raise AutomoeError(
            f"{path}: {column} of {row['arch_key']} is {row[column]!r}, not a number"
        ) from None


def merge_passes(paths: list[Path], out: Path) -> int:
    """Write the per-architecture mean of `paths`: passes of one dataset measured at different
    times, so that a slow phase of the machine weighs on each architecture only in part.

    Passes must hold the same architectures measured with the same protocol, reference
    speed and precision; rows keep the first pass's order. Returns the number of architectures.
    """
    if len(paths) < 2:
        raise AutomoeError("merge needs at least two passes of one dataset")
    first_rows, first_meta = _read_pass(paths[0])
    fixed = {k: v for k, v in first_meta.items() if k not in NOT_COMPARED}
    precision = recorded_precision(first_meta)
    keys = {row["arch_key"] for row in first_rows}
    passes, records = [], []
    for path in paths:
        rows, meta = _read_pass(path)
        if recorded_precision(meta) != precision:
            raise AutomoeError(
                f"{path} holds latencies measured in {recorded_precision(meta)}, {paths[0]} in "
                f"{precision}: merge passes of one precision (measure both with the same "
                "--precision)"
            )
        records.append(meta.get("precision"))
        differs = sorted(k for k in fixed if meta.get(k) != fixed[k])
        if differs:
            raise AutomoeError(
                f"{path} was measured with other settings than {paths[0]}: {differs}"
            )
        if {row["arch_key"] for row in rows} != keys:
            raise AutomoeError(
                f"{path} holds other architectures than {paths[0]}; finish both passes first"
            )
        passes.append({row["arch_key"]: row for row in rows})
    columns = [*MEASURED_COLUMNS, *(["reference_ms"] if fixed.get("reference") else [])]
    merged_rows = []
    for row in first_rows:
        same = [(path, p[row["arch_key"]]) for path, p in zip(paths, passes, strict=True)]
        mean = {c: sum(_number(path, r, c) for path, r in same) / len(same) for c in columns}
        runs = sum(int(_number(path, r, "runs")) for path, r in same)
        merged_rows.append({**row, **mean, "runs": runs})
    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(first_rows[0]))
        writer.writeheader()
        writer.writerows(merged_rows)
    common = records[0] if records.count(records[0]) == len(records) else None
    merged = {
        **first_meta,
        "precision": common or {"precision": precision},
        "passes": [str(path.resolve()) for path in paths],
    }
    write_text_atomic(sidecar_path(out), json.dumps(merged, indent=2) + "\n")
    return len(first_rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "merge":
        count = merge_passes([Path(p) for p in args.datasets], Path(args.out))
        print(f"{args.out}: mean of {len(args.datasets)} passes over {count} architectures")
        return 0
    if args.reference_ms is not None and not args.reference:
        raise AutomoeError("--reference-ms needs --reference")
    torch.set_num_threads(args.threads)
    return measure(args) if args.command == "measure" else dataset(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
