"""`python -m automoe.translate`: translate sentences with a SuperNet sub-network or a model file.

Sentences come from the command line, `--input FILE`, or standard input (one per line);
translations go to standard output, one per line, in the same order.
"""

from __future__ import annotations

import argparse
import sys

import torch

from automoe.data import TranslationTask, encode_examples, read_lines
from automoe.errors import AutomoeError, run_cli
from automoe.evaluation import translate_examples
from automoe.runs import load_model_file, pick_device, resolve_arch
from automoe.supernet.decode import DecodeSettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m automoe.translate", description=__doc__)
    p.add_argument("sentences", nargs="*", help="source sentences (else --input or stdin)")
    p.add_argument("--model", required=True, help="run folder, SuperNet or extracted model file")
    p.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    p.add_argument("--pair", default="en-de", help="translation direction, e.g. en-de")
    p.add_argument("--task-id", type=int, help="task index of the pair (default: the model's)")
    p.add_argument("--input", help="file of source sentences, one per line")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lenpen", type=float, default=0.6)
    p.add_argument("--max-len", type=int, default=128, help="longest source in tokens")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
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
    model.to(pick_device(args.device))
    arch = resolve_arch(args.arch, model)
    task = TranslationTask.parse(args.pair)
    if args.task_id is not None:
        task_id = args.task_id
    else:
        task_id = model.task_id(task.name) if model.config.task_names else 0
    examples = encode_examples([(s, "") for s in sources], tokenizer, task, task_id, args.max_len)
    decode = DecodeSettings(beam_size=args.beam, length_penalty=args.lenpen)
    for line in translate_examples(model, tokenizer, examples, arch, decode):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
