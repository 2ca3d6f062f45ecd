"""The settings a benchmark's work folder is fixed to (`settings.json`).

Reusing a finished stage under other settings would mix two experiments, so a later
invocation with other sizes is refused before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automoe.errors import AutomoeError
from automoe.files import write_text_atomic

SETTINGS_FILE = "settings.json"


def fix_settings(work: Path, settings: dict[str, Any]) -> None:
    """Record the settings of a new work folder; refuse other settings for an old one."""
    path = work / SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        differs = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differs:
            shown = "; ".join(
                f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} now" for k in differs
            )
            raise AutomoeError(
                f"{work} was started with other settings ({shown}); rerun with the same "
                "options or choose another --work folder"
            )
        return
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")
