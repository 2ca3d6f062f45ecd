"""MoE layer cost: vectorised top-1 dispatch vs a dense FFN of the same active FLOPs.

Times forward + backward (input and weight gradients, plus the balance loss for MoE layers)
of `MoEFeedForward` on 4,096 tokens of width 512:

- `dense`     : one expert of width 2048 (`MoEFeedForward(512, [2048])`, no router);
- `moe`       : 4 experts of width 2048, top-1, exactly balanced routing (1,024 tokens each,
                scattered in random token order), so its active FLOPs equal `dense`'s;
- `moe_router`: the same layer routed by its randomly initialised router (natural imbalance,
                same FLOPs since all experts have the same width);
- `mixed`     : experts of widths 1024/2048/3072/2048, balanced routing: the expected active
                width is 2048, so `dense` is again its same-FLOPs equivalent;
- `naive`     : a per-token Python loop (route, slice, apply, scale) on fewer tokens, its time
                scaled linearly to 4,096 tokens.

All variants run interleaved in one process; medians and paired ratios are reported.
Usage: python benchmarks/bench_moe.py [--threads 2] [--repeats 15]
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

import common
import torch

from automoe.supernet.moe import MoEFeedForward, RoutingContext

NAME = "moe_layer"
TARGET_RATIO = 1.1


def balanced_inputs(layer: MoEFeedForward, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Rewire the router so token t goes to expert perm(t) % E: exactly N/E tokens each."""
    e = len(layer.experts)
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    target = torch.randperm(n, generator=g) % e
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.bias.zero_()
        layer.router.weight[:, :e] = torch.eye(e)
    x = x.clone()
    x[:, :e] += 8.0 * torch.nn.functional.one_hot(target, e).to(x.dtype)
    return x


class Step:
    """One forward + backward of a layer on fixed inputs; gradients are dropped after."""

    def __init__(
        self, layer: MoEFeedForward, widths: list[int], x: torch.Tensor, grad: torch.Tensor
    ):
        self.layer, self.widths, self.x, self.grad = layer, widths, x, grad
        self.ctx = RoutingContext(token_rows=torch.zeros(x.shape[0], dtype=torch.long))
        self.counts: list[int] | None = None

    def __call__(self) -> None:
        x = self.x.detach().requires_grad_(True)
        out, stats = self.layer(x, self.widths, 1, self.ctx)
        if stats is None:
            out.backward(self.grad)
        else:
            torch.autograd.backward([out, stats.balance_loss], [self.grad, torch.tensor(0.01)])
            self.counts = stats.expert_counts.tolist()
        self.layer.zero_grad(set_to_none=True)


def naive_forward(layer: MoEFeedForward, x: torch.Tensor, widths: list[int]) -> torch.Tensor:
    """Token-by-token top-1 MoE: what the vectorised dispatch replaces."""
    d = x.shape[1]
    rows = []
    for t in range(x.shape[0]):
        xt = x[t]
        probs = torch.softmax(layer.router.weight[: len(widths), :d] @ xt + layer.router.bias, 0)
        gate, e = probs.max(0)
        expert, w = layer.experts[int(e)], widths[int(e)]
        h = torch.relu(expert.fc1.weight[:w, :d] @ xt + expert.fc1.bias[:w])
        rows.append(gate * (expert.fc2.weight[:d, :w] @ h + expert.fc2.bias[:d]))
    return torch.stack(rows)


class NaiveStep:
    def __init__(
        self, layer: MoEFeedForward, widths: list[int], x: torch.Tensor, grad: torch.Tensor
    ):
        self.layer, self.widths, self.x, self.grad = layer, widths, x, grad

    def __call__(self) -> None:
        x = self.x.detach().requires_grad_(True)
        naive_forward(self.layer, x, self.widths).backward(self.grad)
        self.layer.zero_grad(set_to_none=True)


def ffn_gflop(tokens: int, embed: int, widths: list[int], counts: list[int] | None) -> float:
    """Forward+backward matmul GFLOP (3 x forward) of the experts, plus the router."""
    if counts is None:  # dense
        fwd = 4 * embed * widths[0] * tokens
    else:
        fwd = sum(4 * embed * w * c for w, c in zip(widths, counts, strict=True))
        fwd += 2 * embed * len(widths) * tokens
    return 3 * fwd / 1e9


def main(argv: list[str] | None = None) -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--mixed-widths", type=int, nargs="+", default=[1024, 2048, 3072, 2048])
    p.add_argument("--naive-tokens", type=int, default=256, help="tokens for the naive loop")
    p.add_argument("--wait-quiet", type=float, default=60.0, help="max s to wait for a quiet CPU")
    p.add_argument("--suffix", default="", help="result name suffix, e.g. '.threads1'")
    args = p.parse_args(argv)
    repeats = args.repeats or 15
    warmup = 2 if args.warmup is None else args.warmup

    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    quiet = common.wait_for_quiet(args.wait_quiet)
    torch.manual_seed(args.seed)
    n, d, w = args.tokens, args.embed, args.width
    mixed_widths = list(args.mixed_widths)
    e = len(mixed_widths)

    x = torch.randn(n, d)
    grad = torch.randn(n, d)
    dense = MoEFeedForward(d, [w])
    moe = MoEFeedForward(d, [w] * e)
    moe_router = MoEFeedForward(d, [w] * e)
    mixed = MoEFeedForward(d, mixed_widths)
    x_moe = balanced_inputs(moe, x, args.seed)
    x_mixed = balanced_inputs(mixed, x, args.seed)
    naive_n = min(args.naive_tokens, n)
    naive_scale = n / naive_n

    steps: dict[str, Any] = {
        "dense": Step(dense, [w], x, grad),
        "moe": Step(moe, [w] * e, x_moe, grad),
        "moe_router": Step(moe_router, [w] * e, x, grad),
        "mixed": Step(mixed, mixed_widths, x_mixed, grad),
        "naive": NaiveStep(moe, [w] * e, x_moe[:naive_n], grad[:naive_n]),
    }
    with common.CpuMonitor() as mon:
        times = common.interleaved(steps, repeats, warmup)
    matmul = common.matmul_rate(args.threads)
    for kind in ("wall", "cpu"):
        times["naive"][kind] = [t * naive_scale for t in times["naive"][kind]]

    mean_width = sum(mixed_widths) / e
    descriptions = {
        "dense": f"dense FFN, MoEFeedForward({d}, [{w}])",
        "moe": f"{e} experts x {w}, top-1, balanced routing",
        "moe_router": f"{e} experts x {w}, top-1, routed by random-init router",
        "mixed": f"experts {mixed_widths}, top-1, balanced routing (mean width {mean_width:g})",
        "naive": f"per-token loop on {naive_n} tokens, time x{naive_scale:g} to {n} tokens",
    }
    variants: dict[str, Any] = {}
    dense_wall = times["dense"]["wall"]
    for name, step in steps.items():
        counts = getattr(step, "counts", None)
        widths = step.widths
        gflop = ffn_gflop(n, d, widths, None if name == "dense" else counts)
        if name == "naive":
            gflop = ffn_gflop(n, d, widths, [n // e] * e)
        wall = common.summary(times[name]["wall"])
        variants[name] = {
            "description": descriptions[name],
            "widths": widths,
            "expert_counts": counts,
            "gflop_fwd_bwd": gflop,
            "gflops_per_s": gflop / wall["median_s"],
            "wall": wall,
            "cpu": common.summary(times[name]["cpu"]),
            "ratio_to_dense": wall["median_s"] / statistics.median(dense_wall),
            "paired_ratio_to_dense": common.paired_ratio(times[name]["wall"], dense_wall),
            "cpu_ratio_to_dense": (
                statistics.median(times[name]["cpu"]) / statistics.median(times["dense"]["cpu"])
            ),
        }
    moe_ratio = variants["moe"]["paired_ratio_to_dense"]
    payload = {
        "benchmark": NAME,
        "machine": info,
        "quiet_wait": quiet,
        "other_processes_cores_during_run": round(mon.other_cores, 2),
        "this_process_cores_during_run": round(mon.own_cores, 2),
        "settings": {
            "tokens": n,
            "embed_dim": d,
            "expert_width": w,
            "mixed_widths": mixed_widths,
            "top_k": 1,
            "repeats": repeats,
            "warmup": warmup,
            "seed": args.seed,
            "naive_tokens": naive_n,
            "dtype": "float32",
            "step": "forward + backward (input & weight grads; MoE adds 0.01 x balance loss)",
        },
        "matmul_fp32": matmul,
        "variants": variants,
        "target": {
            "moe_over_dense_max": TARGET_RATIO,
            "moe_over_dense": moe_ratio,
            "met": moe_ratio <= TARGET_RATIO,
        },
    }

    rows = []
    for name, v in variants.items():
        rows.append(
            [
                name,
                v["description"],
                v["wall"]["median_s"] * 1e3,
                f"{v['wall']['q1_s'] * 1e3:.0f}-{v['wall']['q3_s'] * 1e3:.0f}",
                v["cpu"]["median_s"] * 1e3,
                v["gflops_per_s"],
                f"{v['paired_ratio_to_dense']:.3f}",
            ]
        )
    table = common.markdown_table(
        [
            "variant",
            "what",
            "median wall ms",
            "IQR ms",
            "median CPU ms",
            "GFLOP/s",
            "x dense (paired)",
        ],
        rows,
    )
    md = "\n\n".join(
        [
            f"# MoE layer: forward+backward, {n} tokens, embed {d}",
            common.machine_markdown(info),
            f"- repeats {repeats} (interleaved, rotating order), warm-up {warmup}; "
            f"other processes kept {payload['other_processes_cores_during_run']} cores busy "
            f"during the run (quiet wait: {quiet})",
            table,
            f"Target: `moe` at most {TARGET_RATIO}x `dense` -> **{moe_ratio:.3f}x "
            f"({'met' if moe_ratio <= TARGET_RATIO else 'NOT met'})**. `mixed` vs its "
            f"same-expected-FLOPs dense: {variants['mixed']['paired_ratio_to_dense']:.3f}x. "
            f"Naive per-token loop: {variants['naive']['paired_ratio_to_dense']:.1f}x dense "
            f"(measured on {naive_n} tokens, scaled x{naive_scale:g}).",
            f"Expert token counts: moe {variants['moe']['expert_counts']}, moe_router "
            f"{variants['moe_router']['expert_counts']}, mixed "
            f"{variants['mixed']['expert_counts']}.",
            f"fp32 matmul rate ({args.threads} threads): {matmul['gflops']:.1f} GFLOP/s; "
            "'x dense (paired)' is the median over rounds of the per-round time ratio.",
        ]
    )
    print(md)
    if not args.no_write:
        common.write_results(args.out, NAME + args.suffix, payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
