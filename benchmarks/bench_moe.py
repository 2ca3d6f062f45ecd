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
`--precision bf16` runs the forward passes under autocast (fp32 weights, as training does)
and writes `moe_layer.bf16.*`.

Usage: python benchmarks/bench_moe.py [--threads 2] [--repeats 15] [--precision bf16]
"""

from __future__ import annotations

import sys
from typing import Any

import common
import torch

from automoe.precision import Precision, add_precision_option, resolve_precision
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
        layer.routers["token"].weight.zero_()
        layer.routers["token"].bias.zero_()
        layer.routers["token"].weight[:, :e] = torch.eye(e)
    x = x.clone()
    x[:, :e] += 8.0 * torch.nn.functional.one_hot(target, e).to(x.dtype)
    return x


class Step:
    """One forward + backward of a layer on fixed inputs; gradients are dropped after."""

    def __init__(
        self,
        layer: MoEFeedForward,
        widths: list[int],
        x: torch.Tensor,
        grad: torch.Tensor,
        precision: Precision,
    ):
        self.layer, self.widths, self.x, self.grad = layer, widths, x, grad
        self.precision = precision
        self.ctx = RoutingContext(token_rows=torch.zeros(x.shape[0], dtype=torch.long))
        self.counts: list[int] | None = None

    def __call__(self) -> None:
        x = self.x.detach().requires_grad_(True)
        with self.precision.autocast():
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
    router = layer.routers["token"]
    for t in range(x.shape[0]):
        xt = x[t]
        probs = torch.softmax(router.weight[: len(widths), :d] @ xt + router.bias, 0)
        gate, e = probs.max(0)
        expert, w = layer.experts[int(e)], widths[int(e)]
        h = torch.relu(expert.fc1.weight[:w, :d] @ xt + expert.fc1.bias[:w])
        rows.append(gate * (expert.fc2.weight[:d, :w] @ h + expert.fc2.bias[:d]))
    return torch.stack(rows)


class NaiveStep:
    def __init__(
        self,
        layer: MoEFeedForward,
        widths: list[int],
        x: torch.Tensor,
        grad: torch.Tensor,
        precision: Precision,
    ):
        self.layer, self.widths, self.x, self.grad = layer, widths, x, grad
        self.precision = precision

    def __call__(self) -> None:
        x = self.x.detach().requires_grad_(True)
        with self.precision.autocast():
            out = naive_forward(self.layer, x, self.widths)
        out.backward(self.grad)
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
    p.add_argument("--naive-tokens", type=int, default=128, help="tokens for the naive loop")
    p.add_argument("--wait-quiet", type=float, default=120.0, help="max s to wait for quiet CPUs")
    p.add_argument("--suffix", default="", help="result name suffix, e.g. '.threads1'")
    p.add_argument(
        "--keep-contended",
        action="store_true",
        help="write a contended run under the plain name (default: '<name>.contended.*')",
    )
    add_precision_option(p, "of the timed forward passes (weights stay fp32)")
    args = p.parse_args(argv)
    repeats = args.repeats or 15
    warmup = 2 if args.warmup is None else args.warmup

    common.set_threads(args.threads)
    precision = resolve_precision(args.precision)
    print(precision.line())
    info = common.machine_info(args.threads)
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
    scale = n / naive_n

    steps: dict[str, Any] = {
        "dense": Step(dense, [w], x, grad, precision),
        "moe": Step(moe, [w] * e, x_moe, grad, precision),
        "moe_router": Step(moe_router, [w] * e, x, grad, precision),
        "mixed": Step(mixed, mixed_widths, x_mixed, grad, precision),
        "naive": NaiveStep(moe, [w] * e, x_moe[:naive_n], grad[:naive_n], precision),
    }
    quiet = common.wait_for_quiet(args.wait_quiet)
    with common.CpuMonitor() as mon:
        run = common.interleaved(steps, repeats, warmup, args.max_rounds)
    for kind in ("wall", "cpu"):  # the naive loop ran on fewer tokens: scale to n
        run["variants"]["naive"][kind] = [t * scale for t in run["variants"]["naive"][kind]]
    common.wait_for_quiet(args.wait_quiet)
    matmul = common.matmul_rate(args.threads)
    stats = common.analyse(run, "dense")

    descriptions = {
        "dense": f"dense FFN, MoEFeedForward({d}, [{w}])",
        "moe": f"{e} experts x {w}, top-1, balanced routing",
        "moe_router": f"{e} experts x {w}, top-1, routed by random-init router",
        "mixed": f"experts {mixed_widths}, top-1, balanced (mean width {sum(mixed_widths) / e:g})",
        "naive": f"per-token loop on {naive_n} tokens, time x{scale:g} to {n} tokens",
    }
    variants: dict[str, Any] = {}
    for name, step in steps.items():
        counts = step.counts if name in ("moe", "moe_router", "mixed") else None
        if name == "naive":
            counts = [n // e] * e
        gflop = ffn_gflop(n, d, step.widths, counts)
        entry = stats["variants"][name]
        entry.update(
            description=descriptions[name],
            widths=step.widths,
            expert_counts=counts,
            gflop_fwd_bwd=gflop,
            gflops_per_s=gflop / entry["quiet"]["wall"]["median_s"],
        )
        variants[name] = entry
    ratio = variants["moe"]["quiet"]["paired_ratio"]
    mixed_ratio = variants["mixed"]["quiet"]["paired_ratio"]
    payload = {
        "benchmark": NAME,
        "machine": info,
        "quiet_wait_before_run": quiet,
        "other_processes_cores_during_run": round(mon.other_cores, 3),
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
            "naive_scale": scale,
            "dtype": "float32 weights and gradients",
            "precision": precision.record(),
            "step": "forward + backward (input and weight grads; MoE adds 0.01 x balance loss)",
            "quiet_round_threshold_cores": common.QUIET_CORES,
        },
        "matmul_fp32": matmul,
        "rounds": {k: stats[k] for k in ("rounds", "quiet_rounds_found", "other_cores_per_round")},
        "variants": variants,
        "target": {
            "moe_over_dense_max": TARGET_RATIO,
            "moe_over_dense": ratio,
            "mixed_over_dense": mixed_ratio,
            "met": ratio <= TARGET_RATIO,
        },
    }

    rows = []
    for name, v in variants.items():
        q, a = v["quiet"], v["all"]
        rows.append(
            [
                name,
                v["description"],
                f"{q['wall']['median_s'] * 1e3:.1f}",
                f"{q['wall']['q1_s'] * 1e3:.0f}-{q['wall']['q3_s'] * 1e3:.0f}",
                f"{v['gflops_per_s']:.1f}",
                f"{q['paired_ratio']:.3f}",
                f"{a['paired_ratio']:.3f}",
            ]
        )
    table = common.markdown_table(
        [
            "variant",
            "what",
            "median ms (quiet)",
            "IQR ms",
            "GFLOP/s",
            "x dense, quiet rounds",
            "x dense, all rounds",
        ],
        rows,
    )
    quiet_note = (
        f"{stats['quiet_rounds_found']} of {stats['rounds']} rounds were quiet (other "
        f"processes < {common.QUIET_CORES} cores); "
        + (
            "too few, so the 'quiet' columns use all rounds"
            if stats["quiet_stats_use_all_rounds"]
            else "the 'quiet' columns use those rounds"
        )
    )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    warning = (
        "**WARNING: fewer than 3 quiet rounds; these numbers measure CPU contention, rerun.**"
        if stats["quiet_stats_use_all_rounds"] or stats["quiet_rounds_found"] < 3
        else ""
    )
    payload["contended"] = bool(warning)
    md = "\n\n".join(
        [
            f"# MoE layer: forward+backward, {n} tokens, embed {d}, top-1, {precision.name}",
            *([warning] if warning else []),
            common.machine_markdown(info),
            f"- {precision.line()}; forward passes under autocast, weights fp32",
            f"- {stats['rounds']} rounds interleaved (rotating order) after {warmup} warm-up "
            f"rounds, run until {repeats} were quiet or {args.max_rounds or 2 * repeats} ran; "
            f"{quiet_note}. Other processes averaged {mon.other_cores:.2f} cores over the run.",
            table,
            f"**Target: `moe` at most {TARGET_RATIO}x `dense`: {ratio:.3f}x ({verdict}).** "
            f"`mixed` vs its same-expected-FLOPs dense: {mixed_ratio:.3f}x. "
            f"Naive per-token loop: {variants['naive']['quiet']['paired_ratio']:.0f}x dense "
            f"(measured on {naive_n} tokens, time scaled x{scale:g}; its per-token backward "
            "writes a full-size rank-1 weight gradient for every token).",
            f"Expert token counts: moe {variants['moe']['expert_counts']}, moe_router "
            f"{variants['moe_router']['expert_counts']}, mixed "
            f"{variants['mixed']['expert_counts']}.",
            f"Measured fp32 matmul rate ({args.threads} threads, square "
            f"{'/'.join(matmul['sizes'])}): {matmul['gflops']:.1f} GFLOP/s. "
            "'x dense' = median over rounds of the per-round time ratio; GFLOP/s counts "
            "3 x forward matmul FLOPs of the active experts (+ router).",
        ]
    )
    print(md)
    if not args.no_write:
        # a contended run must not replace a clean result file by accident
        tag = ".contended" if payload["contended"] and not args.keep_contended else ""
        name = NAME + args.suffix + common.precision_tag(precision) + tag
        common.write_results(args.out, name, payload, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
