"""`python -m automoe.evaluate`: loss, BLEU and chrF of any architecture on a test set.

The test set is a split of the run's corpus (`--split`) or any parallel text of your own
(`--src FILE --ref FILE`, plain or gzipped, one pair named by `--pairs`). Works on a SuperNet
(inherited weights, `--arch largest|smallest|FILE`) or on a model file. BLEU and chrF are
sacrebleu's on detokenised output, printed with their signatures. Prints a table and writes
the same figures as JSON with `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from automoe.argtypes import nonnegative_float, nonnegative_int, positive_int
from automoe.data import (
    Example,
    TokenBatcher,
    Tokenizer,
    TranslationTask,
    encode_examples,
    read_lines,
)
from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError, run_cli
from automoe.evaluate.quality import translate_examples, translation_scores, validation_loss
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
from automoe.supernet.model import Transformer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m automoe.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="run folder, SuperNet or extracted model file")
    p.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    p.add_argument("--split", default="test_2016_flickr", help="val, test_2016_flickr or train")
    p.add_argument("--src", help="a test set of your own: source sentences, one per line (.gz ok)")
    p.add_argument("--ref", help="with --src: the reference translations, line-aligned")
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


@dataclass
class TestSet:
    """One pair's sentences to score: encoded examples and the reference translations."""

    pair: str
    name: str
    examples: list[Example]
    references: list[str]


def _corpus_sets(data: RunData, split: str, limit: int) -> list[TestSet]:
    sets = []
    for position, task in enumerate(data.tasks):
        examples = data.task_examples(split, position)
        references = [tgt for _, tgt in data.pairs(split, task)]
        if limit:
            examples, references = examples[:limit], references[:limit]
        if not examples:
            raise AutomoeError(f"split {split} of {task.name} is empty")
        sets.append(TestSet(task.name, split, examples, references))
    return sets


def _file_set(
    src: str, ref: str, pairs: list[str], model: Transformer, tokenizer: Tokenizer, limit: int
) -> TestSet:
    """A parallel test set of the user's: one pair, aligned lines, plain or gzipped text."""
    if len(pairs) != 1:
        raise AutomoeError(
            f"--src/--ref hold one translation direction; name it with --pairs (one of "
            f"{', '.join(pairs)})"
        )
    sources, references = read_lines(src), read_lines(ref)
    if len(sources) != len(references):
        raise AutomoeError(
            f"--src {src} has {len(sources)} lines but --ref {ref} has {len(references)}; "
            "give line-aligned files"
        )
    if limit:
        sources, references = sources[:limit], references[:limit]
    if not sources:
        raise AutomoeError(f"--src {src} is empty")
    task = TranslationTask.parse(pairs[0])
    task_id = task_ids_for(model, [task.name])[0]
    # Cut only at what the model can read at all (its position table), never at training's
    # max_len: a test sentence is translated whole whenever the model can.
    reach = model.config.max_positions - 1
    examples = encode_examples(
        zip(sources, references, strict=True), tokenizer, task, task_id, reach
    )
    return TestSet(task.name, Path(src).name, examples, references)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.src is None) != (args.ref is None):
        raise AutomoeError("give --src and --ref together: the sources and their references")
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
    if args.src is not None:
        sets = [_file_set(args.src, args.ref, list(settings.pairs), model, tokenizer, args.limit)]
    else:
        task_ids = task_ids_for(model, settings.pairs)
        data = RunData(settings, args.data_dir, tokenizer=tokenizer, task_ids=task_ids)
        sets = _corpus_sets(data, args.split, args.limit)
    results = []
    for test in sets:
        batcher = TokenBatcher(test.examples, settings.max_tokens, shuffle=False)
        started = time.perf_counter()
        with precision.autocast():
            loss = validation_loss(model, list(batcher.batches()), arch)
        row = {
            "pair": test.pair,
            "split": test.name,
            "sentences": len(test.examples),
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
                hyps = translate_examples(model, tokenizer, test.examples, arch, decode)
            row.update(translation_scores(hyps, test.references))
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
    print(f"{'pair':8} {'split':18} {'sents':>6} {'loss':>7} {'nll':>7} {'BLEU':>6} {'chrF':>6}")
    for r in rows:
        bleu = f"{r['bleu']:6.2f} {r['chrf']:6.2f}" if "bleu" in r else "     -      -"
        print(
            f"{r['pair']:8} {r['split'][:18]:18} {r['sentences']:6d} {r['loss']:7.3f} "
            f"{r['nll']:7.3f} {bleu}"
        )
    if rows and "bleu" in rows[0]:
        print(f"BLEU {rows[0]['bleu_signature']}\nchrF {rows[0]['chrf_signature']}")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
