"""Quality of a trained SuperNet: validation loss and test BLEU of its largest and smallest
sub-networks with inherited weights, next to how the SuperNet was trained.

    python benchmarks/bench_supernet_quality.py --run runs/m30k-ende
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import base_parser, machine_info, machine_markdown, markdown_table, write_results

from automoe.evaluate.__main__ import main as evaluate_main


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--run", type=Path, required=True, help="trained SuperNet run folder")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--split", default="test_2016_flickr")
    args = p.parse_args()
    info = machine_info(args.threads)
    settings = json.loads((args.run / "run.json").read_text())
    metrics = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    validated = [m for m in metrics if "valid_largest_loss" in m]
    rows, results = [], {}
    for arch in ("largest", "smallest"):
        out = args.run / f"quality_{arch}.json"
        for split, extra in ((args.split, []), ("val", ["--no-bleu"])):
            target = out.with_name(f"quality_{arch}_{split}.json")
            evaluate_main(
                [
                    f"--model={args.run}",
                    f"--arch={arch}",
                    f"--split={split}",
                    f"--beam={args.beam}",
                    f"--threads={args.threads}",
                    f"--out={target}",
                    *extra,
                ]
            )
            results[(arch, split)] = json.loads(target.read_text())["results"][0]
        test, val = results[(arch, args.split)], results[(arch, "val")]
        rows.append(
            [
                arch,
                f"{val['loss']:.3f}",
                f"{test['loss']:.3f}",
                f"{test['bleu']:.2f}",
                f"{test['translate_seconds']:.0f}",
            ]
        )
    train = settings["train"]
    md = "\n".join(
        [
            "# SuperNet training on Multi30k en-de: quality of inherited sub-networks",
            "",
            machine_markdown(info),
            "",
            f"- trained with: `python -m automoe.train --run {args.run} "
            f"--space {settings['space']['name']} --pairs en-de --max-steps {train['max_steps']} "
            f"--warmup-steps {train['warmup_steps']} --dropout "
            f"{settings['model'].get('dropout', 0.1)} --validate-every {train['validate_every']} "
            f"--checkpoint-every {train['checkpoint_every']} --threads 1`",
            f"- {last['step']} updates, one uniformly sampled sub-network each, "
            f"{statistics.mean(m['tokens'] for m in metrics) * last['step'] / 1e6:.1f}M target "
            f"tokens, {last['elapsed_s'] / 60:.0f} min of training on 1 CPU thread "
            "of a shared 2-core machine",
            "- last validation during training: largest "
            f"{validated[-1]['valid_largest_loss']:.3f}, smallest "
            f"{validated[-1]['valid_smallest_loss']:.3f} (label-smoothed loss per token)",
            "",
            markdown_table(
                [
                    "sub-network",
                    "val loss",
                    f"{args.split} loss",
                    f"BLEU (beam {args.beam})",
                    "translate s",
                ],
                rows,
            ),
            "",
            "Loss is label-smoothed (0.1) cross entropy per target token; BLEU is sacrebleu's "
            "corpus BLEU (13a) on detokenised output, all 1,000 test sentences.",
        ]
    )
    print(md)
    payload = {
        **info,
        "run": str(args.run),
        "train_settings": settings,
        "results": {f"{a}/{s}": r for (a, s), r in results.items()},
    }
    if not args.no_write:
        write_results(args.out, "supernet_quality", payload, md)


if __name__ == "__main__":
    main()
