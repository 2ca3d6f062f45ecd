"""`python -m automoe.export --task en-de`: a small ready-to-serve model for one translation pair.

Takes a model whose MoE layers route by task (a SuperNet with `--arch`, or an extracted model),
keeps only the experts the task uses in every task-routed layer, drops those routers, and saves
a standalone model file that translates that pair exactly as the full model does.
"""

from __future__ import annotations

import argparse

from automoe.errors import run_cli
from automoe.runs import add_weights_option, load_model_file, resolve_arch, save_with_tokenizer
from automoe.supernet.model import Transformer, extract
from automoe.supernet.task_export import export_task


def _params(model: Transformer) -> int:
    return sum(t.numel() for t in model.parameters())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m automoe.export", description=__doc__)
    p.add_argument("--model", required=True, help="run folder, SuperNet or extracted model file")
    p.add_argument("--task", required=True, help="translation pair the model was trained on")
    p.add_argument("--arch", help="largest, smallest or an arch file (SuperNet only)")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    add_weights_option(p)
    args = p.parse_args(argv)
    model, tokenizer = load_model_file(args.model)
    arch = resolve_arch(args.arch, model)
    small, small_arch = export_task(model, arch, model.task_id(args.task))
    save_with_tokenizer(small, tokenizer, args.out, args.weights)
    full = _params(extract(model, arch))
    print(
        f"wrote {args.out}: {args.task} sub-network, arch {small_arch.key()}, "
        f"{_params(small):,} parameters (the full architecture holds {full:,})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
