"""Task-MoE on Multi30k en-de/fr/cs: dense, token-, sentence- and task-routed MoE models trained
with one budget; BLEU per pair, deployed parameters, and peak throughput of what one pair needs
deployed (the whole model, or for task routing the exported per-pair sub-network).

    python benchmarks/bench_task_moe.py --steps 500 --threads 1

Each model is trained by `python -m automoe.train` on a one-architecture space (so the SuperNet
is exactly that model) in `--runs-dir/<variant>`; finished stages are reused, so the benchmark
resumes. Throughput is sentences per second of encoding real en-de validation sentences plus
`--decode-steps` incremental decoder steps with the key/value cache (teacher-forced, so every
model does the same work per sentence), for each batch size; rounds interleave the models.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from common import (
    REPO,
    base_parser,
    interleaved,
    machine_info,
    machine_markdown,
    markdown_table,
    paired_ratio,
    quiet_rounds,
    set_threads,
    write_results,
)

from automoe.data import Batch, collate
from automoe.data.run_data import DataSettings, RunData
from automoe.evaluate.__main__ import main as evaluate_main
from automoe.runs import SUPERNET_FILE, load_model_file
from automoe.supernet.model import Transformer
from automoe.supernet.modes import inference
from automoe.supernet.task_export import export_task
from automoe.train.__main__ import main as train_main

PAIRS = ("en-de", "en-fr", "en-cs")
VARIANTS = {"dense": "token", "token": "token", "sentence": "sentence", "task": "task"}
NAME = "task_moe"


def space_for(variant: str, experts: int, embed: int, ffn: int, layers: int) -> dict:
    """A space holding one architecture: the model this variant trains."""
    n = 1 if variant == "dense" else experts
    side = {
        "embed_dim": [embed],
        "layers": [layers],
        "ffn_dim": [ffn],
        "experts": [n],
        "top_k": [1],
        "routing": [VARIANTS[variant]],
    }
    return {
        "name": f"task-moe-{variant}",
        "qkv_dim": embed,
        "max_experts": n,
        "fractional_experts": False,
        "identity_experts": False,
        "encoder": {**side, "heads": [4]},
        "decoder": {**side, "self_heads": [4], "cross_heads": [4], "cross_layers": [1]},
    }


def train(run: Path, space: dict, args: argparse.Namespace) -> None:
    if (run / SUPERNET_FILE).is_file():
        return
    run.mkdir(parents=True, exist_ok=True)
    space_file = run.parent / f"{run.name}.space.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    if (run / "checkpoint.pt").is_file():
        flags = [f"--run={run}", "--resume"]
    else:
        flags = [
            f"--run={run}",
            f"--space={space_file}",
            f"--pairs={','.join(PAIRS)}",
            "--task-temperature=inf",
            f"--max-steps={args.steps}",
            f"--warmup-steps={args.steps // 8}",
            f"--max-tokens={args.max_tokens}",
            f"--validate-every={args.steps}",
            "--checkpoint-every=100",
            "--dropout=0.1",
            "--valid-size=200",
            f"--seed={args.seed}",
        ]
    train_main([*flags, f"--threads={args.threads}", "--no-progress"])


def bleu(run: Path, beam: int, threads: int) -> list[dict]:
    out = run / f"test_beam{beam}.json"
    if not out.is_file():
        evaluate_main(
            [
                f"--model={run}",
                "--split=test_2016_flickr",
                f"--beam={beam}",
                f"--threads={threads}",
                f"--out={out}",
            ]
        )
    return json.loads(out.read_text())["results"]


def params(model: Transformer) -> int:
    return sum(t.numel() for t in model.parameters())


def decode_pass(model: Transformer, batch: Batch, steps: int) -> Callable[[], None]:
    """One timed unit: encode a batch, then `steps` cached decoder steps on its targets."""
    target = batch.prev_output_tokens
    target = torch.nn.functional.pad(target, (0, max(0, steps - target.shape[1])))

    def run() -> None:
        with inference(model):
            enc = model.encode(batch.src_tokens, batch.src_padding_mask, None, batch.task_ids)
            cache: list = []
            for i in range(steps):
                model.decode(target[:, i : i + 1], enc, None, batch.task_ids, cache, i)

    return run


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "task-moe")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--batch-sizes", default="16,64,256")
    p.add_argument("--decode-steps", type=int, default=20)
    p.add_argument("--deploy-pair", default="en-de")
    p.add_argument("--data-dir")
    args = p.parse_args()
    set_threads(args.threads)
    info = machine_info(args.threads)
    repeats = args.repeats or 5

    models, bleus = {}, {}
    for variant in VARIANTS:
        run = args.runs_dir / variant
        space = space_for(variant, args.experts, args.embed, args.ffn, args.layers)
        train(run, space, args)
        bleus[variant] = {r["pair"]: r["bleu"] for r in bleu(run, args.beam, args.threads)}
        models[variant] = load_model_file(run)
    tokenizer = models["dense"][1]
    full = {v: m.extract(m.space.largest()).eval() for v, (m, _) in models.items()}
    task_id = full["task"].task_id(args.deploy_pair)
    deployed = dict(full)
    deployed["task"], _ = export_task(full["task"], full["task"].default_arch, task_id)
    per_task = {
        v: {pair: params(export_task(m, m.default_arch, i)[0]) for i, pair in enumerate(PAIRS)}
        if v == "task"
        else dict.fromkeys(PAIRS, params(m))
        for v, m in full.items()
    }

    data = RunData(DataSettings(pairs=PAIRS), args.data_dir, tokenizer)
    examples = [e for e in data.examples("val") if e.task_id == task_id]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    units = {}
    for size in sizes:
        chosen = examples[:size]
        batch = collate(chosen)
        for variant, model in deployed.items():
            units[f"{variant}@{size}"] = decode_pass(model, batch, args.decode_steps)
    timing = interleaved(units, repeats, warmup=1, max_rounds=args.max_rounds)
    rounds = quiet_rounds(timing["other_cores"])
    walls = {k: [timing["variants"][k]["wall"][r] for r in rounds] for k in units}
    rate = {k: int(k.split("@")[1]) / statistics.median(v) for k, v in walls.items()}
    peak = {v: max(sizes, key=lambda s, v=v: rate[f"{v}@{s}"]) for v in deployed}
    ratio = {
        v: paired_ratio(walls[f"token@{peak['token']}"], walls[f"{v}@{peak[v]}"])
        * peak[v]
        / peak["token"]
        for v in deployed
    }
    rows = []
    for v in VARIANTS:
        mean = statistics.mean(bleus[v][p] for p in PAIRS)
        rows.append(
            [
                v,
                *(f"{bleus[v][p]:.2f}" for p in PAIRS),
                f"{mean:.2f}",
                f"{params(full[v]):,}",
                f"{per_task[v][args.deploy_pair]:,}",
                *(f"{rate[f'{v}@{s}']:.0f}" for s in sizes),
                f"{rate[f'{v}@{peak[v]}']:.0f} (batch {peak[v]})",
                f"{ratio[v]:.2f}x",
            ]
        )
    mean_bleu = {v: statistics.mean(bleus[v][p] for p in PAIRS) for v in VARIANTS}
    gap = mean_bleu["task"] - mean_bleu["token"]
    met = ratio["task"] >= 1.9 and gap >= -0.5
    header = [
        "model",
        *(f"BLEU {p}" for p in PAIRS),
        "mean BLEU",
        "total params",
        f"deployed params ({args.deploy_pair})",
        *(f"sent/s @{s}" for s in sizes),
        "peak sent/s",
        "peak vs token-MoE",
    ]
    trained = json.loads((args.runs_dir / "token" / "run.json").read_text())
    md = "\n".join(
        [
            "# Task-MoE: routing granularity, per-task extraction and deployed throughput",
            "",
            machine_markdown(info),
            "",
            f"- models: embed {args.embed}, {args.layers}+{args.layers} layers, FFN {args.ffn}"
            f" per expert, {args.experts} experts top-1 in every layer (dense: 1), routed by "
            "token, by sentence (mean-pooled source) or by task id in every layer",
            f"- training: `python -m automoe.train` on en-de, en-fr, en-cs, balanced sampling "
            f"(--task-temperature inf), {args.steps} steps of {args.max_tokens} tokens, the "
            f"same seed ({trained['train']['seed']}) and schedule for every model",
            f"- BLEU: sacrebleu corpus BLEU, test_2016_flickr (1,000 sentences per pair), beam "
            f"{args.beam}",
            f"- deployed for {args.deploy_pair}: the whole model, except task-MoE, whose "
            "`python -m automoe.export --task` sub-network keeps one expert per layer",
            f"- throughput: {args.deploy_pair} validation sentences, encoder + "
            f"{args.decode_steps} cached decoder steps, {len(rounds)} interleaved rounds "
            f"used of {len(timing['other_cores'])} (other processes' cores per round: "
            f"{timing['other_cores']}); 'peak vs token-MoE' = median per-round ratio at each "
            "model's best batch size",
            "",
            markdown_table(header, rows),
            "",
            f"**Target: task-MoE deployed >= 1.9x token-MoE throughput with mean BLEU within "
            f"0.5: {ratio['task']:.2f}x, BLEU {gap:+.2f} ({'met' if met else 'NOT met'}).**",
        ]
    )
    print(md)
    payload = {
        "machine": info,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "bleu": bleus,
        "params_total": {v: params(m) for v, m in full.items()},
        "params_deployed": per_task,
        "throughput_sent_per_s": rate,
        "peak_batch": peak,
        "peak_ratio_vs_token": ratio,
        "timing": timing,
        "target_met": met,
    }
    if not args.no_write:
        write_results(args.out, NAME, payload, md)


if __name__ == "__main__":
    main()
