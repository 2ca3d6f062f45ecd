"""A plain wheel build ships every module of every package under the automoe namespace (a new
subpackage missing from pyproject.toml fails here) and the presets."""

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
    modules = [
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "automoe").rglob("*.py")),
        *(f"automoe/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "strategies").glob("*.py")),
        *(f"automoe/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "predictors").glob("*.py")),
    ]
    for needed in (*modules, "automoe/spaces/multi30k.yaml", "automoe/spaces/wmt.yaml"):
        assert needed in names, needed
    assert not any(n.startswith(("strategies/", "predictors/", "tests/")) for n in names)
