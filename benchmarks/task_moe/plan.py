"""Every stage of the Task-MoE benchmark, in the order the scheduler prefers them.

Order: the architecture files, the first seed of every hand-designed model, the routing
SuperNet, the dense latency that bounds its search, the search, the sizing and timing runs,
the winner's first seed, then the later seeds, the rows the targets compare first. Each
training's per-pair exports and evaluations are preferred as soon as they can run, so a
model's BLEU (the dense model's says whether the budget is enough) is known minutes after its
training, not sessions later. The plan is rebuilt after each stage: the winner's exports
depend on whether the search chose task routing anywhere.

What is sized and timed is each row's architecture as an untrained model (`shape` stages:
one update of `automoe.train --arch`), not its trained seeds: a model's size does not depend
on its weights, nor does the cost of decoding at forced lengths (`timing`), and trained
models do not outlive the machine that trained them, while the timing must see every row in
one run. The routing SuperNet trains on every core so that it, its search and the timing
fit one session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from staged import ledger
from staged.search import resumable_search, search_finished
from staged.stages import ALL, Stage
from staged.training import resumable_training

from automoe.runs import MODEL_FILE, SUPERNET_FILE
from automoe.space import ArchConfig, SearchSpace
from task_moe import deployment, timing
from task_moe.archs import ROUTING, write_models
from task_moe.settings import Layout, Sizes

SPACE = Path(__file__).with_name("space.yaml")
SEARCHED = "routing"  # the routing search's winner, a row beside the hand-designed ones
ROWS = (*ROUTING, SEARCHED)
# The order later seeds train in: the rows the targets compare (dense, token-MoE, task-MoE)
# first.
SEED_ORDER = ("dense", "token", "task", "mixed", "sentence", SEARCHED)
# Every training's number format (as bench_multi30k's final models): bf16 where the CPU has
# it, no measured cost in quality (benchmarks/results/precision.md).
PRECISION = "bf16"


@dataclass(frozen=True)
class Inputs:
    """What the command line fixes: the space, the data folder, cores and timing threads."""

    space: Path
    data_dir: str | None
    jobs: int
    timing_threads: int


class Plan:
    """Builds the stage list from the sizes, the folders and what earlier stages wrote."""

    def __init__(self, sizes: Sizes, layout: Layout, inputs: Inputs) -> None:
        self.sizes = sizes
        self.layout = layout
        self.inputs = inputs
        self.space = SearchSpace.load(inputs.space)

    def common_flags(self) -> list[str]:
        return [f"--data-dir={self.inputs.data_dir}"] if self.inputs.data_dir else []

    def arch_file(self, row: str) -> Path:
        return self.layout.search / "best.yaml" if row == SEARCHED else self.layout.arch(row)

    def arch(self, row: str) -> ArchConfig | None:
        """A row's architecture once its stage is done (the winner: once the search is)."""
        path = self.arch_file(row)
        if not path.is_file() or (row == SEARCHED and not search_finished(self.layout.search)):
            return None
        return ArchConfig.load(path)

    def exported(self, row: str) -> bool:
        """Whether a row deploys as per-pair exports: it routes some layer by task."""
        arch = self.arch(row)
        return arch is not None and "task" in arch.routing_modes

    def shaped(self, row: str, pair: str) -> Path:
        """What is sized and timed for `pair`: the untrained model's export, or itself."""
        return self.layout.shape_export(row, pair) if self.exported(row) else self.layout.shape(row)

    def stages(self) -> list[Stage]:
        first, *later = self.sizes.seeds
        hand = [r for r in ROWS if r != SEARCHED]
        out = [self._archs()]
        out += [s for seed in self.sizes.seeds for row in ROWS for s in self._scoring(row, seed)]
        out += [self._training(row, first) for row in hand]
        out += [self._supernet(), self._dense_latency(), self._search()]
        out += [s for row in ROWS for s in self._shape(row)]
        out.append(self._deployment())
        out += self._timings()
        out.append(self._training(SEARCHED, first))
        out += [self._training(row, seed) for seed in later for row in SEED_ORDER]
        return ledger.mark(out, self.layout.ledger)

    # ------------------------------------------------------------------ stages

    def _archs(self) -> Stage:
        files = [self.layout.arch(row) for row in ROUTING]
        return Stage(
            "archs",
            files[-1],
            action=lambda: write_models(self.space, self.layout.figures),
            about="the hand-designed architectures (benchmarks/task_moe/archs.py)",
            slots=0,
            finished=lambda: all(f.is_file() for f in files),
        )

    def _training(self, row: str, seed: int) -> Stage:
        s, name = self.sizes, f"{row}-s{seed}"
        command = (
            "automoe.train",
            f"--run={self.layout.train(name)}",
            f"--arch={self.arch_file(row)}",
            f"--space={self.inputs.space}",
            *s.data_flags(),
            f"--max-steps={s.final_steps}",
            f"--warmup-steps={s.final_warmup}",
            f"--dropout={s.dropout}",
            f"--validate-every={s.validate_every}",
            f"--checkpoint-every={s.checkpoint_every}",
            f"--seed={seed}",
            f"--precision={PRECISION}",
            "--threads=1",
            "--no-progress",
            *self.common_flags(),
        )
        return resumable_training(
            f"train {name}",
            command,
            MODEL_FILE,
            self.common_flags(),
            self._arch_deps(row),
            inputs=(self.arch_file(row),),
        )

    def _arch_deps(self, row: str) -> tuple[str, ...]:
        """The stage that writes a row's architecture file."""
        return ("search routing",) if row == SEARCHED else ("archs",)

    def _shape(self, row: str) -> list[Stage]:
        """A row's architecture as an untrained model, with the tokenizer the trainings
        build, and its per-pair exports where it routes by task."""
        s, run = self.sizes, self.layout.shape(row)
        command = (
            "automoe.train",
            f"--run={run}",
            f"--arch={self.arch_file(row)}",
            f"--space={self.inputs.space}",
            *s.data_flags(),
            "--max-steps=1",
            "--warmup-steps=0",
            "--seed=1",
            "--threads=1",
            "--no-progress",
            *self.common_flags(),
        )
        out = [
            resumable_training(
                f"shape {row}",
                command,
                MODEL_FILE,
                self.common_flags(),
                self._arch_deps(row),
                inputs=(self.arch_file(row),),
            )
        ]
        if self.exported(row):
            for pair in s.pairs:
                export = self.layout.shape_export(row, pair)
                command = (
                    "automoe.export",
                    f"--model={run}",
                    f"--task={pair}",
                    "--weights=fp32",
                    f"--out={export}",
                )
                out.append(Stage(f"shape {row} {pair}", export, (f"shape {row}",), command))
        return out

    def _shape_deps(self, pairs: tuple[str, ...]) -> tuple[str, ...]:
        """The stages writing every row's untrained model deployed for `pairs`."""
        out: list[str] = []
        for row in ROWS:
            exported = self.exported(row)
            out += [f"shape {row} {pair}" for pair in pairs] if exported else [f"shape {row}"]
        return tuple(out)

    def _deployment(self) -> Stage:
        models = {row: self.layout.shape(row) for row in ROWS}
        return Stage(
            "deployment",
            self.layout.deployment,
            self._shape_deps(self.sizes.pairs),
            action=lambda: deployment.measure(
                models,
                {row: {p: self.shaped(row, p) for p in self.sizes.pairs} for row in ROWS},
                self.layout.deployment,
            ),
            about="parameters and file size of what serves each pair "
            "(benchmarks/task_moe/deployment.py)",
        )

    def _supernet(self) -> Stage:
        """The SuperNet of the routing search: every layer's routers trained on all pairs."""
        s = self.sizes
        command = (
            "automoe.train",
            f"--run={self.layout.supernet}",
            f"--space={self.inputs.space}",
            *s.data_flags(),
            f"--max-steps={s.supernet_steps}",
            f"--warmup-steps={s.supernet_warmup}",
            f"--dropout={s.dropout}",
            f"--validate-every={s.validate_every}",
            f"--checkpoint-every={s.checkpoint_every}",
            "--seed=1",
            f"--precision={PRECISION}",
            f"--threads={self.inputs.jobs}",
            "--no-progress",
            *self.common_flags(),
        )
        return resumable_training(
            "supernet",
            command,
            SUPERNET_FILE,
            self.common_flags(),
            slots=ALL,
            threads=self.inputs.jobs,
        )

    def _dense_latency(self) -> Stage:
        """The dense row's latency as a SuperNet sub-network, timed as the search times
        (one thread, alone on the machine)."""
        s, threads = self.sizes, 1
        command = (
            "automoe.latency",
            "measure",
            f"--model={self.layout.supernet}",
            f"--arch={self.layout.arch('dense')}",
            f"--threads={threads}",
            f"--precision={PRECISION}",
            *self.common_flags(),
        )
        return Stage(
            "latency dense",
            self.layout.dense_latency,
            ("supernet", "archs"),
            command,
            slots=ALL,
            threads=threads,
            minutes=s.eval_minutes / 4,
            stdout=True,
        )

    def bound(self) -> str:
        """The search's latency bound: the dense model's (a placeholder until measured)."""
        path = self.layout.dense_latency
        if not path.is_file():
            return "<the dense model's latency>"
        return f"{timing.read_latency(path):.2f}"

    def _search(self) -> Stage:
        """Evolution over the space, every layer choosing its routing, for the lowest
        validation loss and latency under the dense model's latency, measured on one
        thread with nothing beside it (the bound was measured so)."""
        s, run = self.sizes, self.layout.search
        command = (
            "automoe.search",
            "--strategy=evolution",
            f"--run={run}",
            f"--supernet={self.layout.supernet}",
            "--latency=measured",
            f"--constraint=latency_ms<={self.bound()}",
            "--objectives=loss,latency_ms",
            f"--evaluations={s.evaluations}",
            f"--valid-size={s.search_valid}",
            f"--batch={s.search_batch}",
            f"--precision={PRECISION}",
            "--seed=0",
            "--threads=1",
            "--no-progress",
            *self.common_flags(),
        )
        deps = ("latency dense", "supernet")
        return resumable_search(
            "search routing", run, command, self.common_flags(), deps, slots=ALL
        )

    def _scoring(self, row: str, seed: int) -> list[Stage]:
        """Test BLEU and chrF per pair: of each per-pair export, or of the whole model."""
        s, name = self.sizes, f"{row}-s{seed}"
        test = [
            "--split=test_2016_flickr",
            f"--beam={s.beam}",
            *([f"--limit={s.eval_limit}"] if s.eval_limit else []),
            "--threads=1",
            *self.common_flags(),
        ]
        trained = (f"train {name}",)
        if not self.exported(row):
            out = self.layout.evaluation(name)
            command = ("automoe.evaluate", f"--model={self.layout.train(name)}", *test)
            return [
                Stage(
                    f"eval {name}",
                    out,
                    trained,
                    (*command, f"--out={out}"),
                    minutes=s.eval_minutes,
                )
            ]
        stages = []
        for pair in s.pairs:
            export = self.layout.export(name, pair)
            out = self.layout.evaluation(name, pair)
            stages.append(
                Stage(
                    f"export {name} {pair}",
                    export,
                    trained,
                    (
                        "automoe.export",
                        f"--model={self.layout.train(name)}",
                        f"--task={pair}",
                        "--weights=fp32",
                        f"--out={export}",
                    ),
                    minutes=1.0,
                )
            )
            stages.append(
                Stage(
                    f"eval {name} {pair}",
                    out,
                    (f"export {name} {pair}",),
                    (
                        "automoe.evaluate",
                        f"--model={export}",
                        f"--pairs={pair}",
                        *test,
                        f"--out={out}",
                    ),
                    minutes=s.eval_minutes / len(s.pairs),
                )
            )
        return stages

    def timed_models(self) -> dict[str, Path]:
        """Row -> its untrained model deployed for the first pair (what gets timed)."""
        pair = self.sizes.pairs[0]
        return {row: self.shaped(row, pair) for row in ROWS}

    def _timings(self) -> list[Stage]:
        """Throughput at every batch size and peak memory, each alone on the machine."""
        s, threads = self.sizes, self.inputs.timing_threads
        pair = s.pairs[0]
        deps = self._shape_deps((pair,))
        return [
            Stage(
                "timing throughput",
                self.layout.throughput,
                deps,
                action=lambda: timing.measure_throughput(
                    self.timed_models(), self.layout.throughput, s, threads, self.inputs.data_dir
                ),
                about=f"beam-{s.beam} decoding of {pair} test sentences at forced lengths, "
                f"batch {', '.join(map(str, s.batch_sizes))}, models interleaved "
                "(benchmarks/task_moe/timing.py)",
                slots=ALL,
                threads=threads,
                minutes=s.timing_minutes,
            ),
            Stage(
                "timing memory",
                self.layout.memory,
                deps,
                action=lambda: timing.measure_memory(
                    self.timed_models(), self.layout.memory, s, threads, self.inputs.data_dir
                ),
                about=f"peak resident memory of `python -m automoe.translate` on "
                f"{s.memory_sentences} {pair} test sentences (benchmarks/task_moe/timing.py)",
                slots=ALL,
                threads=threads,
                minutes=s.timing_minutes / 2,
            ),
        ]
