"""The stages that train and score models: the SuperNet, each final model (from scratch or
fine-tuned), its evaluation, the SuperNet-as-estimator evaluations and the timing runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staged.stages import ALL, Stage
from staged.training import resumable_training

from automoe.runs import MODEL_FILE, SUPERNET_FILE
from multi30k import timing
from multi30k.rows import BASELINES, FRONT_PREFIX, LARGEST, SEARCHED

if TYPE_CHECKING:
    from multi30k.plan import Plan


def supernet_training(plan: Plan) -> Stage:
    """The paper's SuperNet on the space, with every core (nothing else can start before)."""
    s, jobs = plan.sizes, plan.inputs.jobs
    command = (
        "automoe.train",
        f"--run={plan.layout.supernet}",
        f"--space={plan.inputs.space}",
        "--pairs=en-de",
        *s.data_flags,
        f"--max-steps={s.supernet_steps}",
        f"--warmup-steps={s.supernet_warmup}",
        f"--dropout={s.dropout}",
        f"--validate-every={s.supernet_validate}",
        f"--checkpoint-every={s.supernet_checkpoint}",
        f"--threads={jobs}",
        "--no-progress",
        *plan.common_flags(),
    )
    return resumable_training(
        "supernet", command, SUPERNET_FILE, plan.common_flags(), slots=ALL, threads=jobs
    )


def supernet_again(plan: Plan) -> Stage:
    """A reused SuperNet whose weights are not on this machine, trained again from its
    folder's settings with every core (its first run's, kept by the ledger)."""
    jobs = plan.inputs.jobs
    command = (
        "automoe.train",
        f"--run={plan.supernet}",
        "--resume",
        f"--threads={jobs}",
        "--no-progress",
        *plan.common_flags(),
    )
    return resumable_training(
        "supernet", command, SUPERNET_FILE, plan.common_flags(), slots=ALL, threads=jobs
    )


def arch_deps(key: str) -> tuple[str, ...]:
    """The stage that writes an architecture's file."""
    if key in BASELINES:
        return ("baselines",)
    if key.startswith(FRONT_PREFIX):
        return ("front",)
    return (f"search {key}",)


# Every final model trains in bf16 (fp32 where the CPU has no bf16 instructions, which the
# run's record then says): it trains ~1.1x faster on an EPYC with avx512_bf16, more with AMX,
# at no measured cost in quality (benchmarks/results/precision.md). Not `auto`, so that every
# row trains in the same format whichever machine a session lands on.
FINAL_PRECISION = "bf16"


def training(plan: Plan, key: str, seed: int, finetune: bool = False) -> Stage:
    """From scratch (`--arch`, the SuperNet's data settings), or from the SuperNet's
    inherited weights (`--init-from`), with the common budget."""
    s = plan.sizes
    name = f"{key}-ft-s{seed}" if finetune else f"{key}-s{seed}"
    source = (
        [f"--init-from={plan.supernet}"]
        if finetune
        else [f"--space={plan.inputs.space}", *plan.data_flags()]
    )
    command = (
        "automoe.train",
        f"--run={plan.layout.train(name)}",
        f"--arch={plan.arch_file(key)}",
        *source,
        f"--max-steps={s.final_steps}",
        f"--warmup-steps={s.final_warmup}",
        f"--dropout={s.dropout}",
        f"--validate-every={s.validate_every}",
        f"--checkpoint-every={s.checkpoint_every}",
        f"--seed={seed}",
        f"--precision={FINAL_PRECISION}",
        "--threads=1",
        "--no-progress",
        *plan.common_flags(),
    )
    deps = arch_deps(key) + (("supernet",) if finetune else ())
    inputs = (plan.arch_file(key),) + ((plan.supernet / SUPERNET_FILE,) if finetune else ())
    return resumable_training(
        f"train {name}", command, MODEL_FILE, plan.common_flags(), deps, inputs=inputs
    )


def _test_flags(plan: Plan) -> list[str]:
    s = plan.sizes
    return [
        "--split=test_2016_flickr",
        f"--beam={s.beam}",
        *([f"--limit={s.eval_limit}"] if s.eval_limit else []),
    ]


def evaluation(plan: Plan, name: str, deps: tuple[str, ...]) -> Stage:
    """Test BLEU and chrF of a trained model (or of the SuperNet's largest)."""
    out = plan.layout.evaluation(name)
    model = (
        [f"--model={plan.supernet}", "--arch=largest"]
        if name == LARGEST
        else [f"--model={plan.layout.train(name)}"]
    )
    command = (
        "automoe.evaluate",
        *model,
        *_test_flags(plan),
        "--threads=1",
        f"--out={out}",
        *plan.common_flags(),
    )
    return Stage(f"eval {name}", out, deps, command, minutes=plan.sizes.eval_minutes)


def inherited(plan: Plan, key: str) -> list[Stage]:
    """Validation loss (all sentences) and test BLEU of an architecture with the SuperNet's
    weights: what the search sees, to set against the model trained from scratch."""
    s, out = plan.sizes, []
    val = ["--split=val", "--no-bleu", *([f"--limit={s.val_limit}"] if s.val_limit else [])]
    for split, flags in (("val", val), ("test", _test_flags(plan))):
        path = plan.layout.estimator / f"{key}-inherited-{split}.json"
        command = (
            "automoe.evaluate",
            f"--model={plan.supernet}",
            f"--arch={plan.arch_file(key)}",
            *flags,
            "--threads=1",
            f"--out={path}",
            *plan.common_flags(),
        )
        deps = ("supernet", *arch_deps(key))
        out.append(Stage(f"inherited {key} {split}", path, deps, command, minutes=s.eval_minutes))
    return out


def timings(plan: Plan) -> list[Stage]:
    """Latency and throughput of every timed model, each in one interleaved run, alone: the
    architectures with the SuperNet's weights (`Plan.timed_models`), so once the searches
    and the front are done."""
    s, threads = plan.sizes, plan.inputs.latency_threads
    deps = ("baselines", "supernet", "front", *(f"search {row.key}" for row in SEARCHED))

    def latency() -> None:
        timing.measure_latency_all(
            plan.timed_models(), plan.layout.latency, s, threads, plan.inputs.data_dir
        )

    def throughput() -> None:
        timing.measure_throughput_all(
            plan.timed_models(), plan.layout.throughput, s, threads, plan.inputs.data_dir
        )

    return [
        Stage(
            "timing latency",
            plan.layout.latency,
            deps,
            action=latency,
            about="CPU latency of every model, the paper's protocol, models interleaved "
            "(benchmarks/multi30k/timing.py)",
            slots=ALL,
            threads=threads,
            minutes=s.timing_minutes,
        ),
        Stage(
            "timing throughput",
            plan.layout.throughput,
            deps,
            action=throughput,
            about=f"decoding throughput at batch {s.throughput_batch}, beam {s.beam}, "
            "models interleaved (benchmarks/multi30k/timing.py)",
            slots=ALL,
            threads=threads,
            minutes=s.timing_minutes,
        ),
    ]
