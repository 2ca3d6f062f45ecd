"""The model commands (evaluate, translate, extract, export) refuse what they cannot do right.

A random-weight SuperNet with task routing over en-de and en-fr is enough: none of these checks
needs a trained model, and random task routers send the two pairs to different experts, so a
pair routed as the other one gives a different loss.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from automoe.data.run_data import DataSettings, RunData
from automoe.errors import AutomoeError, run_cli
from automoe.evaluate.__main__ import main as evaluate_main
from automoe.export import main as export_main
from automoe.extract import main as extract_main
from automoe.runs import load_model_file, save_with_tokenizer, task_ids_for
from automoe.space import ArchConfig, ArchError, SearchSpace
from automoe.supernet.model import ModelConfig, Transformer, extract, load_checkpoint_file
from automoe.supernet.supernet import SuperNet
from automoe.translate import main as translate_main

PAIRS = ("en-de", "en-fr")
# cross_layers [1] under a 2-layer encoder: cross_layers 2 fits the SuperNet but not the space.
SPACE = {
    "name": "tiny-commands",
    "qkv_dim": 32,
    "max_experts": 2,
    "fractional_experts": True,
    "identity_experts": False,
    "encoder": {
        "embed_dim": [24, 32],
        "layers": [2],
        "ffn_dim": [32, 64],
        "heads": [2, 4],
        "experts": [2],
        "top_k": [1],
        "routing": ["task"],
    },
    "decoder": {
        "embed_dim": [24, 32],
        "layers": [2],
        "ffn_dim": [32, 64],
        "self_heads": [2, 4],
        "cross_heads": [2, 4],
        "cross_layers": [1],
        "experts": [2],
        "top_k": [1],
        "routing": ["task"],
    },
}


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    tokenizer = RunData(DataSettings(pairs=("en-de",), vocab_size=400), data_dir).tokenizer
    torch.manual_seed(0)
    net = SuperNet.build(
        SearchSpace.from_dict(SPACE),
        tokenizer.vocab_size,
        num_tasks=2,
        task_names=PAIRS,
        dropout=0.0,
    )
    path = tmp_path_factory.mktemp("commands") / "supernet.pt"
    save_with_tokenizer(net, tokenizer, path)
    return path


@pytest.fixture(scope="module")
def extracted_file(supernet_file: Path) -> Path:
    path = supernet_file.with_name("extracted.pt")
    assert (
        extract_main(["--model", str(supernet_file), "--arch", "largest", "--out", str(path)]) == 0
    )
    return path


def one_line_error(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str] | None], int], *args: str
) -> str:
    """Run a command as its `__main__` does; it must fail with exit 2 and one line."""
    assert run_cli(main, list(args)) == 2, args
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------- task ids


def test_task_ids_follow_the_models_own_task_names(supernet_file: Path) -> None:
    net, _ = load_model_file(supernet_file)
    assert task_ids_for(net, ["en-fr"]) == [1]
    assert task_ids_for(net, ["en-fr", "en-de"]) == [1, 0]
    with pytest.raises(AutomoeError, match=r"'en-cs'.*\['en-de', 'en-fr'\]"):
        task_ids_for(net, ["en-de", "en-cs"])
    nameless = Transformer(ModelConfig(40, 32, net.space.largest(), num_tasks=2))
    assert task_ids_for(nameless, ["en-fr", "en-de"]) == [0, 1]


def test_evaluate_routes_each_pair_by_the_models_task_id(
    supernet_file: Path, tmp_path: Path, data_dir: Path
) -> None:
    common = ["--model", str(supernet_file), "--split", "val", "--limit", "20", "--no-bleu"]
    common += ["--data-dir", str(data_dir)]
    both, alone = tmp_path / "both.json", tmp_path / "alone.json"
    assert evaluate_main([*common, "--pairs", "en-de,en-fr", "--out", str(both)]) == 0
    assert evaluate_main([*common, "--pairs", "en-fr", "--out", str(alone)]) == 0
    second = json.loads(both.read_text())["results"][1]
    only = json.loads(alone.read_text())["results"][0]
    assert second["pair"] == only["pair"] == "en-fr"
    assert second["loss"] == pytest.approx(only["loss"], abs=1e-6)


def test_evaluate_and_translate_refuse_a_pair_the_model_was_not_trained_on(
    supernet_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(supernet_file)
    err = one_line_error(capsys, evaluate_main, "--model", model, "--pairs", "en-fr,en-cs")
    assert "'en-cs'" in err and "['en-de', 'en-fr']" in err
    err = one_line_error(capsys, translate_main, "--model", model, "--pair", "en-cs", "A dog.")
    assert "'en-cs'" in err and "['en-de', 'en-fr']" in err
    err = one_line_error(capsys, translate_main, "--model", model, "--task-id", "2", "A dog.")
    assert "--task-id 2" in err


# ----------------------------------------------------------------- architectures


def _variant(arch: ArchConfig, **fields: object) -> ArchConfig:
    return ArchConfig.from_dict({**arch.to_dict(), **fields})


def _outside_space(largest: ArchConfig) -> dict[str, tuple[ArchConfig, str]]:
    """Architectures inside the SuperNet's shape but outside its space, with the field the
    refusal must name."""
    return {
        "ffn width": (
            _variant(largest, encoder_ffn_dims=[[48, 64], [64, 64]]),
            "encoder_ffn_dims[0][0] = 48",
        ),
        "embed": (_variant(largest, decoder_embed_dim=28), "decoder_embed_dim = 28"),
        "8 heads": (_variant(largest, encoder_heads=[8, 4]), "encoder_heads[0] = 8"),
        "1 head": (_variant(largest, decoder_self_heads=[4, 1]), "decoder_self_heads[1] = 1"),
        "3 heads": (_variant(largest, decoder_cross_heads=[3, 4]), "decoder_cross_heads[0] = 3"),
        "cross layers": (_variant(largest, decoder_cross_layers=[1, 2]), "cross_layers[1] = 2"),
    }


COMMANDS = {
    "translate": (translate_main, ["--pair", "en-fr", "A dog runs."]),
    "evaluate": (evaluate_main, ["--pairs", "en-fr"]),
    "extract": (extract_main, ["--out", "never-written.pt"]),
    "export": (export_main, ["--task", "en-fr", "--out", "never-written.pt"]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_arch_outside_the_supernets_space(
    command: str,
    supernet_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    main, extra = COMMANDS[command]
    net, _ = load_model_file(supernet_file)
    for name, (arch, field) in _outside_space(net.space.largest()).items():
        assert arch.fits_in(net.config.shape) is None, name
        arch_file = tmp_path / f"{name}.yaml"
        arch.save(arch_file)
        err = one_line_error(
            capsys, main, "--model", str(supernet_file), "--arch", str(arch_file), *extra
        )
        assert field in err and "space" in err, (name, err)
    assert list(tmp_path.glob("*.pt")) == []


@pytest.mark.parametrize("command", ["translate", "evaluate", "export"])
def test_an_extracted_model_accepts_its_own_arch_only(
    command: str, extracted_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main, extra = COMMANDS[command]
    model, _ = load_model_file(extracted_file)
    own = tmp_path / "own.yaml"
    model.default_arch.save(own)
    for name, (arch, _) in _outside_space(model.default_arch).items():
        arch_file = tmp_path / f"{name}.yaml"
        arch.save(arch_file)
        err = one_line_error(
            capsys, main, "--model", str(extracted_file), "--arch", str(arch_file), *extra
        )
        assert "its own architecture" in err, (name, err)
    if command == "translate":
        assert main(["--model", str(extracted_file), "--arch", str(own), *extra]) == 0


def test_heads_that_do_not_divide_the_qkv_width_are_refused_by_the_model(
    extracted_file: Path,
) -> None:
    model, _ = load_model_file(extracted_file)
    arch = _variant(model.default_arch, encoder_heads=[3, 4])
    with pytest.raises(ArchError, match=r"encoder_heads\[0\] = 3 .*qkv_dim 32"):
        model.check_arch(arch)
    with pytest.raises(ArchError, match="qkv_dim"):
        extract(model, arch)


# ----------------------------------------------------------------- translate inputs


def test_translate_refuses_a_source_longer_than_the_model_reads(
    supernet_file: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = str(supernet_file)
    limit = load_model_file(supernet_file)[0].config.max_positions
    source = tmp_path / "long.txt"
    source.write_text("A dog runs.\n" + "dog " * limit + "\n")
    err = one_line_error(capsys, translate_main, "--model", model, "--input", str(source))
    assert "line 2" in err and f"at most {limit}" in err and "split" in err
    err = one_line_error(capsys, translate_main, "--model", model, "--max-len", "1000", "A dog.")
    assert "--max-len 1000" in err and str(limit) in err
    err = one_line_error(
        capsys, translate_main, "--model", model, "--max-len", "3", "A dog runs in the park."
    )
    assert "line 1" in err and "--max-len 3" in err


def test_translate_keeps_blank_lines_blank(
    supernet_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(supernet_file), "--beam", "1"]
    source = tmp_path / "src.txt"
    source.write_text("A dog runs.\n\n   \nA cat sleeps.\n")
    assert translate_main([*model, "--input", str(source)]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert translate_main([*model, "A dog runs.", "A cat sleeps."]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert lines == [first, "", "", last, ""]
    assert first and last


# ----------------------------------------------------------------- number options


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("evaluate", "--limit", "-3"),
        ("evaluate", "--beam", "0"),
        ("evaluate", "--lenpen", "-1"),
        ("evaluate", "--threads", "0"),
        ("translate", "--beam", "0"),
        ("translate", "--lenpen", "nan"),
        ("translate", "--max-len", "0"),
        ("translate", "--task-id", "-1"),
        ("translate", "--threads", "-2"),
    ],
)
def test_impossible_numbers_are_refused_when_parsed(
    command: str, option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = COMMANDS[command][0]
    sentence = ["A dog."] if command == "translate" else []
    with pytest.raises(SystemExit) as stop:
        main(["--model", str(tmp_path / "missing.pt"), f"{option}={value}", *sentence])
    assert stop.value.code == 2
    assert f"argument {option}: {value} must be" in capsys.readouterr().err


# ----------------------------------------------------------------- files from elsewhere


class _Payload:
    """Unpickling this creates `marker`: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_holding_code_is_refused_unrun(
    supernet_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    data = torch.load(supernet_file, weights_only=True)
    torch.save({**data, "note": _Payload(marker)}, evil)
    with pytest.raises(AutomoeError, match=r"something other than weights.*refused"):
        load_checkpoint_file(evil)
    err = one_line_error(capsys, evaluate_main, "--model", str(evil))
    assert "something other than weights" in err and "refused" in err
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


# ----------------------------------------------------------------- atomic outputs


def test_evaluate_out_is_replaced_whole_or_not_at_all(
    supernet_file: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scores.json"
    out.write_text('{"previous": true}')
    real = Path.write_text

    def half_then_full_disk(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    args = ["--model", str(supernet_file), "--pairs", "en-de", "--split", "val"]
    args += ["--limit", "5", "--no-bleu", "--data-dir", str(data_dir), "--out", str(out)]
    with pytest.raises(OSError, match="No space"):
        evaluate_main(args)
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"previous": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_extract_out_is_replaced_whole_or_not_at_all(
    supernet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "small.pt"
    out.write_bytes(b"previous model")

    def half_then_full_disk(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        extract_main(["--model", str(supernet_file), "--arch", "smallest", "--out", str(out)])
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.pt"]
