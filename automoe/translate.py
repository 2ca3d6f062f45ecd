"""`python -m automoe.translate`: translate sentences with a SuperNet sub-network or a model file.

Sentences come from the command line, `--input FILE`, or standard input (one per line);
translations go to standard output, one per line, in the same order (a blank line stays blank).
"""

from __future__ import annotations

import argparse
import sys

import torch

from automoe.argtypes import nonnegative_float, nonnegative_int, positive_int
from automoe.data import Example, TranslationTask, encode_examples, read_lines
from automoe.errors import AutomoeError, run_cli
from automoe.evaluate.quality import translate_examples
from automoe.precision import add_precision_option, resolve_precision
from automoe.runs import load_model_file, pick_device, resolve_arch, task_ids_for
from automoe.supernet.decode import DecodeSettings
from automoe.supernet.model import Transformer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m automoe.translate", description=__doc__)
    p.add_argument("sentences", nargs="*", help="source sentences (else --input or stdin)")
    p.add_argument("--model", required=True, help="run folder, SuperNet or extracted model file")
    p.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    p.add_argument("--pair", default="en-de", help="translation direction, e.g. en-de")
    p.add_argument(
        "--task-id", type=nonnegative_int, help="task index of the pair (default: the model's)"
    )
    p.add_argument("--input", help="file of source sentences, one per line")
    p.add_argument("--beam", type=positive_int, default=4)
    p.add_argument("--lenpen", type=nonnegative_float, default=0.6, help="length penalty")
    p.add_argument(
        "--max-len",
        type=positive_int,
        help="longest source in tokens, language tag included; a longer one is refused "
        "(default and most: what the model's position table holds)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int)
    add_precision_option(p, "of decoding")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sentences and args.input:
        raise AutomoeError("give sentences either as arguments or with --input, not both")
    if args.sentences:
        sources = args.sentences
    elif args.input:
        sources = read_lines(args.input)
    else:
        sources = [line.rstrip("\n") for line in sys.stdin]
    model, tokenizer = load_model_file(args.model)
    device = pick_device(args.device)
    model.to(device)
    arch = resolve_arch(args.arch, model)
    precision = resolve_precision(args.precision, device)
    if precision.notice():
        print(precision.notice(), file=sys.stderr)
    task = TranslationTask.parse(args.pair)
    task_id = _task_id(model, task, args.task_id)
    filled = [i for i, s in enumerate(sources) if s.strip()]
    # Encoded uncut, so that a source too long for the model is refused, never shortened.
    examples = encode_examples(
        [(sources[i], "") for i in filled], tokenizer, task, task_id, sys.maxsize
    )
    _check_lengths(examples, filled, model, args.max_len)
    decode = DecodeSettings(beam_size=args.beam, length_penalty=args.lenpen)
    with precision.autocast():
        translations = translate_examples(
            precision.for_inference(model), tokenizer, examples, arch, decode
        )
    out = [""] * len(sources)
    for i, line in zip(filled, translations, strict=True):
        out[i] = line
    for line in out:
        print(line)
    return 0


def _task_id(model: Transformer, task: TranslationTask, given: int | None) -> int:
    if given is None:
        return task_ids_for(model, [task.name])[0]
    count = model.config.num_tasks
    if given >= count:
        raise AutomoeError(
            f"--task-id {given}: this model holds {count} task(s), ids 0 to {count - 1}"
        )
    return given


def _check_lengths(
    examples: list[Example], lines: list[int], model: Transformer, max_len: int | None
) -> None:
    """Refuse `--max-len` beyond the position table, and any source longer than the limit."""
    most = model.config.max_positions
    if max_len is not None and max_len > most:
        raise AutomoeError(
            f"--max-len {max_len} exceeds this model's maximum of {most} source tokens "
            "(its position table); give at most that"
        )
    for line, example in zip(lines, examples, strict=True):
        if len(example.src) > (max_len or most):
            limit = (
                f"--max-len {max_len} allows at most {max_len} (the model reads up to {most})"
                if max_len
                else f"this model reads at most {most}"
            )
            raise AutomoeError(
                f"source line {line + 1} is {len(example.src)} tokens long (language tag "
                f"included), but {limit}; split it into shorter sentences"
            )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
