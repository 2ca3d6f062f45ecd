"""`train --arch`: one fixed architecture trained as a model of its own, from scratch or from a
SuperNet's inherited weights, and accepted by every command that takes a model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import yaml

from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError
from automoe.evaluate.__main__ import main as evaluate_main
from automoe.evaluate.quality import validation_loss
from automoe.runs import MODEL_FILE, load_model_file
from automoe.space import SearchSpace, SpaceError
from automoe.supernet.supernet import SuperNet
from automoe.train import api as train_api
from automoe.train.__main__ import main as train_main
from automoe.translate import main as translate_main


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory: pytest.TempPathFactory, tiny_space_file: Path) -> Path:
    """An MoE architecture of the tiny space: the largest, whose layers hold several experts."""
    arch = SearchSpace.load(tiny_space_file).largest()
    path = tmp_path_factory.mktemp("arch") / "arch.yaml"
    path.write_text(yaml.safe_dump(arch.to_dict()))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_an_architecture_trains_into_a_model_every_command_accepts(
    tmp_path: Path,
    tiny_space_file: Path,
    arch_file: Path,
    train_tiny: Callable[..., Path],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = train_tiny(tmp_path / "run", tiny_space_file, arch=arch_file, validate_every=10)
    model, _ = load_model_file(run)
    assert not isinstance(model, SuperNet)
    assert model.default_arch.to_dict() == yaml.safe_load(arch_file.read_text())
    assert (run / MODEL_FILE).is_file() and not (run / "supernet.pt").exists()
    validated = [row["valid_loss"] for row in metrics(run) if "valid_loss" in row]
    assert len(validated) == 3 and validated[-1] < validated[0]
    out = tmp_path / "eval.json"
    args = [f"--model={run}", f"--data-dir={data_dir}", "--limit=10", "--beam=1"]
    assert evaluate_main([*args, f"--out={out}"]) == 0
    assert json.loads(out.read_text())["results"][0]["loss"] == pytest.approx(
        validated[-1], rel=0.5
    )
    capsys.readouterr()
    assert translate_main(["a man is running .", f"--model={run / MODEL_FILE}"]) == 0
    assert capsys.readouterr().out.strip()


def test_an_architecture_run_resumes_exactly(
    tmp_path: Path, tiny_space_file: Path, arch_file: Path, train_tiny: Callable[..., Path]
) -> None:
    whole = train_tiny(tmp_path / "whole", tiny_space_file, arch=arch_file, max_steps=12)
    parts = train_tiny(tmp_path / "parts", tiny_space_file, arch=arch_file, max_steps=12, stop_at=5)
    assert train_main([f"--run={parts}", "--resume", "--no-progress"]) == 0
    assert [r["loss"] for r in metrics(parts)] == [r["loss"] for r in metrics(whole)]


def test_init_from_reads_the_supernet_once_and_lets_it_go(
    tmp_path: Path, tiny_run: Path, arch_file: Path, data_dir: Path
) -> None:
    flags = [
        f"--arch={arch_file}",
        f"--init-from={tiny_run}",
        f"--data-dir={data_dir}",
        "--max-steps=1",
        "--threads=1",
        "--no-progress",
    ]
    with mock.patch.object(train_api, "load_model_file", wraps=load_model_file) as load:
        assert train_main([f"--run={tmp_path / 'a'}", *flags]) == 0
        assert load.call_count == 1
        with pytest.raises(AutomoeError, match="not a SuperNet"):
            train_main([f"--run={tmp_path / 'b'}", *flags[:1], f"--init-from={tmp_path / 'a'}"])
    assert train_api._inherited_from.cache_info().currsize == 0


def test_init_from_starts_at_the_supernets_inherited_weights(
    tmp_path: Path,
    tiny_run: Path,
    arch_file: Path,
    train_tiny: Callable[..., Path],
    data_dir: Path,
) -> None:
    supernet, tokenizer = load_model_file(tiny_run)
    run = tmp_path / "tuned"
    flags = [
        f"--run={run}",
        f"--arch={arch_file}",
        f"--init-from={tiny_run}",
        f"--data-dir={data_dir}",
        "--max-steps=1",
        "--lr=1e-9",
        "--warmup-steps=0",
        "--threads=1",
        "--no-progress",
    ]
    assert train_main(flags) == 0
    tuned, tuned_tokenizer = load_model_file(run)
    assert tuned_tokenizer.model_proto == tokenizer.model_proto
    settings = DataSettings(**json.loads((tiny_run / "run.json").read_text())["data"])
    batches = RunData(settings, data_dir, tokenizer=tokenizer).valid_batches()
    inherited = validation_loss(supernet, batches, tuned.default_arch).loss
    assert metrics(run)[-1]["valid_loss"] == pytest.approx(inherited, abs=1e-3)


def test_impossible_architecture_runs_are_refused(
    tmp_path: Path, tiny_space_file: Path, tiny_run: Path, arch_file: Path
) -> None:
    base = [f"--run={tmp_path / 'run'}", "--no-progress"]
    with pytest.raises(AutomoeError, match="--init-from needs --arch"):
        train_main([*base, f"--init-from={tiny_run}"])
    with pytest.raises(AutomoeError, match="--space with --init-from"):
        train_main([*base, f"--arch={arch_file}", f"--init-from={tiny_run}", "--space=multi30k"])
    wide = yaml.safe_load(arch_file.read_text())
    wide["encoder_embed_dim"] = 999
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump(wide))
    with pytest.raises(SpaceError, match="encoder_embed_dim"):
        train_main([*base, f"--arch={outside}", f"--space={tiny_space_file}"])
    assert not (tmp_path / "run").exists()


def test_evaluate_scores_a_test_set_of_the_users_own(
    tmp_path: Path, tiny_run: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given the corpus split's own files, --src/--ref give the split's figures; BLEU and chrF
    come with sacrebleu's signatures; misaligned files are refused."""
    multi30k = data_dir / "multi30k"
    src, ref = multi30k / "val.en.gz", multi30k / "val.de.gz"
    common = [f"--model={tiny_run}", f"--data-dir={data_dir}", "--limit=12", "--beam=1"]
    figures = {}
    for name, extra in (("split", ["--split=val"]), ("files", [f"--src={src}", f"--ref={ref}"])):
        out = tmp_path / f"{name}.json"
        assert evaluate_main([*common, *extra, f"--out={out}"]) == 0
        figures[name] = json.loads(out.read_text())["results"][0]
    for key in ("sentences", "bleu", "chrf"):
        assert figures["files"][key] == pytest.approx(figures["split"][key])
    assert figures["files"]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "nc:6" in figures["files"]["chrf_signature"]
    assert "BLEU nrefs:1" in capsys.readouterr().out
    short = tmp_path / "short.de"
    short.write_text("ein Hund\n")
    with pytest.raises(AutomoeError, match=r"has 1014 lines but --ref .* has 1;"):
        evaluate_main([*common, f"--src={src}", f"--ref={short}"])
    with pytest.raises(AutomoeError, match="--src and --ref together"):
        evaluate_main([*common, f"--src={src}"])
