"""The default stages a search needs, built once in a work folder and reused afterwards.

`supernet/` is a short SuperNet training of a search space on Multi30k en-de, `latency.csv` a
latency dataset measured here from that SuperNet, `latency.predictor` a cost predictor fitted
on it. Each stage is skipped when its output exists and resumed when it was interrupted, so
the whole pipeline costs about 18 minutes once on 2 cores and nothing afterwards.
A work folder holds the stages of one space; another space needs another folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automoe.errors import AutomoeError
from automoe.latency.__main__ import main as latency_main
from automoe.predictors import CostPredictor
from automoe.runs import CHECKPOINT_FILE, RUN_FILE, SUPERNET_FILE, read_run_file
from automoe.space import SearchSpace
from automoe.train.__main__ import main as train_main


@dataclass(frozen=True)
class PipelineSettings:
    """Sizes of the default stages: about 18 minutes in all on 2 idle CPU cores."""

    workdir: Path = Path("runs/pipeline")
    space: str = "multi30k"
    data_dir: str | None = None
    train_steps: int = 400
    latency_archs: int = 120
    latency_runs: int = 10
    threads: int = 2
    precision: str = "fp32"

    @property
    def precision_flags(self) -> list[str]:
        """The stages train and time in the search's precision (fp32 is their default)."""
        return [] if self.precision == "fp32" else [f"--precision={self.precision}"]

    @property
    def supernet_dir(self) -> Path:
        return self.workdir / "supernet"

    @property
    def latency_csv(self) -> Path:
        return self.workdir / "latency.csv"

    @property
    def predictor_path(self) -> Path:
        return self.workdir / "latency.predictor"


def _check_space(settings: PipelineSettings) -> None:
    """Refuse a work folder whose SuperNet was trained on another space than asked for."""
    run = settings.supernet_dir
    if not (run / RUN_FILE).is_file():
        return
    trained = read_run_file(run)["space"]
    if trained != SearchSpace.load(settings.space).to_dict():
        raise AutomoeError(
            f"{settings.workdir} holds the stages of space {trained['name']!r}, not of "
            f"{settings.space}; choose another --workdir for this space"
        )


def ensure_supernet(settings: PipelineSettings, progress: bool = True) -> Path:
    """A SuperNet run folder trained on the settings' space, training (or resuming) it when
    needed."""
    _check_space(settings)
    run = settings.supernet_dir
    if (run / SUPERNET_FILE).is_file():
        return run
    flags = [f"--run={run}", f"--threads={settings.threads}"]

    if settings.data_dir:
        flags.append(f"--data-dir={settings.data_dir}")
    if not progress:
        flags.append("--no-progress")
    if (run / CHECKPOINT_FILE).is_file():
        train_main([*flags, "--resume"])
    else:
        print(f"stage 1/3: training a SuperNet for {settings.train_steps} steps in {run}")
        train_main(
            [
                *flags,
                f"--space={settings.space}",
                f"--max-steps={settings.train_steps}",
                "--warmup-steps=100",
                "--validate-every=200",
                "--checkpoint-every=50",
                *settings.precision_flags,
            ]
        )
    return run


def ensure_predictor(settings: PipelineSettings, supernet: str, progress: bool = True) -> Path:
    """A latency predictor fitted on latencies measured here, measuring what is missing."""
    path = settings.predictor_path
    if path.is_file():
        return path
    print(
        f"stage 2/3: measuring {settings.latency_archs} architectures into {settings.latency_csv}"
    )
    flags = [
        "dataset",
        f"--out={settings.latency_csv}",
        f"--supernet={supernet}",
        f"--count={settings.latency_archs}",
        f"--runs={settings.latency_runs}",
        f"--threads={settings.threads}",
        *settings.precision_flags,
    ]
    if settings.data_dir:
        flags.append(f"--data-dir={settings.data_dir}")
    if not progress:
        flags.append("--no-progress")
    latency_main(flags)
    print(f"stage 3/3: fitting a latency predictor into {path}")
    predictor = CostPredictor(target="latency_ms").fit_csv(settings.latency_csv)
    predictor.save(path)
    return path
