"""Cost of elasticity: training a sub-network inside the SuperNet vs the same arch extracted.

SuperNet shaped like the multi30k space (embed 256, QKV 256, 4 encoder + 4 decoder layers,
4 experts of width 1024 per layer, vocab 8000). Each variant takes full training steps
(forward, label-smoothed cross-entropy + 0.01 x balance loss, backward, Adam step) on the same
random-token batches (~4,000 target tokens each), interleaved in one process:

- `supernet_mid` : the SuperNet run at a mid-sized arch from the space (sliced weights);
- `extracted_mid`: that arch extracted as a standalone model (weights of exactly its shape);
- `supernet_full`, `extracted_full`: the same pair at the SuperNet's own (largest) shape, where
  every slice is a no-op: what remains is the cost of the elastic code path itself.

It also counts the model FLOPs of a SuperNet training step analytically (3 x forward matmul
FLOPs of the active arch: projections, attention scores and values, routers, the experts the
tokens were actually routed to, and the output projection) and reports them per second as a
fraction of this machine's measured fp32 matmul rate at the same thread count.

`--precision bf16` runs the forward passes under autocast (loss, weights and Adam in fp32,
as the trainer does) and writes `elastic_overhead.bf16.*`.

Usage: python benchmarks/bench_elastic.py [--threads 2] [--repeats 10] [--precision bf16]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import common
import torch
import torch.nn.functional as F

from automoe.precision import Precision, add_precision_option, resolve_precision
from automoe.space import ArchConfig
from automoe.supernet.model import ModelConfig, Transformer, extract

NAME = "elastic_overhead"
TARGET_RATIO = 1.1
TARGET_FLOPS_FRACTION = 0.35

VOCAB, QKV = 8000, 256
SHAPE = ArchConfig(
    encoder_embed_dim=256,
    decoder_embed_dim=256,
    encoder_ffn_dims=[[1024] * 4] * 4,
    encoder_heads=[4] * 4,
    encoder_top_k=[1] * 4,
    decoder_ffn_dims=[[1024] * 4] * 4,
    decoder_self_heads=[4] * 4,
    decoder_cross_heads=[4] * 4,
    decoder_cross_layers=[3] * 4,
    decoder_top_k=[1] * 4,
)
# a mid-sized member of the multi30k space: narrower decoder, mixed expert counts and widths,
# 3 of 4 decoder layers, head counts and cross-attention depths that differ per layer
MID = ArchConfig(
    encoder_embed_dim=256,
    decoder_embed_dim=192,
    encoder_ffn_dims=[[1024, 512], [768, 768, 512], [1024], [512, 1024, 768, 512]],
    encoder_heads=[4, 2, 4, 2],
    encoder_top_k=[1] * 4,
    decoder_ffn_dims=[[768, 512], [1024, 512, 768], [512]],
    decoder_self_heads=[2, 4, 4],
    decoder_cross_heads=[4, 2, 4],
    decoder_cross_layers=[1, 2, 3],
    decoder_top_k=[1] * 3,
)
ARCHS = {"mid": MID, "full": SHAPE}


def make_batches(
    count: int, target_tokens: int, seed: int, low: int, high: int
) -> list[tuple[torch.Tensor, ...]]:
    """Random-token batches of about `target_tokens` target tokens, lengths in [low, high].

    Sentences of one batch have similar lengths (like length-bucketed batching), so little
    compute goes to padding.
    """
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        src_lens, tgt_lens = [], []
        while sum(tgt_lens) < target_tokens:
            src_lens.append(int(torch.randint(low, high + 1, (1,), generator=g)))
            tgt_lens.append(int(torch.randint(low, high + 1, (1,), generator=g)))
        b = len(tgt_lens)
        src = torch.randint(4, VOCAB, (b, max(src_lens)), generator=g)
        tgt = torch.randint(4, VOCAB, (b, max(tgt_lens) + 1), generator=g)
        for i in range(b):
            src[i, src_lens[i] :] = 0
            tgt[i, tgt_lens[i] + 1 :] = 0
        prev, gold = tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()
        batches.append((src, src.eq(0), prev, gold))
    return batches


class TrainStep:
    """One optimisation step of `model` (at `arch`, None = its own shape) on the next batch.

    The SuperNet and the extracted model start from the same weights, see the same batches
    and the same dropout masks, and the learning rate is tiny, so they route tokens alike and
    do the same work (`routing_last_step` in the results shows it).
    """

    def __init__(
        self,
        model: Transformer,
        arch: ArchConfig | None,
        batches: list,
        lr: float,
        precision: Precision,
    ):
        self.model, self.arch, self.batches = model.train(), arch, batches
        self.precision = precision
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
        self.i = 0
        self.phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
        self.last_stats: tuple | None = None

    def __call__(self) -> None:
        src, pm, prev, gold = self.batches[self.i % len(self.batches)]
        torch.manual_seed(1000 + self.i)  # step i draws the same dropout masks in every variant
        self.i += 1
        t0 = time.perf_counter()
        with self.precision.autocast():
            out = self.model(src, pm, prev, self.arch)
        loss = F.cross_entropy(  # in fp32 whatever the forward ran in, as the trainer does
            out.logits.float().flatten(0, 1), gold.flatten(), ignore_index=0, label_smoothing=0.1
        )
        loss = loss + 0.01 * out.balance_loss
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        for name, dt in zip(self.phases, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.phases[name].append(dt)
        self.last_stats = (out.encoder_stats, out.decoder_stats)


def forward_flops(
    arch: ArchConfig, batch: tuple[torch.Tensor, ...], enc_counts: list, dec_counts: list
) -> dict[str, float]:
    """Forward matmul FLOPs (2 per multiply-add) of `arch` on the real tokens of `batch`.

    Per-token terms use real (non-padding) tokens; attention score and value products use
    each sentence's real lengths, full squares for self-attention (the usual MFU convention,
    no causal halving), and the decoder's cross attention spans `cross_layers` x source
    length keys, as the model concatenates that many encoder states. Expert FLOPs follow the
    actual routing (`*_counts`: tokens per expert per layer).
    """
    _, pm, prev, _ = batch
    s_len = (~pm).sum(1).double()
    t_len = prev.ne(0).sum(1).double()
    s_tok, t_tok = float(s_len.sum()), float(t_len.sum())
    ss, tt, ts = float((s_len**2).sum()), float((t_len**2).sum()), float((t_len * s_len).sum())
    de, dd, q = arch.encoder_embed_dim, arch.decoder_embed_dim, QKV
    parts = {"projections": 0.0, "attention": 0.0, "router": 0.0, "experts": 0.0, "output": 0.0}

    def ffn(d: int, dims: tuple[int, ...], counts: list[int] | None, tokens: float) -> None:
        if counts is None:  # one expert, dense
            counts = [int(tokens)]
        else:
            parts["router"] += 2 * d * len(dims) * tokens
        parts["experts"] += sum(4 * d * w * c for w, c in zip(dims, counts, strict=True))

    for i, dims in enumerate(arch.encoder_ffn_dims):
        parts["projections"] += 4 * 2 * de * q * s_tok  # Q, K, V, out
        parts["attention"] += 2 * 2 * q * ss  # scores + weighted values
        ffn(de, dims, enc_counts[i], s_tok)
    for i, dims in enumerate(arch.decoder_ffn_dims):
        n = arch.decoder_cross_layers[i]
        parts["projections"] += 4 * 2 * dd * q * t_tok  # self Q, K, V, out
        parts["attention"] += 2 * 2 * q * tt
        parts["projections"] += 2 * 2 * dd * q * t_tok  # cross Q, out
        parts["projections"] += 2 * 2 * de * q * n * s_tok  # cross K, V over n layers
        parts["attention"] += 2 * 2 * q * n * ts
        ffn(dd, dims, dec_counts[i], t_tok)
    parts["output"] = 2 * dd * VOCAB * t_tok
    parts["total"] = sum(parts.values())
    return parts


def routing_counts(stats: tuple) -> tuple[list, list]:
    enc, dec = stats
    conv = [[None if s is None else s.expert_counts.tolist() for s in side] for side in (enc, dec)]
    return conv[0], conv[1]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--target-tokens", type=int, default=4000, help="target tokens per batch")
    p.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    p.add_argument("--min-len", type=int, default=24)
    p.add_argument("--max-len", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-5, help="small: keeps the routing steady")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--wait-quiet", type=float, default=120.0, help="max s to wait for quiet CPUs")
    p.add_argument("--suffix", default="", help="result name suffix, e.g. '.threads1'")
    p.add_argument(
        "--keep-contended",
        action="store_true",
        help="write a contended run under the plain name (default: '<name>.contended.*')",
    )
    add_precision_option(p, "of the timed forward passes (weights and Adam stay fp32)")
    args = p.parse_args(argv)
    repeats = args.repeats or 10
    warmup = 2 if args.warmup is None else args.warmup

    common.set_threads(args.threads)
    precision = resolve_precision(args.precision)
    print(precision.line())
    info = common.machine_info(args.threads)
    torch.manual_seed(args.seed)
    batches = make_batches(args.batches, args.target_tokens, args.seed, args.min_len, args.max_len)
    supernets, steps, sizes = {}, {}, {}
    for key in args.archs:
        torch.manual_seed(args.seed)
        supernets[key] = Transformer(ModelConfig(VOCAB, QKV, SHAPE))  # dropout 0.1
        sub = extract(supernets[key], ARCHS[key])
        steps[f"supernet_{key}"] = TrainStep(
            supernets[key], ARCHS[key], batches, args.lr, precision
        )
        steps[f"extracted_{key}"] = TrainStep(sub, None, batches, args.lr, precision)
        sizes[key] = {"supernet_params": n_params(supernets[key]), "active_params": n_params(sub)}

    quiet = common.wait_for_quiet(args.wait_quiet)
    with common.CpuMonitor() as mon:
        run = common.interleaved(steps, repeats, warmup, args.max_rounds)
    common.wait_for_quiet(args.wait_quiet)
    matmul = common.matmul_rate(args.threads)

    pairs: dict[str, Any] = {}
    for key in args.archs:
        sn, ex = f"supernet_{key}", f"extracted_{key}"
        stats = common.analyse({"variants": {k: run["variants"][k] for k in (ex, sn)},
                                "other_cores": run["other_cores"]}, ex)  # fmt: skip
        quiet_idx = common.quiet_rounds(run["other_cores"])
        # the forward FLOPs of every batch, with the routing the SuperNet did on it
        n_b = len(batches)
        with torch.no_grad():
            model = supernets[key].eval()
            flops = []
            for batch in batches:
                out = model(batch[0], batch[1], batch[2], ARCHS[key])
                enc, dec = routing_counts((out.encoder_stats, out.decoder_stats))
                flops.append(forward_flops(ARCHS[key], batch, enc, dec))
            model.train()
        mean_fwd = {k: sum(f[k] for f in flops) / n_b for k in flops[0]}
        train_flop = 3 * mean_fwd["total"]
        step_s = stats["variants"][sn]["quiet"]["wall"]["median_s"]
        rate = train_flop / step_s / 1e9
        phases = {}
        for name in (sn, ex):
            ph = steps[name].phases
            # phases hold warm-up steps first; keep the timed ones of the rounds used
            timed = {k: v[warmup:] for k, v in ph.items()}
            phases[name] = {
                k: common.summary(common.pick(v, quiet_idx))["median_s"] for k, v in timed.items()
            }
        enc_sn, dec_sn = routing_counts(steps[sn].last_stats)
        enc_ex, dec_ex = routing_counts(steps[ex].last_stats)
        pairs[key] = {
            "arch": ARCHS[key].to_dict(),
            **sizes[key],
            "supernet_over_extracted": stats["variants"][sn]["quiet"]["paired_ratio"],
            "supernet_over_extracted_all_rounds": stats["variants"][sn]["all"]["paired_ratio"],
            "supernet_steps_per_s": 1 / step_s,
            "extracted_steps_per_s": 1 / stats["variants"][ex]["quiet"]["wall"]["median_s"],
            "phases_median_s": phases,
            "timing": stats,
            "forward_gflop_per_batch": {k: v / 1e9 for k, v in mean_fwd.items()},
            "train_gflop_per_step": train_flop / 1e9,
            "supernet_model_gflops_per_s": rate,
            "flops_fraction_of_matmul": rate / matmul["gflops"],
            "routing_last_step": {"supernet": [enc_sn, dec_sn], "extracted": [enc_ex, dec_ex]},
            "target_tokens_per_batch": [int(b[3].ne(0).sum()) for b in batches],
            "source_tokens_per_batch": [int((~b[1]).sum()) for b in batches],
            "batch_sizes": [int(b[0].shape[0]) for b in batches],
        }

    main_key = "mid" if "mid" in pairs else args.archs[0]
    ratio = pairs[main_key]["supernet_over_extracted"]
    fraction = pairs[main_key]["flops_fraction_of_matmul"]
    payload = {
        "benchmark": NAME,
        "machine": info,
        "quiet_wait_before_run": quiet,
        "other_processes_cores_during_run": round(mon.other_cores, 3),
        "settings": {
            "vocab": VOCAB,
            "qkv_dim": QKV,
            "supernet_shape": SHAPE.to_dict(),
            "target_tokens": args.target_tokens,
            "batches": args.batches,
            "lengths": [args.min_len, args.max_len],
            "optimizer": f"Adam(lr={args.lr}, betas=(0.9, 0.98)), zero_grad(set_to_none=True)",
            "loss": "cross-entropy (label smoothing 0.1, pad ignored) + 0.01 x balance loss",
            "dropout": 0.1,
            "precision": precision.record(),
            "repeats": repeats,
            "warmup": warmup,
            "seed": args.seed,
            "quiet_round_threshold_cores": common.QUIET_CORES,
        },
        "matmul_fp32": matmul,
        "pairs": pairs,
        "target": {
            "arch": main_key,
            "supernet_over_extracted_max": TARGET_RATIO,
            "supernet_over_extracted": ratio,
            "ratio_met": ratio <= TARGET_RATIO,
            "flops_fraction_min": TARGET_FLOPS_FRACTION,
            "flops_fraction": fraction,
            "flops_met": fraction >= TARGET_FLOPS_FRACTION,
        },
    }

    rows = []
    for key, v in pairs.items():
        t = v["timing"]["variants"]
        for name in (f"supernet_{key}", f"extracted_{key}"):
            q = t[name]["quiet"]
            ph = v["phases_median_s"][name]
            rows.append(
                [
                    name,
                    f"{v['supernet_params'] if name.startswith('super') else v['active_params']:,}",
                    f"{q['wall']['median_s'] * 1e3:.0f}",
                    f"{q['wall']['q1_s'] * 1e3:.0f}-{q['wall']['q3_s'] * 1e3:.0f}",
                    f"{1 / q['wall']['median_s']:.3f}",
                    " / ".join(f"{ph[k] * 1e3:.0f}" for k in ("forward", "backward", "optimizer")),
                    f"{q['paired_ratio']:.3f}",
                    f"{t[name]['all']['paired_ratio']:.3f}",
                ]
            )
    table = common.markdown_table(
        [
            "variant",
            "params held",
            "median step ms (quiet)",
            "IQR ms",
            "steps/s",
            "fwd / bwd / Adam ms",
            "x extracted, quiet rounds",
            "x extracted, all rounds",
        ],
        rows,
    )
    flops_rows = []
    for key, v in pairs.items():
        g = v["forward_gflop_per_batch"]
        flops_rows.append(
            [
                key,
                f"{v['active_params']:,}",
                " / ".join(
                    f"{g[k]:.2f}"
                    for k in ("projections", "attention", "router", "experts", "output")
                ),
                f"{v['train_gflop_per_step']:.1f}",
                f"{v['supernet_model_gflops_per_s']:.1f}",
                f"{v['flops_fraction_of_matmul']:.1%}",
            ]
        )
    flops_table = common.markdown_table(
        [
            "arch",
            "active params",
            "fwd GFLOP: proj / attn / router / experts / output",
            "train GFLOP/step (3x fwd)",
            "SuperNet model GFLOP/s",
            "of matmul peak",
        ],
        flops_rows,
    )
    q_found = run["other_cores"]
    n_quiet = sum(1 for x in q_found if x < common.QUIET_CORES)
    fallback = ""
    if n_quiet < min(3, len(q_found)):  # mirrors common.quiet_rounds
        fallback = " (too few: the quiet columns use all rounds)"
    warning = (
        "**WARNING: fewer than 3 quiet rounds; these numbers measure CPU contention, rerun.**"
        if n_quiet < 3
        else ""
    )
    payload["contended"] = bool(warning)
    m = pairs[main_key]
    flops_verdict = "met" if fraction >= TARGET_FLOPS_FRACTION else "NOT met"
    md = "\n\n".join(
        [
            "# Elastic overhead: SuperNet sub-network vs extracted model, training steps"
            f" ({precision.name})",
            *([warning] if warning else []),
            common.machine_markdown(info),
            f"- {precision.line()}; forward passes under autocast, loss, weights and Adam fp32",
            f"- SuperNet: vocab {VOCAB}, embed 256, QKV 256, 4+4 layers, 4 experts x 1024; "
            f"batches of {m['batch_sizes']} sentences, {m['target_tokens_per_batch']} target "
            f"and {m['source_tokens_per_batch']} source tokens (lengths {args.min_len}-"
            f"{args.max_len}); Adam lr {args.lr}, dropout 0.1.",
            f"- `mid` arch: `{MID.to_json()}`",
            f"- {len(q_found)} rounds interleaved (rotating order) after {warmup} warm-up "
            f"rounds, run until {repeats} were quiet or {args.max_rounds or 2 * repeats} ran; "
            f"{n_quiet} of {len(q_found)} rounds were quiet (other processes < "
            f"{common.QUIET_CORES} cores){fallback}; "
            f"other processes averaged {mon.other_cores:.2f} cores over the run.",
            table,
            flops_table,
            f"**Target: SuperNet path at most {TARGET_RATIO}x the extracted model "
            f"(`{main_key}`): {ratio:.3f}x ({'met' if ratio <= TARGET_RATIO else 'NOT met'}).**",
            f"**Target: SuperNet training at least {TARGET_FLOPS_FRACTION:.0%} of the fp32 "
            f"matmul rate: {fraction:.1%} ({flops_verdict})** — "
            f"{m['supernet_model_gflops_per_s']:.1f} model GFLOP/s vs a measured "
            f"{matmul['gflops']:.1f} GFLOP/s for square fp32 matmuls "
            f"({'/'.join(matmul['sizes'])}, {args.threads} threads).",
            "Model FLOPs = 3 x forward matmul FLOPs of the active arch on real tokens: Q/K/V/out "
            "projections, attention scores and values (full squares, cross attention over "
            "cross_layers x source keys), routers, the experts tokens were routed to, and the "
            "output projection. Dropout, softmax, norms and Adam are not counted.",
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
