"""A plain wheel build ships every package under the automoe namespace and the presets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_namespaced_packages_and_presets(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("automoe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "automoe/__init__.py",
        "automoe/strategies/__init__.py",
        "automoe/predictors/__init__.py",
        "automoe/cost/__init__.py",
        "automoe/data/__init__.py",
        "automoe/supernet/__init__.py",
        "automoe/spaces/multi30k.yaml",
        "automoe/spaces/wmt.yaml",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("strategies/", "predictors/", "tests/")) for n in names)
