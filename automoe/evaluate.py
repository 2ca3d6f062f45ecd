"""`python -m automoe.evaluate`: loss and BLEU of any architecture on a corpus split.

Works on a SuperNet (inherited weights, `--arch largest|smallest|FILE`) or on an extracted
model file. Prints a table and writes the same figures as JSON with `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from automoe.argtypes import nonnegative_float, nonnegative_int, positive_int
from automoe.data import TokenBatcher
from automoe.errors import AutomoeError, run_cli
from automoe.evaluation import corpus_bleu, translate_examples, validation_loss
from automoe.experiment import DataSettings, RunData
from automoe.files import write_text_atomic
from automoe.precision import add_precision_option, resolve_precision
from automoe.runs import (
    RUN_FILE,
    load_model_file,
    pick_device,
    read_run_file,
    resolve_arch,
    task_ids_for,
)
from automoe.supernet.decode import DecodeSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="run folder, SuperNet or extracted model file")
    p.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    p.add_argument("--split", default="test_2016_flickr", help="val, test_2016_flickr or train")
    p.add_argument("--pairs", help="comma-separated pairs (default: the run's, else en-de)")
    p.add_argument("--data-dir", help="folder holding multi30k/")
    p.add_argument(
        "--limit", type=nonnegative_int, default=0, help="first N sentences per pair (0 = all)"
    )
    p.add_argument("--beam", type=positive_int, default=4)
    p.add_argument("--lenpen", type=nonnegative_float, default=0.6, help="length penalty")
    p.add_argument("--no-bleu", action="store_true", help="loss only (fast)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int)
    add_precision_option(p, "of the forward passes")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_file(args.model)
    device = pick_device(args.device)
    model.to(device)
    arch = resolve_arch(args.arch, model)
    precision = resolve_precision(args.precision, device)
    if precision.notice():
        print(precision.notice())
    precision.for_inference(model)
    run = Path(args.model)
    saved = read_run_file(run)["data"] if (run / RUN_FILE).is_file() else {}
    if args.pairs:
        saved["pairs"] = args.pairs.split(",")
    settings = DataSettings(**saved)
    task_ids = task_ids_for(model, settings.pairs)
    data = RunData(settings, args.data_dir, tokenizer=tokenizer, task_ids=task_ids)
    results = []
    for position, task in enumerate(data.tasks):
        examples = data.task_examples(args.split, position)
        pairs = data.pairs(args.split, task)
        if args.limit:
            examples, pairs = examples[: args.limit], pairs[: args.limit]
        if not examples:
            raise AutomoeError(f"split {args.split} of {task.name} is empty")
        batches = list(TokenBatcher(examples, settings.max_tokens, shuffle=False).batches())
        started = time.perf_counter()
        with precision.autocast():
            loss = validation_loss(model, batches, arch)
        row = {
            "pair": task.name,
            "split": args.split,
            "sentences": len(examples),
            "arch": arch.key(),
            "loss": loss.loss,
            "nll": loss.nll,
            "loss_seconds": time.perf_counter() - started,
            "precision": precision.name,
        }
        if not args.no_bleu:
            started = time.perf_counter()
            decode = DecodeSettings(beam_size=args.beam, length_penalty=args.lenpen)
            with precision.autocast():
                hyps = translate_examples(model, tokenizer, examples, arch, decode)
            row["bleu"] = corpus_bleu(hyps, [tgt for _, tgt in pairs])
            row["beam"] = args.beam
            row["translate_seconds"] = time.perf_counter() - started
        results.append(row)
    _print_table(results)
    if args.out:
        write_text_atomic(
            args.out,
            json.dumps(
                {"arch": arch.to_dict(), "precision": precision.record(), "results": results},
                indent=2,
            ),
        )
    return 0


def _print_table(rows: list[dict]) -> None:
    print(f"{'pair':8} {'split':18} {'sents':>6} {'loss':>7} {'nll':>7} {'BLEU':>6}")
    for r in rows:
        bleu = f"{r['bleu']:6.2f}" if "bleu" in r else "     -"
        print(
            f"{r['pair']:8} {r['split']:18} {r['sentences']:6d} {r['loss']:7.3f} "
            f"{r['nll']:7.3f} {bleu}"
        )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
