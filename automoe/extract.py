"""`python -m automoe.extract`: cut one architecture out of a SuperNet as a standalone model."""

from __future__ import annotations

import argparse

from automoe.errors import run_cli
from automoe.runs import add_weights_option, load_model_file, resolve_arch, save_with_tokenizer
from automoe.supernet.model import extract


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m automoe.extract", description=__doc__)
    p.add_argument("--model", required=True, help="run folder or SuperNet file")
    p.add_argument("--arch", required=True, help="largest, smallest or an arch YAML/JSON file")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    add_weights_option(p)
    args = p.parse_args(argv)
    model, tokenizer = load_model_file(args.model)
    arch = resolve_arch(args.arch, model)
    sub = extract(model, arch)
    save_with_tokenizer(sub, tokenizer, args.out, args.weights)
    params = sum(t.numel() for t in sub.parameters())
    print(f"wrote {args.out}: arch {arch.key()}, {params:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
