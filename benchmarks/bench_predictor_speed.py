"""Speed of cost prediction inside a search loop: featurise + predict 10,000 architectures.

A search scores thousands of candidates per generation against a latency budget, so
`CostPredictor.predict_archs` (ArchFeatures.transform, then the regressor) must stay well
under 1 s for 10,000 architectures. Each registered model is fitted on `--train` sampled
multi30k architectures with a synthetic latency (prediction speed depends on the model's
size, not on what the target means), then timed on `--count` other architectures. Variants
run interleaved in rotating order; the medians over rounds are the headline figures.

Usage: python benchmarks/bench_predictor_speed.py [--threads 2] [--repeats 15] [--count 10000]
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import common
import numpy as np
import sklearn
from threadpoolctl import threadpool_info, threadpool_limits

from automoe.predictors import MODELS, ArchFeatures, CostPredictor
from automoe.space import ArchConfig, SearchSpace

NAME = "predictor_speed"
TARGET_S = 1.0


def synthetic_latency(arch: ArchConfig) -> float:
    """Milliseconds from FFN work (decoder per step, growing with depth) and attention."""
    encoder = sum(
        3e-6 * arch.encoder_embed_dim * sum(w) / len(w) * k
        for w, k in zip(arch.encoder_ffn_dims, arch.encoder_top_k, strict=True)
    )
    decoder = sum(
        1.5e-5 * arch.decoder_embed_dim * max(w) * k + 0.04 * h * n
        for w, k, h, n in zip(
            arch.decoder_ffn_dims,
            arch.decoder_top_k,
            arch.decoder_cross_heads,
            arch.decoder_cross_layers,
            strict=True,
        )
    )
    return 0.5 + encoder + (1 + 0.1 * arch.decoder_layers) * decoder


def time_rounds(
    variants: dict[str, Callable[[], Any]], repeats: int, warmup: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Wall seconds per variant per round (rotating order), and other processes' cores."""
    names = list(variants)
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    other = []
    for r in range(repeats):
        with common.CpuMonitor() as monitor:
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - start)
        other.append(round(monitor.other_cores, 2))
    return times, other


def main() -> None:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10_000, help="architectures to score")
    p.add_argument("--train", type=int, default=500, help="architectures to fit on")
    args = p.parse_args()
    repeats, warmup = args.repeats or 15, 1 if args.warmup is None else args.warmup
    common.set_threads(args.threads)
    with threadpool_limits(args.threads):
        space = SearchSpace.load("multi30k")
        rng = random.Random(args.seed)
        train = [space.sample(rng) for _ in range(args.train)]
        archs = [space.sample(rng) for _ in range(args.count)]
        features = ArchFeatures.from_space(space)
        y = np.array([synthetic_latency(a) for a in train])
        fitted = {
            name: CostPredictor(model=name, cv=None, random_state=args.seed).fit_archs(
                train, y, features
            )
            for name in MODELS
        }
        X = features.transform(archs)
        variants: dict[str, Callable[[], Any]] = {"featurise": lambda: features.transform(archs)}
        for name, predictor in fitted.items():
            variants[f"{name}:predict"] = lambda p=predictor: p.estimator_.predict(X)
            variants[f"{name}:total"] = lambda p=predictor: p.predict_archs(archs)
        times, other = time_rounds(variants, repeats, warmup)
        pools = threadpool_info()

    medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
    rows, models = [], {}
    for name in MODELS:
        total = medians[f"{name}:total"]
        models[name] = {
            "featurise_ms": medians["featurise"],
            "predict_ms": medians[f"{name}:predict"],
            "total_ms": total,
            "total_ms_min": 1000 * min(times[f"{name}:total"]),
            "total_ms_max": 1000 * max(times[f"{name}:total"]),
            "under_target": total < 1000 * TARGET_S,
        }
        rows.append(
            [
                name,
                round(medians["featurise"], 1),
                round(medians[f"{name}:predict"], 1),
                round(total, 1),
                round(1000 * min(times[f"{name}:total"]), 1),
                round(1000 * max(times[f"{name}:total"]), 1),
                "yes" if total < 1000 * TARGET_S else "NO",
            ]
        )
    info = common.machine_info(args.threads)
    info["sklearn"] = sklearn.__version__
    info["numpy"] = np.__version__
    info["threadpools"] = [
        {"api": pool["internal_api"], "threads": pool["num_threads"]} for pool in pools
    ]
    payload = {
        "name": NAME,
        "machine": info,
        "count": args.count,
        "train": args.train,
        "repeats": repeats,
        "warmup": warmup,
        "target_s": TARGET_S,
        "other_cores_per_round": other,
        "models": models,
        "samples_s": times,
    }
    header = [
        "model",
        "featurise (ms)",
        "predict (ms)",
        "featurise + predict (ms)",
        "fastest round (ms)",
        "slowest round (ms)",
        f"< {TARGET_S:g} s",
    ]
    threads = ", ".join(f"{p['api']} {p['threads']}" for p in info["threadpools"])
    markdown = "\n\n".join(
        [
            f"# Cost predictor speed: {args.count:,} architectures, featurise + predict",
            common.machine_markdown(info)
            + f"\n- scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
            f"library threads: {threads}",
            f"Each model fitted on {args.train} sampled multi30k architectures (synthetic "
            f"latency), then timed on {args.count:,} others: medians over {repeats} rounds "
            f"(rotating order, {warmup} warm-up). Other processes used {other} cores per round; "
            "on a shared machine the fastest round is the best estimate of the uncontended cost.",
            common.markdown_table(header, rows),
        ]
    )
    print(markdown)
    if not args.no_write:
        common.write_results(args.out, NAME, payload, markdown)


if __name__ == "__main__":
    main()
