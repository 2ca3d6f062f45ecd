"""benchmarks/bench_task_moe.py: every stage at toy size and reuse on a second run; the models
fit the space and deploy as the comparison needs; exports follow task routing; the targets'
verdicts; the routing search's reading of the paper's finding; peak memory of a process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_task_moe
from common import cpu_model
from staged.stages import ALL, Scheduler, StageTimes
from task_moe import archs, report, results, timing
from task_moe.plan import ROWS, SEARCHED, SEED_ORDER, SPACE, Inputs, Plan
from task_moe.settings import QUICK, Layout

from automoe.data import Example, collate
from automoe.errors import run_cli
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.decode import translate_ids
from automoe.supernet.model import ModelConfig, Transformer

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "task_moe"


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_quick_run_does_every_stage_and_a_second_run_reuses_them(
    tmp_path: Path, routed_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "work"
    argv = [
        "--quick",
        f"--space={routed_space_file}",
        f"--work={work}",
        f"--data-dir={data_dir}",
        "--final-steps=4",
        "--jobs=1",
        "--timing-threads=1",
    ]
    assert bench_task_moe.main(argv) == 0
    payload = json.loads((work / "task_moe.json").read_text())
    md = (work / "task_moe.md").read_text()
    assert payload["pending"] == [] and payload["failed"] == {}
    rows = payload["collected"]["rows"]
    for row in ROWS:
        for pair in QUICK.pairs:
            assert rows[row]["pairs"][pair]["bleu"]["values"].__len__() == 2  # both seeds
        assert rows[row]["deployment"] is not None
        for size in QUICK.batch_sizes:
            speed = payload["collected"]["throughput"]["models"][row]["batch"][str(size)]
            assert speed["sentences_per_s"] > 0
        assert payload["collected"]["memory"]["models"][row]["peak_rss_mib"] > 50
    task, dense = rows["task"]["deployment"], rows["dense"]["deployment"]
    assert task["exported"] and not dense["exported"]
    for pair in QUICK.pairs:  # one expert per layer: the dense model's size
        assert task["pairs"][pair]["params"] == dense["pairs"][pair]["params"]
    assert task["total_params"] > dense["total_params"]
    search = payload["collected"]["search"]
    assert search["front"] and search["winner"] is not None
    assert (work / "task_moe" / "routing_front.png").is_file()
    assert (work / "task_moe" / "routing_search" / "best.yaml").is_file()
    assert all(t["met"] is not None for t in payload["targets"])
    assert "QUICK RUN" in md and "## The routing search" in md and "pending" not in md
    assert f"(timed on {cpu_model()}, 1 thread(s), " in md  # the report may be written elsewhere

    before = _mtimes(work / "train")
    capsys.readouterr()
    assert bench_task_moe.main(argv) == 0
    again = json.loads((work / "task_moe.json").read_text())
    assert again["ran"] == [] and again["pending"] == []
    assert _mtimes(work / "train") == before
    assert "ran 0 stage(s)" in capsys.readouterr().out
    recorded = work / "task_moe" / "ledger"
    assert (recorded / "train" / "dense-s1" / "metrics.jsonl").is_file()
    assert not any(p.suffix == ".pt" for p in recorded.rglob("*"))
    assert not (recorded / "task_moe").exists() and not (recorded / "task_moe.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds=1"], "give at least 2 distinct seed(s)"),
        (["--seeds=1,x"], "write comma-separated integers"),
        (["--space=TOKEN_ONLY"], "offers no task routing"),
        (["--data-dir=MISSING"], "MISSING"),
    ],
)
def test_inputs_that_cannot_work_are_refused_before_anything_is_written(
    tmp_path: Path,
    tiny_space_file: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture,
    flags: list[str],
    message: str,
) -> None:
    work = tmp_path / "work"
    flags = [
        f.replace("TOKEN_ONLY", str(tiny_space_file)).replace("MISSING", str(tmp_path / "none"))
        for f in flags
    ]
    base = [] if any(f.startswith("--data-dir") for f in flags) else [f"--data-dir={data_dir}"]
    assert run_cli(bench_task_moe.main, ["--quick", f"--work={work}", *base, *flags]) == 2
    err = capsys.readouterr().err
    assert message.replace("MISSING", str(tmp_path / "none")) in err
    assert err.count("\n") == 1 and not work.exists()


def test_every_row_fits_the_benchmark_space_and_routes_as_named() -> None:
    space = SearchSpace.load(SPACE)
    dense = archs.model_arch(space, "dense")
    assert set(dense.encoder_experts + dense.decoder_experts) == {1}
    for row, routing in archs.ROUTING.items():
        arch = archs.model_arch(space, row)
        space.validate(arch)
        if routing is None:
            continue
        assert set(arch.encoder_experts + arch.decoder_experts) == {archs.EXPERTS}
        assert set(arch.encoder_routing) == {routing[0]}
        assert set(arch.decoder_routing) == {routing[1]}
        assert arch.encoder_ffn_dims[0][0] == dense.encoder_ffn_dims[0][0]  # experts as wide


def test_committed_architecture_files_are_what_the_benchmark_writes(tmp_path: Path) -> None:
    archs.write_models(SearchSpace.load(SPACE), tmp_path)
    for row in archs.ROUTING:
        assert ArchConfig.load(tmp_path / f"{row}.yaml") == ArchConfig.load(
            COMMITTED / f"{row}.yaml"
        )


def _plan(tmp_path: Path) -> Plan:
    layout = Layout(tmp_path / "work", tmp_path / "results")
    archs.write_models(SearchSpace.load(SPACE), layout.figures)
    return Plan(QUICK, layout, Inputs(SPACE, None, 2, 1))


def test_rows_routing_a_layer_by_task_are_exported_and_scored_per_pair(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    names = {s.name: s for s in plan.stages()}
    for row in ("task", "mixed"):
        assert plan.exported(row)
        for pair in QUICK.pairs:
            export = names[f"export {row}-s1 {pair}"]
            assert f"--task={pair}" in export.command and export.deps == (f"train {row}-s1",)
            assert names[f"eval {row}-s1 {pair}"].deps == (f"export {row}-s1 {pair}",)
            shape = names[f"shape {row} {pair}"]
            assert f"--task={pair}" in shape.command and shape.deps == (f"shape {row}",)
        assert plan.shaped(row, "en-de") == plan.layout.shape_export(row, "en-de")
    for row in ("dense", "token", "sentence"):
        assert not plan.exported(row) and f"eval {row}-s1" in names
        assert plan.shaped(row, "en-de") == plan.layout.shape(row)
    # the winner is unknown until its search is done: it waits, then trains from best.yaml,
    # which the ledger brings back to a machine the search did not run on
    assert plan.arch(SEARCHED) is None and f"eval {SEARCHED}-s1" in names
    for name in (f"train {SEARCHED}-s1", f"shape {SEARCHED}"):
        assert names[name].deps == ("search routing",)
        assert names[name].inputs == (plan.layout.search / "best.yaml",)
    assert "<the dense model's latency>" in names["search routing"].shown()


def test_sizes_and_timings_come_from_untrained_models_not_from_the_trained_seeds(
    tmp_path: Path,
) -> None:
    """Trained models do not outlive their machine; an architecture's untrained model (one
    update, the trainings' data and tokenizer) has their size and decoding cost."""
    plan = _plan(tmp_path)
    names = {s.name: s for s in plan.stages()}
    for row in ROWS:
        shape = names[f"shape {row}"]
        assert "--max-steps=1" in shape.command and f"--arch={plan.arch_file(row)}" in shape.command
    for stage in ("deployment", "timing throughput", "timing memory"):
        assert names[stage].deps and not any(d.startswith("train ") for d in names[stage].deps)
    assert "shape task en-fr" in names["deployment"].deps
    assert "shape task en-fr" not in names["timing throughput"].deps  # timed on en-de only
    assert "shape task en-de" in names["timing throughput"].deps
    assert plan.timed_models()["task"] == plan.layout.shape_export("task", "en-de")
    supernet = names["supernet"]
    assert supernet.slots == ALL and supernet.threads == 2 and "--threads=2" in supernet.command


def test_forced_lengths_make_an_untrained_model_decode_the_references_token_count() -> None:
    torch.manual_seed(0)
    dense = ArchConfig.load(COMMITTED / "dense.yaml")
    net = Transformer(ModelConfig(vocab_size=40, qkv_dim=256, shape=dense, max_positions=32))
    g = torch.Generator().manual_seed(1)
    examples = []
    for _ in range(6):
        n, m = (int(x) for x in torch.randint(2, 9, (2,), generator=g))
        examples.append(Example(tuple(range(4, 4 + n)), tuple(range(5, 5 + m)), 0))
    batches = [collate(examples[:3]), collate(examples[3:])]
    decode = timing.forced_lengths(batches, beam=3, positions=32)
    targets = sum(len(e.tgt) for e in examples)
    assert decode.max_len_a == pytest.approx(targets / sum(len(e.src) for e in examples))
    for batch in batches:
        out = translate_ids(net.eval(), batch.src_tokens, batch.src_padding_mask, None, decode)
        sources = (~batch.src_padding_mask).sum(1).tolist()
        assert [len(o) for o in out] == [int(decode.max_len_a * n) for n in sources]


def test_a_supernet_trained_on_another_machine_trains_again_for_its_search(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    plan.layout.ledger.mkdir(parents=True)
    (plan.layout.ledger / "done.json").write_text('["supernet", "latency dense"]')
    plan.layout.dense_latency.parent.mkdir(parents=True)
    plan.layout.dense_latency.write_text(json.dumps({"latency_ms": 12.0}))  # restored record
    names = {s.name: s for s in plan.stages()}
    assert not names["supernet"].done()  # its record alone no longer counts
    assert names["latency dense"].done()  # its record is all the search reads of it
    scheduler = Scheduler(2, tmp_path / "logs", StageTimes(tmp_path / "times.json"))
    scheduler.selected = lambda stage: stage.name == "search routing"
    outcome = scheduler.run(plan.stages)
    assert outcome.done == [] and outcome.failed == {}
    assert outcome.waiting["search routing"] == "after supernet"


def test_scoring_is_preferred_as_soon_as_a_training_ends_and_target_rows_reseed_first(
    tmp_path: Path,
) -> None:
    names = [s.name for s in _plan(tmp_path).stages()]
    trainings = [n for n in names if n.startswith("train ")]
    hand = [row for row in ROWS if row != SEARCHED]
    assert sorted(SEED_ORDER) == sorted(ROWS) and SEED_ORDER[:3] == ("dense", "token", "task")
    assert trainings == [
        *(f"train {row}-s1" for row in hand),
        f"train {SEARCHED}-s1",
        *(f"train {row}-s2" for row in SEED_ORDER),
    ]
    scoring = [i for i, n in enumerate(names) if n.startswith(("eval ", "export "))]
    assert max(scoring) < names.index(trainings[0])  # each waits only on its own training
    assert names.index("supernet") < names.index(f"train {SEARCHED}-s1")
    assert names.index("timing throughput") < names.index("train dense-s2")


def test_targets_say_met_missed_by_how_much_or_pending(tmp_path: Path) -> None:
    plan = _plan(tmp_path)

    def stats(*values: float) -> dict:
        return {
            "mean": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "spread": max(values) - min(values),
            "values": list(values),
        }

    def row(mean: tuple[float, float], params: int, speeds: dict[int, tuple[float, float]]):
        return {
            "pairs": {p: {"bleu": stats(*mean)} for p in QUICK.pairs},
            "mean_bleu": stats(*mean),
            "deployment": {"pairs": {p: {"params": params} for p in QUICK.pairs}},
        }, {str(b): {"vs_dense": d, "vs_token": t} for b, (d, t) in speeds.items()}

    speeds = {1: (1.0, 1.3), 4: (0.9, 1.1)}
    collected: dict = {"rows": {}, "throughput": {"models": {}}}
    for name, mean, params in (
        ("dense", (26.0, 26.4), 100),
        ("token", (28.0, 28.2), 300),
        ("task", (27.8, 28.0), 100),
    ):
        collected["rows"][name], batch = row(mean, params, speeds)
        collected["throughput"]["models"][name] = {"batch": batch}
    found = {t["text"].split(":")[0]: t for t in report.targets(plan, collected)}
    assert found["budget"]["met"]
    assert found["task-MoE mean BLEU within 0.5 of token-MoE's"]["met"]
    assert "-0.20" in found["task-MoE mean BLEU within 0.5 of token-MoE's"]["text"]
    beat = found["task-MoE beats dense by more than the seed spread"]
    assert beat["met"] and "+1.70 BLEU against a spread of 0.40" in beat["text"]
    assert found["task-MoE deploys at the dense model's size"]["met"]
    assert found["task-MoE throughput >= 0.95x dense at batch 1"]["met"]
    slow = found["task-MoE throughput >= 0.95x dense at batch 4"]
    assert slow["met"] is False and "0.90x" in slow["text"]
    assert found["task-MoE throughput >= 1.2x token-MoE at batch 1"]["met"]
    assert report.targets_md([slow]).endswith("(**MISSED** by 0.05x)")
    assert report.targets_md([found["budget"]]).endswith("(met)")
    collected["throughput"]["models"]["task"]["batch"]["1"]["vs_token"] = 1.1
    behind = report.targets(plan, collected)
    lag = next(t for t in behind if t["text"].startswith("task-MoE throughput >= 1.2x"))
    line = report.targets_md([lag])
    assert "(**MISSED** by 0.10x). Why: token-MoE itself runs at 1.00x at 1, 0.90x at 4" in line
    collected["rows"]["task"]["mean_bleu"] = stats(28.5)  # one seed of two scored
    early = {t["text"].split(":")[0]: t for t in report.targets(plan, collected)}
    beat = early["task-MoE beats dense by more than the seed spread"]
    assert beat["met"] is None and "+2.30 BLEU so far (1 of 2 seeds scored)" in beat["text"]
    close = early["task-MoE mean BLEU within 0.5 of token-MoE's"]
    assert close["met"] is None and "+0.40 so far (1 of 2 seeds scored)" in close["text"]
    pending = report.targets(plan, {"rows": {r: _empty() for r in ROWS}, "throughput": None})
    assert all(t["met"] is None for t in pending)


def _empty() -> dict:
    return {
        "pairs": {p: {"bleu": None} for p in QUICK.pairs},
        "mean_bleu": None,
        "deployment": None,
    }


def test_the_paper_finding_counts_only_moe_layers() -> None:
    arch = ArchConfig.load(COMMITTED / "mixed.yaml")
    routing = results.layer_routing(arch)
    assert routing == {"encoder": ["token"] * 3, "decoder": ["task"] * 3}
    front = [
        {"routing": routing},
        {"routing": {"encoder": ["dense", "token", "sentence"], "decoder": ["task", "dense"]}},
    ]
    finding = results.paper_finding(front)
    assert finding["encoder_token_share"] == pytest.approx(4 / 5)
    assert finding["decoder_task_share"] == 1.0
    assert (
        results.paper_finding([{"routing": {"encoder": ["dense"], "decoder": ["dense"]}}])[
            "decoder_task_share"
        ]
        is None
    )


def test_peak_memory_is_the_process_own_and_a_failure_says_why(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    floor = timing._peak_rss_mib(out, "automoe.translate", None)
    assert 30 < floor < 2000
    with pytest.raises(RuntimeError, match=r"automoe\.translate failed"):
        timing._peak_rss_mib(out, "automoe.translate", ["--model=/nonexistent"])
