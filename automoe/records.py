"""Append-only result logs kept as JSON lines and CSV side by side.

Long jobs (training, searches) append one row per event and flush at once, so a kill loses
at most the row being written; `read` drops such a torn last line and repairs both files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class RecordLog:
    """`stem.jsonl` (full rows) and `stem.csv` (`columns`, cells from `to_cells`)."""

    def __init__(
        self,
        folder: Path,
        stem: str,
        columns: Sequence[str],
        to_cells: Callable[[Row], Row] = lambda row: row,
    ) -> None:
        self.jsonl = folder / f"{stem}.jsonl"
        self.csv = folder / f"{stem}.csv"
        self.columns = list(columns)
        self.to_cells = to_cells

    def read(self) -> list[Row]:
        """Every whole row; a torn last line (a kill mid-write) is dropped from both files."""
        if not self.jsonl.exists():
            return []
        rows: list[Row] = []
        lines = self.jsonl.read_text().splitlines()
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                self.rewrite(rows)
                break
        return rows

    def append(self, row: Row) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._append_csv(row)

    def rewrite(self, rows: Sequence[Row]) -> None:
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.csv.unlink(missing_ok=True)
        for row in rows:
            self._append_csv(row)

    def _append_csv(self, row: Row) -> None:
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(self.to_cells(row))
