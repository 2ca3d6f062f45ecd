"""What serves one pair, in parameters and bytes: the size columns of the deployment table.

Read from each row's untrained model (`Plan.shaped`): the count and the file size depend on
the architecture and the vocabulary, not on the weights' values, so they hold for every
trained seed. Written as a record, so the table outlives the model files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automoe.files import write_text_atomic
from automoe.runs import MODEL_FILE, load_model_file


def _model_file(path: Path) -> Path:
    return path / MODEL_FILE if path.is_dir() else path


def _params(path: Path) -> int:
    net, _ = load_model_file(path)
    return sum(t.numel() for t in net.parameters())


def measure(models: dict[str, Path], served: dict[str, dict[str, Path]], out: Path) -> None:
    """Row -> total parameters of the whole model (`models`) and, per pair, parameters and
    file MiB of what serves it (`served`: an export or the whole model); to `out`."""
    record: dict[str, Any] = {}
    for row, whole in models.items():
        pairs = {}
        for pair, path in served[row].items():
            file = _model_file(path)
            pairs[pair] = {"params": _params(file), "file_mib": file.stat().st_size / 2**20}
        exported = any(_model_file(path) != _model_file(whole) for path in served[row].values())
        record[row] = {
            "total_params": _params(_model_file(whole)),
            "exported": exported,
            "pairs": pairs,
        }
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")
