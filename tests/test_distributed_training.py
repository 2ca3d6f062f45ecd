"""Training on several processes (torchrun, gloo on CPU): the collectives of
`automoe.train.distributed.World`, equality with one process over the same global batch, a
killed rank ending the group, and an exact distributed resume.

Every multi-process case starts real torchrun groups of 2 CPU processes on a tiny space.
Run as a script under torchrun, this file is the worker of `test_world_*`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from automoe.data import Batch, Example, collate
from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace
from automoe.supernet.losses import label_smoothed_loss
from automoe.supernet.supernet import SuperNet
from automoe.train.__main__ import main as train_main
from automoe.train.distributed import World

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_distributed import steady_rates  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# Rank 0 trains 2 experts in every layer, rank 1 one: the second expert and the routers are
# used by one rank only; neither uses the second decoder layer.
WIDE = ArchConfig(32, 32, ((64, 64), (64, 64)), (4, 4), (1, 1), ((64, 64),), (4,), (4,), (2,), (1,))
NARROW = ArchConfig(24, 24, ((32,), (32,)), (2, 2), (1, 1), ((32,),), (2,), (2,), (1,), (1,))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def train_args(run: Path, space: Path, data_dir: Path, **extra: object) -> list[str]:
    """A few updates of a tiny SuperNet. `--run-dir`: torchrun takes `--run` for its own."""
    args = {
        "run-dir": run,
        "space": space,
        "data-dir": data_dir,
        "train-limit": 200,
        "valid-size": 20,
        "vocab-size": 400,
        "max-tokens": 400,
        "max-steps": 6,
        "warmup-steps": 2,
        "checkpoint-every": 2,
        "validate-every": 3,
        "log-every": 1,
        "threads": 1,
        **{key.replace("_", "-"): value for key, value in extra.items()},
    }
    return [f"--{k}={v}" for k, v in args.items()]


def torchrun(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [*TORCHRUN, *(str(a) for a in args)]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run: Path, name: str = "supernet.pt") -> dict[str, torch.Tensor]:
    return torch.load(run / name, weights_only=True)["state_dict"]


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- the World's collectives, run by torchrun on this file ----------------------------------


def _random_batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(6):
        src, tgt = torch.randint(4, 50, (2, int(torch.randint(3, 9, (), generator=g))), generator=g)
        examples.append(Example(tuple(src.tolist()), tuple(tgt.tolist()), 0))
    return collate(examples)


def _objective(net: SuperNet, rank: int) -> torch.Tensor:
    batch, arch = _random_batch(rank), (WIDE, NARROW)[rank]
    out = net.forward_batch(batch, arch)
    loss = label_smoothed_loss(out.logits, batch.target, net.config.pad_id, 0.1)
    return loss.loss / loss.tokens + 0.01 * out.balance_loss


def _grads(net: SuperNet) -> dict[str, torch.Tensor | None]:
    return {name: p.grad for name, p in net.named_parameters()}


def _seeded_supernet(space: SearchSpace) -> SuperNet:
    torch.manual_seed(0)
    return SuperNet.build(space, 50, dropout=0.0)


def _worker(space_file: str, out: str) -> None:
    """Each rank records what the collectives gave it, for the parent test to compare."""
    world = World.from_env()
    rank = world.rank
    result: dict[str, object] = {}
    with world.group(torch.device("cpu")):
        space = SearchSpace.load(space_file)
        for arch in (WIDE, NARROW):
            space.validate(arch)
        net, single = (_seeded_supernet(space) for _ in range(2))
        _objective(net, rank).backward()
        result["used_before"] = [name for name, g in _grads(net).items() if g is not None]
        world.reduce_gradients(list(net.parameters()))
        result["reduced"] = _grads(net)
        for r in range(world.size):  # one process over both ranks' batches
            _objective(single, r).backward()
        result["single"] = _grads(single)

        result["sum"] = world.sum([rank + 1.0, 10.0])
        result["any"] = [world.any(rank == 1), world.any(False)]
        result["broadcast"] = world.broadcast({"from": rank} if world.is_main else None)
        result["share"] = world.share(list(range(6)))
        world.require_same("settings", {"a": 1, "b": {"c": 2}})
        try:
            world.require_same("settings", {"a": 1, "b": {"c": rank}})
        except AutomoeError as err:
            result["mismatch"] = str(err)
        draws = []
        for step in (5, 5, 6):
            world.seed_step(1, step)
            draws.append(torch.rand(4))
        result["draws"] = draws
    torch.save(result, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def world_results(tmp_path_factory: pytest.TempPathFactory, tiny_space_file: Path) -> list[dict]:
    out = tmp_path_factory.mktemp("world")
    torchrun(Path(__file__), tiny_space_file, out)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_world_sums_gradients_that_ranks_leave_unused_as_one_process_would(
    world_results: list[dict],
) -> None:
    """Ranks that train different parts of the SuperNet must neither hang nor lose a
    gradient: a weight one rank used is summed with zeros, one nobody used keeps none."""
    first, second = world_results
    assert set(first["used_before"]) > set(second["used_before"])
    for got in (first, second):
        assert got["reduced"].keys() == got["single"].keys()
        for name, grad in got["single"].items():
            if grad is None:
                assert got["reduced"][name] is None, name
            else:
                torch.testing.assert_close(got["reduced"][name], grad, atol=1e-6, rtol=1e-5)
    unused = [name for name, grad in first["single"].items() if grad is None]
    assert unused and all(name.startswith("decoder_layers.1.") for name in unused)
    for name, grad in first["reduced"].items():
        assert (grad is None) == (second["reduced"][name] is None)
        if grad is not None:
            assert torch.equal(grad, second["reduced"][name]), name


def test_world_collectives_agree_on_every_rank(world_results: list[dict]) -> None:
    first, second = world_results
    for got in world_results:
        assert got["sum"] == [3.0, 20.0]
        assert got["any"] == [True, False]
        assert got["broadcast"] == {"from": 0}
        assert "rank 1 differs from rank 0 in b.c" in got["mismatch"]
    assert (first["share"], second["share"]) == ([0, 2, 4], [1, 3, 5])


def test_dropout_seeds_depend_on_rank_and_step_only(world_results: list[dict]) -> None:
    first, second = world_results
    for got in world_results:
        same_step, _, next_step = got["draws"]
        assert torch.equal(same_step, got["draws"][1])
        assert not torch.equal(same_step, next_step)
    assert not torch.equal(first["draws"][0], second["draws"][0])


# --- the process layout from the environment ------------------------------------------------


def test_world_from_env_reads_torchrun_and_refuses_nonsense() -> None:
    assert World.from_env({}).size == 1
    assert World.from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}).size == 1
    meet = {"MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}
    world = World.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", **meet})
    assert (world.rank, world.size, world.local_rank, world.is_main) == (3, 4, 1, False)
    for bad in (
        {"WORLD_SIZE": "two", **meet},
        {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", **meet},
        {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"},  # set by hand, not by torchrun
    ):
        with pytest.raises(AutomoeError, match="torchrun"):
            World.from_env(bad)


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert World(3, 4, 1).device_for("auto") == torch.device("cuda", 1)
    assert World(0, 1, 0).device_for("cuda:1") == torch.device("cuda", 1)
    assert World(1, 2, 1).device_for("cpu") == torch.device("cpu")
    with pytest.raises(AutomoeError, match="LOCAL_RANK"):
        World(1, 2, 1).device_for("cuda:0")
    with pytest.raises(AutomoeError, match="--nproc_per_node"):
        World(2, 3, 2).device_for("cuda")


# --- training -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_process_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_space_file: Path, data_dir: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """2 processes, 2 batches each per update, no dropout, with the progress bar on."""
    run = tmp_path_factory.mktemp("two") / "run"
    args = train_args(run, tiny_space_file, data_dir, update_freq=2, dropout=0, sampling="sandwich")
    return run, torchrun("-m", "automoe.train", *args)


def test_two_processes_train_as_one_over_the_same_global_batch(
    two_process_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
    tiny_space_file: Path,
    data_dir: Path,
) -> None:
    run, _ = two_process_run
    one = tmp_path / "one"
    args = train_args(one, tiny_space_file, data_dir, update_freq=4, dropout=0, sampling="sandwich")
    assert train_main([*args, "--no-progress"]) == 0
    two_weights, one_weights = weights(run), weights(one)
    assert two_weights.keys() == one_weights.keys()
    for name, value in one_weights.items():
        # A key bias shifts every attention score of a query alike, so softmax cancels its
        # gradient: what is left is rounding noise, which Adam scales up to a full step, and
        # summing the batches in another order changes the noise. Every other weight must agree.
        if not name.endswith("k_proj.bias"):
            torch.testing.assert_close(two_weights[name], value, atol=1e-5, rtol=0, msg=name)
    two_rows, one_rows = metric_rows(run), metric_rows(one)
    assert [r["step"] for r in two_rows] == list(range(1, 7))
    for mine, theirs in zip(two_rows, one_rows, strict=True):
        assert mine["tokens"] == theirs["tokens"]
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6)


def test_an_architecture_trains_on_two_processes_as_on_one(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """`--arch` (one fixed model, no SuperNet) takes the same distributed path."""
    arch = tmp_path / "arch.yaml"
    WIDE.save(arch)
    runs = {name: tmp_path / name for name in ("two", "one")}
    flags = {"arch": arch, "dropout": 0, "max_steps": 4}
    torchrun("-m", "automoe.train", *train_args(runs["two"], tiny_space_file, data_dir, **flags))
    args = train_args(runs["one"], tiny_space_file, data_dir, update_freq=2, **flags)
    assert train_main([*args, "--no-progress"]) == 0
    two, one = (weights(run, "model.pt") for run in runs.values())
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=0, msg=name)


def test_only_rank_zero_prints_and_writes(
    two_process_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run, done = two_process_run
    assert done.stdout.count('"valid_largest_loss"') == 1
    assert done.stderr.count(" 0/6 [") == 1  # one progress bar
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt",
        "checkpoint.pt.prev",
        "metrics.csv",
        "metrics.jsonl",
        "run.json",
        "supernet.pt",
        "tokenizer.model",
    ]


def test_resume_by_another_number_of_processes_is_refused(
    two_process_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run, _ = two_process_run
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(AutomoeError, match="trained by 2 processes and this run has 1"):
        train_main([f"--run={run}", "--resume", "--no-progress"])
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def _children(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").iterdir():
        yield from (int(c) for c in (task / "children").read_text().split())


def _rank_pid(torchrun_pid: int, rank: int) -> int:
    for child in _children(torchrun_pid):
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return child
    raise AssertionError(f"no process of rank {rank} under torchrun {torchrun_pid}")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds ranks through /proc")
def test_a_killed_rank_ends_the_group_and_resume_equals_an_uninterrupted_run(
    tmp_path: Path, tiny_space_file: Path, data_dir: Path
) -> None:
    """SIGKILL one rank mid-run (dropout on): torchrun must end the other rather than leave it
    waiting for its peer, and `--resume` on 2 processes must continue exactly."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    steps = 12
    torchrun("-m", "automoe.train", *train_args(full, tiny_space_file, data_dir, max_steps=steps))
    cmd = [*TORCHRUN, "-m", "automoe.train"]
    cmd += [*train_args(killed, tiny_space_file, data_dir, max_steps=steps), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        metrics = killed / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        survivor = _rank_pid(proc.pid, 0)
        os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and b"SIGKILL" in stderr
    assert not Path(f"/proc/{survivor}").exists()
    assert (killed / "checkpoint.pt").is_file() and not (killed / "supernet.pt").exists()
    torchrun("-m", "automoe.train", f"--run-dir={killed}", "--resume", "--no-progress")
    final, reference = weights(killed), weights(full)
    for name, value in reference.items():
        assert torch.equal(final[name], value), name
    assert [r["step"] for r in metric_rows(killed)] == list(range(1, steps + 1))


def test_benchmark_rates_count_only_the_updates_after_the_warm_up() -> None:
    clock = [(1, 5.0), (2, 5.5), (3, 6.0), (4, 7.0)]
    rows = [{"step": step, "elapsed_s": t, "tokens": 100} for step, t in clock]
    rates = steady_rates(rows, skip=2)
    assert rates == {"updates_per_s": 2 / 1.5, "tokens_per_s": 200 / 1.5, "updates": 2}


if __name__ == "__main__":
    _worker(*sys.argv[1:])
