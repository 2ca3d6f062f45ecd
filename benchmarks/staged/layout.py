"""Where a staged benchmark writes: `work` holds every stage's output (never committed),
`results` the report and, in a folder of the report's name, its figures and architecture
files (committed with it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class StagedLayout:
    """The folders every staged benchmark has; a benchmark adds its own (`NAME`: the
    report's file name without extension)."""

    NAME: ClassVar[str] = ""
    work: Path
    results: Path

    @property
    def figures(self) -> Path:
        return self.results / self.NAME

    @property
    def report_md(self) -> Path:
        return self.results / f"{self.NAME}.md"

    @property
    def report_json(self) -> Path:
        return self.results / f"{self.NAME}.json"

    @property
    def ledger(self) -> Path:
        """The committed record of finished stages (`staged.ledger`)."""
        return self.figures / "ledger"

    def train(self, name: str) -> Path:
        return self.work / "train" / name

    @property
    def supernet(self) -> Path:
        return self.work / "supernet"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def stage_times(self) -> Path:
        return self.work / "stage_times.json"
