"""Scoring sub-networks with inherited SuperNet weights, in this process or in a worker pool.

The score is the validation loss on a fixed subset (the paper's fitness), or BLEU on a subset
when asked. Worker processes each load the SuperNet and the subset once, then score many
architectures, so `--jobs N` spreads a batch of candidates over N processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError
from automoe.evaluate.quality import corpus_bleu, translate_examples, validation_loss
from automoe.precision import resolve_precision
from automoe.processes import die_with_parent
from automoe.runs import RUN_FILE, load_model_file, read_run_file, task_ids_for
from automoe.space import ArchConfig
from automoe.supernet.decode import DecodeSettings
from automoe.supernet.supernet import SuperNet

METRICS = ("loss", "bleu")


@dataclass(frozen=True)
class ScoringSettings:
    """What a score means; picklable, so worker processes rebuild the same scorer."""

    supernet: str
    metric: str = "loss"
    valid_size: int = 200
    data_dir: str | None = None
    beam: int = 1
    threads: int = 1
    precision: str = "fp32"


class ArchScorer:
    """Scores architectures of one SuperNet on a fixed validation subset."""

    def __init__(self, settings: ScoringSettings) -> None:
        model, tokenizer = load_model_file(settings.supernet)
        if not isinstance(model, SuperNet):
            raise AutomoeError(f"{settings.supernet} is an extracted model, not a SuperNet")
        self.settings = settings
        self.precision = resolve_precision(settings.precision)
        self.net = self.precision.for_inference(model)
        data_settings = _run_data_settings(settings.supernet, model)
        try:
            ids = task_ids_for(model, data_settings.pairs)
        except AutomoeError as err:
            raise AutomoeError(f"cannot score {settings.supernet}: {err}") from None
        self.data = RunData(data_settings, settings.data_dir, tokenizer=tokenizer, task_ids=ids)
        self.examples = self.data.valid_examples(settings.valid_size)
        self.batches = self.data.valid_batches(settings.valid_size)
        self.references = self.data.valid_references(settings.valid_size)

    def __call__(self, arch: ArchConfig) -> dict[str, float]:
        """`objective` is what the search minimises: the loss, or minus BLEU."""
        with self.precision.autocast():
            return self._score(arch)

    def _score(self, arch: ArchConfig) -> dict[str, float]:
        if self.settings.metric == "bleu":
            hyps = translate_examples(
                self.net,
                self.data.tokenizer,
                self.examples,
                arch,
                DecodeSettings(beam_size=self.settings.beam),
            )
            bleu = corpus_bleu(hyps, self.references)
            return {"bleu": bleu, "objective": -bleu}
        report = validation_loss(self.net, self.batches, arch)
        return {"loss": report.loss, "nll": report.nll, "objective": report.loss}


def _run_data_settings(supernet: str, model: SuperNet) -> DataSettings:
    """The data settings of the run the SuperNet came from (same subset and vocabulary); for a
    SuperNet file away from its run, the defaults on the pairs the model was trained on."""
    path = Path(supernet)
    folder = path if path.is_dir() else path.parent
    if (folder / RUN_FILE).is_file():
        return DataSettings(**read_run_file(folder)["data"])
    if model.config.task_names:
        return DataSettings(pairs=model.config.task_names)
    return DataSettings()


_WORKER: ArchScorer | None = None


def _init_worker(settings: ScoringSettings, parent: int) -> None:
    """Each worker ends with the search (even one killed with kill -9) and holds a scorer."""
    global _WORKER
    die_with_parent(parent)
    torch.set_num_threads(settings.threads)
    _WORKER = ArchScorer(settings)


def _score_in_worker(arch: dict[str, Any]) -> dict[str, float]:
    assert _WORKER is not None
    return _WORKER(ArchConfig.from_dict(arch))


class ScorerPool:
    """`jobs` worker processes; a worker that dies is replaced and its batch scored again."""

    def __init__(self, settings: ScoringSettings, jobs: int) -> None:
        self.settings = settings
        self.jobs = jobs
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.settings, os.getpid()),
            )
        return self._pool

    def score(self, archs: Sequence[ArchConfig]) -> list[dict[str, float]]:
        for attempt in range(2):
            try:
                return list(self._executor().map(_score_in_worker, [a.to_dict() for a in archs]))
            except cf.process.BrokenProcessPool:
                self.close()
                if attempt == 1:
                    raise
        return []

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
