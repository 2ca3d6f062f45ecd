"""benchmarks/bench_multi30k.py: every stage at toy size, reuse on a second run, the
scheduler's order, exclusivity and time limit, the baselines and the targets' verdicts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_multi30k  # noqa: E402
from multi30k import (  # noqa: E402
    archs,
    model_stages,
    placement,
    report,
    results,
    reused,
    search_stages,
)
from multi30k.plan import Inputs, Plan  # noqa: E402
from multi30k.rows import ROWS, SEARCHED, SEED_ORDER  # noqa: E402
from multi30k.settings import FULL, QUICK, Layout  # noqa: E402
from staged.stages import StageTimes  # noqa: E402

from automoe.errors import run_cli  # noqa: E402
from automoe.space import ArchConfig, SearchSpace  # noqa: E402


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_quick_run_does_every_stage_and_a_second_run_reuses_them(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    work, out = tmp_path / "work", tmp_path / "results"
    argv = [
        "--quick",
        f"--space={tiny_space_file}",
        f"--work={work}",
        f"--results={out}",
        f"--data-dir={data_dir}",
        "--jobs=1",
        "--latency-threads=1",
    ]
    assert bench_multi30k.main(argv) == 0
    report = json.loads((out / "multi30k.json").read_text())
    md = (out / "multi30k.md").read_text()
    assert report["pending"] == [] and report["failed"] == {}
    assert {s["name"] for s in report["stages"]} == set(report["ran"])
    for row in ROWS:
        assert row.label in md
        assert report["rows"][row.key]["bleu"] is not None
        assert report["rows"][row.key]["latency"]["median"] > 0
        assert report["rows"][row.key]["throughput"]["sentences_per_s"] > 0
    assert report["rows"]["automoe-half"]["finetuned"] is not None
    for key in ("dense", "automoe-half"):  # what the searches bounded, beside what was timed
        assert report["rows"][key]["predicted_latency_ms"] > 0
    assert report["smallest"]["predicted_latency_ms"] > 0
    assert report["largest"]["bleu"] is not None
    assert "## Targets" in md and "PENDING" not in md and "pending" not in md.split("## Pending")[0]
    assert len(report["targets"]) == 8 and all(t["met"] is not None for t in report["targets"])
    assert report["estimator"]["complete"] == len(report["estimator"]["points"]) >= 3
    for figure in report["figures"].values():
        assert Path(figure).is_file()
    space = SearchSpace.load(tiny_space_file)
    for name in ("dense", "switch", "automoe-half"):
        space.validate(ArchConfig.load(out / "multi30k" / f"{name}.yaml"))
    assert "date (UTC)" in md and "python -m automoe.train" in md

    before = _mtimes(work)
    capsys.readouterr()
    assert bench_multi30k.main(argv) == 0
    again = json.loads((out / "multi30k.json").read_text())
    assert again["ran"] == [] and again["pending"] == []
    assert _mtimes(work) == before  # nothing rerun, nothing rewritten
    assert "ran 0 stage(s)" in capsys.readouterr().out

    shutil.rmtree(work)  # a new machine: only the committed results and their ledger
    assert bench_multi30k.main(argv) == 0
    moved = json.loads((out / "multi30k.json").read_text())
    assert moved["ran"] == [] and moved["pending"] == [] and moved["failed"] == {}
    for key in ("rows", "largest", "estimator", "targets"):
        assert moved[key] == report[key]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--supernet=MISSING"], "no SuperNet run there"),
        (["--supernet=TINY"], "was trained on another space than --space multi30k"),
        (["--predictor=MISSING"], "--predictor MISSING: no such file"),
        (["--seeds=1,1"], "give at least 1 distinct seed(s)"),
    ],
)
def test_inputs_that_cannot_work_are_refused_before_anything_is_written(
    tmp_path: Path,
    tiny_run: Path,
    capsys: pytest.CaptureFixture,
    flags: list[str],
    message: str,
) -> None:
    work = tmp_path / "work"
    paths = {"MISSING": str(tmp_path / "missing"), "TINY": str(tiny_run)}
    for old, new in paths.items():
        flags = [f.replace(old, new) for f in flags]
        message = message.replace(old, new)
    assert run_cli(bench_multi30k.main, ["--quick", f"--work={work}", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not work.exists()


def test_baselines_fit_the_multi30k_space() -> None:
    space = SearchSpace.load("multi30k")
    dense, switch = archs.dense_arch(space), archs.switch_arch(space)
    space.validate(dense)
    space.validate(switch)
    assert dense.encoder_ffn_dims == ((1024,),) * 4 and dense.decoder_ffn_dims == ((1024,),) * 4
    assert switch.encoder_ffn_dims == ((1024,), (1024,) * 4) * 2
    assert switch.decoder_ffn_dims == switch.encoder_ffn_dims
    assert set(switch.encoder_top_k + switch.decoder_top_k) == {1}
    assert dense.encoder_embed_dim == dense.decoder_embed_dim == 256
    hat = SearchSpace.from_dict(archs.dense_space(space))
    assert hat.to_dict()["encoder"]["experts"] == hat.to_dict()["decoder"]["experts"] == [1]
    hat.validate(dense)


def test_switch_takes_as_many_experts_as_a_small_space_allows(tiny_space_file: Path) -> None:
    space = SearchSpace.load(tiny_space_file)
    switch = archs.switch_arch(space)
    space.validate(switch)
    assert switch.encoder_experts == (1, 2)


def test_front_points_spread_over_latency_and_skip_rows(tmp_path: Path) -> None:
    space = SearchSpace.load("multi30k")
    import random

    rng = random.Random(0)
    rows = [
        {"arch_key": a.key(), "arch": a.to_dict(), "latency_ms": 10.0 * i, "loss": 5.0 - i}
        for i, a in enumerate(space.sample(rng) for _ in range(6))
    ]
    search = tmp_path / "search"
    search.mkdir()
    (search / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (search / "pareto.json").write_text(json.dumps({"latency_ms": [r["arch_key"] for r in rows]}))
    archs.write_front(search, {rows[5]["arch_key"]}, 3, tmp_path / "est", tmp_path / "front.json")
    points = json.loads((tmp_path / "front.json").read_text())["points"]
    assert [p["arch_key"] for p in points] == [rows[i]["arch_key"] for i in (0, 2, 4)]
    assert ArchConfig.load(points[1]["file"]).key() == rows[2]["arch_key"]
    assert yaml.safe_load(Path(points[0]["file"]).read_text())["encoder_embed_dim"] > 0


@given(
    st.lists(st.floats(1.0, 500.0), min_size=1, max_size=30, unique=True),
    st.integers(0, 8),
)
def test_front_points_are_distinct_and_keep_both_ends(latencies: list[float], points: int) -> None:
    front = [{"latency_ms": v} for v in sorted(latencies)]
    chosen = archs.spread_over_latency(front, points)
    assert chosen == sorted(set(chosen)) and len(chosen) == min(points, len(front))
    if points >= 2:
        assert chosen[0] == 0 and chosen[-1] == len(front) - 1


def test_front_points_spread_by_latency_not_by_rank() -> None:
    """A front crowded near the bound: rank would pick three near-twins at 117-118 ms."""
    values = [67.5, 68.4, 77.5, 79.6, 97.6, 108.4, 110.8, 117.3, 117.6, 117.8, 118.4, 118.5]
    chosen = archs.spread_over_latency([{"latency_ms": v} for v in values], 4)
    assert [values[i] for i in chosen] == [67.5, 79.6, 97.6, 118.5]


NO_SCORES: dict = {"points": []}


def _row(label: str, bleus: list[float], latency: float = 0.4, flops: float = 1.0) -> dict:
    stats = {"mean": sum(bleus) / len(bleus), "spread": max(bleus) - min(bleus), "values": bleus}
    return {
        "label": label,
        "arch_key": label,
        "bleu": stats,
        "latency": {"vs_dense": latency},
        "costs": {"flops": flops},
    }


def test_targets_say_met_or_missed_by_how_much() -> None:
    rows = {
        "dense": _row("Dense", [30.0, 30.2], 1.0, 3.0),
        "automoe-half": _row("AutoMoE", [29.6, 29.8], 0.6, 0.9),
        "random-half": _row("Random", [29.0, 29.6]),
        "hat-half": _row("HAT", [29.4, 29.5]),
    }
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": {"mean": 28.0}}, 2, NO_SCORES)}
    assert checks["AutoMoE@1/2 BLEU below dense"]["met"]  # 0.4 behind: within 0.5
    latency = checks["AutoMoE@1/2 latency / dense"]
    assert not latency["met"] and latency["missed_by"] == pytest.approx(0.1)
    assert checks["AutoMoE@1/2 FLOPs / dense"]["met"]  # 0.3 <= 1/3
    random = checks["AutoMoE@1/2 BLEU above Random"]  # +0.4 against a spread of 0.6
    assert random["met"] is False and random["missed_by"] == pytest.approx(0.2)
    assert checks["AutoMoE@1/2 BLEU above HAT"]["met"]  # +0.25 against a spread of 0.2
    assert checks["SuperNet largest BLEU"]["missed_by"] == pytest.approx(2.0)
    pending = results.targets(
        {**rows, "dense": {**rows["dense"], "bleu": None}}, {"bleu": None}, 2, NO_SCORES
    )
    assert pending[0]["met"] is None and "pending" in pending[0]["text"]


def test_a_difference_between_rows_waits_for_two_seeds_and_a_gap_on_one_is_provisional() -> None:
    rows = {
        "dense": _row("Dense", [30.0], 1.0, 3.0),
        "automoe-half": _row("AutoMoE", [28.4, 29.0], 0.6, 0.9),
        "random-half": _row("Random", [29.0]),
        "hat-half": _row("HAT", [28.0, 28.1]),
    }
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, NO_SCORES)}
    below = checks["AutoMoE@1/2 BLEU below dense"]
    assert below["met"] is False and below["text"].endswith("(provisional: 1 of 2 seeds)")
    random = checks["AutoMoE@1/2 BLEU above Random"]  # -0.3 on one seed: no verdict
    assert random["met"] is None and "pending until 2 seeds each" in random["text"]
    assert checks["AutoMoE@1/2 BLEU above HAT"]["met"]  # +0.65 against a spread of 0.6
    one = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 1, NO_SCORES)}  # --seeds 1
    assert one["AutoMoE@1/2 BLEU above Random"]["met"] is False
    assert "provisional" not in one["AutoMoE@1/2 BLEU below dense"]["text"]


def test_a_missed_comparison_says_if_it_is_seed_noise_and_what_the_supernet_preferred() -> None:
    rows = {
        "dense": _row("Dense", [30.0, 30.2], 1.0, 3.0),
        "automoe-half": _row("AutoMoE", [29.0, 29.4], 0.6, 0.9),
        "random-half": _row("Random", [29.0, 29.6]),  # AutoMoE -0.1: inside the spread
        "hat-half": _row("HAT", [30.5, 30.6]),  # AutoMoE -1.35: a real deficit
    }
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, NO_SCORES)}
    random, hat = checks["AutoMoE@1/2 BLEU above Random"], checks["AutoMoE@1/2 BLEU above HAT"]
    assert random["why"].startswith("the difference lies inside the seed spread")
    assert hat["why"].startswith("it trails HAT by more than the seed spread")
    assert "pending (inherited scores)" in random["text"]
    losses = {"automoe-half": 2.10, "random-half": 2.20, "hat-half": 2.05}
    points = [{"arch_key": rows[k]["label"], "inherited_val_loss": v} for k, v in losses.items()]
    scores = {"points": points}
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, scores)}
    assert (
        "scores the AutoMoE winner better (inherited validation loss 2.100 vs 2.200)"
        in (checks["AutoMoE@1/2 BLEU above Random"]["why"])
    )
    assert "evolution found nothing better" in checks["AutoMoE@1/2 BLEU above HAT"]["why"]
    assert "why" not in checks["AutoMoE@1/2 BLEU below dense"]
    twins = {**rows, "random-half": {**rows["random-half"], "arch_key": "AutoMoE"}}
    checks = {t["target"]: t for t in results.targets(twins, {"bleu": None}, 2, scores)}
    assert checks["AutoMoE@1/2 BLEU above Random"]["why"].endswith("chose the same architecture")


def test_a_missed_gap_to_dense_says_what_fine_tuning_reaches() -> None:
    rows = {
        "dense": _row("Dense", [30.0, 30.2], 1.0, 3.0),
        "automoe-half": {**_row("AutoMoE", [29.0, 29.2], 0.4, 0.9), "finetuned": {"bleu": 29.8}},
        "random-half": _row("Random", [29.0, 29.6]),
        "hat-half": _row("HAT", [29.4, 29.5]),
    }
    below = results.targets(rows, {"bleu": None}, 2, NO_SCORES)[0]
    assert below["met"] is False and below["finetuned_gap"] == pytest.approx(0.3)
    assert (
        "instead (first seed only), the winner is 0.3 BLEU below dense, within the"
        in (below["text"])
    )
    rows["automoe-half"]["finetuned"] = {"bleu": 29.0}
    assert (
        "1.1 BLEU below dense, still outside it"
        in results.targets(rows, {"bleu": None}, 2, NO_SCORES)[0]["text"]
    )
    rows["automoe-half"]["finetuned"] = None  # not fine-tuned (yet): nothing said
    assert "Fine-tuned" not in results.targets(rows, {"bleu": None}, 2, NO_SCORES)[0]["text"]


def test_the_estimator_targets_wait_for_eight_architectures_and_say_why_a_gap_misses() -> None:
    rows = {
        "dense": _row("Dense", [30.0, 30.2], 1.0, 3.0),
        "automoe-half": _row("AutoMoE", [29.6, 29.8], 0.4, 0.9),
        "random-half": _row("Random", [29.0, 29.6]),
        "hat-half": _row("HAT", [29.4, 29.5]),
    }
    scores = {
        "points": [{"arch_key": f"a{i}", "inherited_val_loss": None} for i in range(10)],
        "complete": 6,
        "tau_bleu": 0.8,
        "mean_abs_gap": 7.5,
        "mean_gap": -7.5,
        "inherited_below": 6,
        "supernet_steps": 1500,
        "final_steps": 3000,
    }
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, scores)}
    tau, gap = (
        checks[f"SuperNet estimator {name}"] for name in ("Kendall tau", "mean absolute BLEU gap")
    )
    assert tau["met"] is None and gap["met"] is None
    assert tau["text"].endswith("0.8 on 6 architectures: pending until 8 have both scores")
    checks = {
        t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, {**scores, "complete": 8})
    }
    assert checks["SuperNet estimator Kendall tau"]["met"] is True
    gap = checks["SuperNet estimator mean absolute BLEU gap"]
    assert gap["met"] is False and gap["missed_by"] == pytest.approx(6.5)
    assert "below from-scratch BLEU for 6 of 8 architectures (mean -7.5)" in gap["why"]
    assert "SuperNet's 1500 updates are shared by every sub-network" in gap["why"]
    assert "why" not in checks["SuperNet estimator Kendall tau"]
    poor = {**scores, "complete": 8, "tau_bleu": 0.14, "tau_loss": 0.71}
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, poor)}
    tau = checks["SuperNet estimator Kendall tau"]
    assert tau["met"] is False and "validation loss, the score the searches compare" in tau["why"]
    assert "give tau 0.71, which meets the target" in tau["text"]


def test_a_missed_cost_target_says_what_the_search_bounded() -> None:
    def costed(row: dict, predicted_ms: float, experts: int) -> dict:
        return {**row, "predicted_latency_ms": predicted_ms, "experts": experts}

    rows = {
        "dense": costed(_row("Dense", [30.0, 30.2], 1.0, 3.0), 200.0, 1),
        "automoe-half": costed(_row("AutoMoE", [29.6, 29.8], 0.6, 1.2), 96.0, 3),
        "random-half": costed(_row("Random", [29.0, 29.6], 0.55), 100.0, 2),
        "hat-half": costed(_row("HAT", [29.4, 29.5], 0.5), 100.0, 1),
    }
    context = {
        "predictor_machine": {"cpu_model": "AMD EPYC", "threads": 1},
        "timing_machine": {"cpu_model": "Intel Xeon", "threads": 2},
        "smallest": {"flops": 0.75, "predicted_latency_ms": 50.0},
    }
    checks = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, NO_SCORES, context)}
    latency = checks["AutoMoE@1/2 latency / dense"]["why"]
    assert "puts the winner at 0.480x dense, inside the bound; timed here it runs at 0.600x" in (
        latency
    )
    assert "(with experts: AutoMoE 1.25, Random 1.10; dense: HAT 1.00)" in latency
    assert "timed on AMD EPYC, 1 thread(s), the timing ran on Intel Xeon, 2 thread(s)" in latency
    flops = checks["AutoMoE@1/2 FLOPs / dense"]["why"]  # 0.4 of the FLOPs at 0.48 of the latency
    assert "FLOPs fall little faster than predicted latency" in flops
    assert "smallest architecture at 0.25x and 0.25x" in flops and "bound near 0.40x" in flops
    same = {**context, "predictor_machine": context["timing_machine"]}
    again = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, NO_SCORES, same)}
    assert "learnt its latencies on this machine" in again["AutoMoE@1/2 latency / dense"]["why"]
    unknown = {t["target"]: t for t in results.targets(rows, {"bleu": None}, 2, NO_SCORES)}
    assert "why" not in unknown["AutoMoE@1/2 FLOPs / dense"]  # no smallest architecture known
    assert "timed on an unrecorded machine" in unknown["AutoMoE@1/2 latency / dense"]["why"]
    met = {**rows, "automoe-half": {**rows["automoe-half"], "latency": {"vs_dense": 0.45}}}
    checks = {t["target"]: t for t in results.targets(met, {"bleu": None}, 2, NO_SCORES, context)}
    assert "why" not in checks["AutoMoE@1/2 latency / dense"]


def _placed(label: str, encoder: list[list[int]], decoder: list[list[int]]) -> dict:
    return {"label": label, "arch": {"encoder_ffn_dims": encoder, "decoder_ffn_dims": decoder}}


def _verdicts(encoder: list[list[int]], decoder: list[list[int]]) -> dict[str, bool | None]:
    layers = placement.Layers(encoder, decoder)
    return {check.name: check.test(layers)[1] for check in placement.CHECKS}


def test_placement_checks_read_the_papers_patterns_off_an_architecture() -> None:
    # Experts massed in the middle encoder layers, a 2-layer decoder falling off, mixed widths.
    paper_like = _verdicts(
        [[512], [512, 1024, 768], [1024, 512, 512, 768], [768, 1024]], [[512, 768, 512], [1024]]
    )
    assert all(paper_like.values()), paper_like
    # The opposite: experts at the ends, a deep decoder growing with depth, equal widths.
    opposite = _verdicts(
        [[512] * 4, [512], [512], [1024] * 4], [[512], [1024], [768, 768], [512] * 3]
    )
    assert not any(opposite.values()), opposite
    one_layer = _verdicts([[512], [512, 512], [768, 512], [512]], [[512, 768]])
    assert one_layer["decoder experts per layer fall with depth"] is None
    assert _verdicts([[512]] * 4, [[512]])["multi-expert layers mixing widths"] is None


def test_placement_report_names_what_the_random_control_shares() -> None:
    rows = {
        "hat-half": _placed("HAT", [[512]] * 4, [[512]]),
        "random-half": _placed("Random", [[512]] * 4, [[512]] * 4),
        "automoe-half": _placed(
            "AutoMoE",
            [[512], [512, 1024, 768], [1024, 512, 512, 768], [768, 1024]],
            [[512, 768, 512], [1024]],
        ),
        "automoe-third": {**_placed("Third", [], []), "arch": None},  # its search is running
    }
    text = placement.placement_md({"rows": {k: {"key": k, **v} for k, v in rows.items()}})
    header = text.splitlines()[0]
    assert "AutoMoE" in header and "Random (control)" in header and "HAT" not in header
    assert "Third" not in header
    assert "AutoMoE agrees with the paper on 7 of 7 patterns" in text
    assert "Random's winner, agrees on 0 of 6" in text  # a 4-layer decoder: nothing applies
    assert "It shares" not in text and "Only experts in the encoder;" in text
    nothing = {k: {"key": k, **v, "arch": None} for k, v in rows.items()}
    assert "pending" in placement.placement_md({"rows": nothing})


def test_compute_counts_recorded_stages_and_says_what_reused_inputs_did_not_record(
    tmp_path: Path,
) -> None:
    supernet = tmp_path / "supernet"
    supernet.mkdir()
    (supernet / "metrics.jsonl").write_text(json.dumps({"step": 9, "elapsed_s": 5400.0}) + "\n")
    inputs = Inputs("multi30k", supernet, tmp_path / "p.predictor", None, 1, latency_threads=2)
    plan = Plan(QUICK, Layout(tmp_path / "work", tmp_path / "results"), inputs)
    times = StageTimes(tmp_path / "times.json")
    times.data["dense latency"] = {"seconds": 1800.0, "threads": 2}
    times.data["train switch-s1"] = {"seconds": 3600.0, "threads": 1, "cpu": "AMD EPYC"}
    run = plan.layout.train("switch-s1")
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"train": {"max_steps": 9}}))
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 9, "elapsed_s": 3600.0, "tokens": 100}) + "\n"
    )
    plan.layout.ledger.mkdir(parents=True)
    (plan.layout.ledger / "done.json").write_text(json.dumps(["timing latency"]))
    collected = {"rows": {r.key: {"search": {"summary": None}} for r in ROWS}}
    table = {row[0]: row[1:] for row in report.compute(plan, collected, times)}
    assert table["SuperNet training"] == ["1.50", "?", "?", f"reused: {supernet}"]
    assert table["timing latency"] == ["not recorded", "?", "?", "done"]  # an earlier machine's
    assert table["timing throughput"] == ["pending", "?", "pending", ""]
    assert table["latency dataset"] == ["not recorded", "?", "?", "reused"]
    assert table["dense latency"] == ["0.50", "2", "1.00", ""]
    assert table["train dense-s1"] == ["pending", "1", "pending", ""]
    assert table["train switch-s1"] == ["1.00", "1", "1.00", "AMD EPYC"]  # each its own CPU
    assert table["total (stages done, where recorded)"][2] == "2.00"


def test_training_hours_are_per_seed_and_the_intro_names_each_seed_s_cpus() -> None:
    def trained(hours: float, cpu: str | None) -> dict:
        return {"training": {"elapsed_s": hours * 3600, "tokens": 1e6, "cpu": cpu}}

    collected = {
        "rows": {
            "dense": {"seeds": {1: trained(3.38, "AMD EPYC"), 2: trained(1.5, "Intel Xeon")}},
            "switch": {"seeds": {1: trained(4.0, None), 2: {"training": None}}},
        }
    }
    assert report._train_hours(collected["rows"]["dense"]) == "3.38 / 1.50"
    assert report._train_hours(collected["rows"]["switch"]) == "4.00"
    assert report._cpus(collected) == ("seed 1 on AMD EPYC, not recorded; seed 2 on Intel Xeon")
    assert report._cpus({"rows": {}}) == "pending"


def test_timing_runs_before_trainings_then_first_seeds_the_targets_and_the_estimators(
    tmp_path: Path,
) -> None:
    inputs = Inputs("multi30k", None, None, None, jobs=2, latency_threads=1)
    plan = Plan(FULL, Layout(tmp_path / "work", tmp_path / "results"), inputs)
    plan.layout.front.parent.mkdir(parents=True)
    points = [{"name": "front-01"}, {"name": "front-02"}]
    plan.layout.front.write_text(json.dumps({"points": points}))
    names = [s.name for s in plan.stages() if s.name.startswith(("train ", "timing "))]
    assert sorted(SEED_ORDER) == sorted(row.key for row in ROWS)
    assert SEED_ORDER[0] == "automoe-half" and SEED_ORDER[-1] == "switch"
    assert names == [
        "timing latency",
        "timing throughput",
        *(f"train {row.key}-s1" for row in ROWS),
        *(f"train {key}-s2" for key in SEED_ORDER),
        "train front-01-s1",
        "train front-02-s1",
        "train automoe-half-ft-s1",
        "train automoe-third-ft-s1",
    ]


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    inputs = Inputs("multi30k", None, None, None, jobs=2, latency_threads=1)
    return Plan(QUICK, Layout(tmp_path / "work", tmp_path / "results"), inputs)


def test_a_search_paused_by_its_time_limit_resumes_with_the_minutes_left(plan: Plan) -> None:
    row = next(r for r in SEARCHED if r.key == "automoe-half")
    stage = search_stages.search(plan, row)
    assert "--resume" not in stage.args_now(10.0) and "--time-limit=10.00" in stage.args_now(10.0)
    run = plan.layout.search(row.key)
    run.mkdir(parents=True)
    (run / "search.json").write_text("{}")
    (run / "evaluations.jsonl").write_text(json.dumps({"elapsed_s": 120.0}) + '\n{"elaps')
    args = stage.args_now(10.0)
    assert "--resume" in args and "--time-limit=12.00" in args  # its limit counts all scoring
    assert stage.args_now(None)[-1] == "--no-progress"  # no limit: none passed
    (run / "summary.json").write_text(json.dumps({"ending": {"stopped_by": "time limit"}}))
    assert not stage.done()
    (run / "summary.json").write_text(json.dumps({"ending": {"stopped_by": "evaluations"}}))
    assert stage.done()


def test_a_started_training_resumes_from_its_checkpoint(plan: Plan) -> None:
    stage = model_stages.training(plan, "dense", 2)
    assert stage.deps == ("baselines",) and "--seed=2" in stage.command
    assert "--arch=" + str(plan.arch_file("dense")) in stage.args_now(None)
    run = plan.layout.train("dense-s2")
    run.mkdir(parents=True)
    (run / "checkpoint.pt.prev").write_bytes(b"")  # even when only the previous one survives
    args = stage.args_now(5.0)
    assert args[:2] == [f"--run={run}", "--resume"] and args[-1] == "--time-limit=5.00"
    assert not any(a.startswith("--arch") for a in args)  # fixed by the run folder
    finetune = model_stages.training(plan, "automoe-half", 1, finetune=True)
    assert finetune.deps == ("search automoe-half", "supernet")
    assert f"--init-from={plan.supernet}" in finetune.command


def test_bounds_never_fall_below_the_smallest_architectures_predicted_latency(
    tmp_path: Path, tiny_space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A predictor need not be monotone: when it puts the space's smallest architecture
    above the sampled quantile, the bound rises to it, since the search refuses a bound its
    smallest architecture breaks."""
    space = SearchSpace.load(tiny_space_file)
    smallest_key = space.smallest().key()

    class Predictor:
        def predict_archs(self, arch_list: list[ArchConfig]) -> list[float]:
            return [50.0 if a.key() == smallest_key else 10.0 for a in arch_list]

    monkeypatch.setattr(archs.CostPredictor, "load", staticmethod(lambda path: Predictor()))
    dense_file = tmp_path / "dense.yaml"
    dense_file.write_text(yaml.safe_dump(space.largest().to_dict()))
    dense_json = tmp_path / "dense.json"
    dense_json.write_text(json.dumps({"latency_ms": 40.0}))
    out = tmp_path / "constraints.json"
    archs.write_constraints(
        dense_json, dense_file, tmp_path / "p", {"half": [space]}, {"half": (1, 2)}, 0.02, out
    )
    half = json.loads(out.read_text())["bounds"]["half"]
    assert half["bound_ms"] == pytest.approx(50.0 * archs.SMALLEST_MARGIN) and half["raised"]


def test_a_reused_supernet_is_kept_and_trained_again_from_its_settings_on_a_new_machine(
    tmp_path: Path,
) -> None:
    supernet, old, new = tmp_path / "supernet", tmp_path / "old", tmp_path / "new"
    layout = Layout(old / "work", old / "results")
    inputs = Inputs("multi30k", supernet, None, None, jobs=2, latency_threads=1)
    plan = Plan(FULL, layout, inputs)
    assert reused.keep(supernet, layout.work) is None
    supernet.mkdir()
    data = {"pairs": ["en-de"], "vocab_size": 8000, "max_len": 64, "max_tokens": 4096}
    data |= {"train_limit": 0, "valid_size": 500}
    settings = {"space": "s", "data": data, "train": {"max_steps": 1500}}
    (supernet / "run.json").write_text(json.dumps(settings))

    def metrics(*rows: tuple[int, float]) -> None:
        lines = [json.dumps({"step": step, "elapsed_s": s}) + "\n" for step, s in rows]
        (supernet / "metrics.jsonl").write_text("".join(lines))

    metrics((100, 310.0), (1500, 4788.0))
    (supernet / "supernet.pt").write_bytes(b"weights")
    collected = results.Collector(plan).collect()
    assert report.compute(plan, collected, StageTimes(tmp_path / "t.json"))[0][1] == "1.33"
    metrics((10, 30.0))  # started again: the finished run's time stands
    assert reused.keep(supernet, layout.work) == {"step": 1500, "elapsed_s": 4788.0}
    assert plan.stages()[1].shown() == f"reused: {supernet / 'supernet.pt'}"

    ledger = layout.work  # what the ledger holds of the work folder, on a new machine
    shutil.rmtree(supernet)
    assert reused.restore_settings(supernet, ledger)
    assert json.loads((supernet / "run.json").read_text()) == settings
    assert not reused.restore_settings(supernet, ledger)  # there already
    again = Plan(FULL, Layout(new / "work", new / "results"), inputs).stages()[1]
    assert again.name == "supernet" and not again.done()
    assert again.args_now(None) == [f"--run={supernet}", "--resume", "--threads=2", "--no-progress"]
    assert not reused.restore_settings(tmp_path / "elsewhere", ledger)  # not the one recorded

    metrics((10, 25.0), (1500, 3600.0))  # the new machine's training ended
    assert reused.keep(supernet, layout.work) == {"step": 1500, "elapsed_s": 3600.0}
    assert reused.earlier(layout.work) == [{"step": 1500, "elapsed_s": 4788.0}]
    assert reused.keep(supernet, layout.work) == {"step": 1500, "elapsed_s": 3600.0}
    assert len(reused.earlier(layout.work)) == 1  # one retraining, however often it is read
    times = StageTimes(tmp_path / "t.json")
    times.data["supernet"] = {"seconds": 3600.0, "threads": 2}
    table = {row[0]: row[1:] for row in report.compute(plan, collected, times)}
    assert table["SuperNet training (an earlier machine)"][:3] == ["1.33", "?", "?"]
    assert table["SuperNet training"][:3] == ["1.00", "2", "2.00"]
    estimator = results.Collector(plan).collect()["estimator"]
    assert estimator["trainings"] == 2
    assert "trained 2 times from the same settings" in report.estimator_md({"estimator": estimator})
