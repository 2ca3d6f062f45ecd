"""End-to-end commands on a tiny trained SuperNet: evaluate, extract, translate."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from automoe.evaluate.__main__ import main as evaluate_main
from automoe.extract import main as extract_main
from automoe.runs import load_model_file
from automoe.space import ArchConfig
from automoe.supernet.supernet import SuperNet
from automoe.translate import main as translate_main

ROOT = Path(__file__).resolve().parents[1]


def cli(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", f"automoe.{module}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_extracted_model_scores_like_its_supernet_arch(
    tiny_run: Path, tmp_path: Path, data_dir: Path
) -> None:
    net, _ = load_model_file(tiny_run)
    assert isinstance(net, SuperNet)
    arch = net.space.sample(random.Random(3))
    arch_file = tmp_path / "arch.yaml"
    arch.save(arch_file)
    small = tmp_path / "small.pt"
    assert (
        extract_main(["--model", str(tiny_run), "--arch", str(arch_file), "--out", str(small)]) == 0
    )
    common = ["--split", "val", "--limit", "40", "--beam", "2", "--data-dir", str(data_dir)]
    inherited, standalone = tmp_path / "inherited.json", tmp_path / "standalone.json"
    assert (
        evaluate_main(
            [
                "--model",
                str(tiny_run),
                "--arch",
                str(arch_file),
                *common,
                "--out",
                str(inherited),
            ]
        )
        == 0
    )
    assert evaluate_main(["--model", str(small), *common, "--out", str(standalone)]) == 0
    a = json.loads(inherited.read_text())
    b = json.loads(standalone.read_text())
    assert ArchConfig.from_dict(a["arch"]) == ArchConfig.from_dict(b["arch"]) == arch
    ra, rb = a["results"][0], b["results"][0]
    assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)
    assert ra["bleu"] == pytest.approx(rb["bleu"], abs=1e-6)
    assert ra["sentences"] == 40


def test_translate_reads_arguments_files_and_stdin(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = ["A man rides a bike.", "Two dogs play in the snow.", "A girl is smiling."]
    assert translate_main(["--model", str(tiny_run), "--arch", "smallest", *sentences]) == 0
    from_args = capsys.readouterr().out.splitlines()
    assert len(from_args) == 3
    source = tmp_path / "src.txt"
    source.write_text("\n".join(sentences) + "\n")
    assert (
        translate_main(["--model", str(tiny_run), "--arch", "smallest", "--input", str(source)])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == from_args
    piped = cli("translate", "--model", str(tiny_run), "--arch", "smallest")
    assert piped.returncode == 0


def test_command_errors_are_one_clear_message(tiny_run: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.pt"
    assert extract_main(["--model", str(tiny_run), "--arch", "largest", "--out", str(small)]) == 0
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(small.read_bytes()[:1000])
    wide = tmp_path / "wide.yaml"
    net, _ = load_model_file(tiny_run)
    big = net.space.largest()
    ArchConfig.from_dict({**big.to_dict(), "encoder_embed_dim": 4096}).save(wide)
    cases = [
        (("translate", "--model", str(small), "--arch", "smallest", "hello"), "needs a SuperNet"),
        (("evaluate", "--model", str(tmp_path / "missing.pt")), "does not exist"),
        (("evaluate", "--model", str(corrupt)), "corrupt"),
        (
            ("extract", "--model", str(tiny_run), "--arch", str(wide), "--out", "x.pt"),
            "not in the space",
        ),
        (("extract", "--model", str(tmp_path), "--arch", "largest", "--out", "x.pt"), "train it"),
    ]
    for args, needle in cases:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert needle in result.stderr, (args, result.stderr)
