"""One search shared by several workers through an Optuna storage (`--storage`, `--study`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import TINY_SPACE
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from automoe.constraints import Constraint
from automoe.errors import AutomoeError
from automoe.plot.__main__ import main as plot_main
from automoe.search import storage
from automoe.search.__main__ import main as search_main
from automoe.search.costs import CostModel
from automoe.search.loop import Budget, SearchLoop
from automoe.search.shared import SharedLoop
from automoe.search.storage import FAILED_EVALUATION, LOST, STALE, SharedStudy
from automoe.space import ArchConfig
from automoe.strategies import available, get_strategy
from automoe.strategies.conformance import loss, tiny_space

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("evolution", "nevergrad", "optuna-nsga2", "optuna-tpe", "random")
SMALL = {
    "evolution": {"population": 8, "parents": 3, "mutations": 3, "crossovers": 2},
    "optuna-tpe": {"n_startup_trials": 4},
    "optuna-nsga2": {"population_size": 6},
}


def study(url: str, name: str = "s") -> optuna.Study:
    """The study as Optuna's own API reads it."""
    storage = JournalStorage(JournalFileBackend(url)) if "://" not in url else url
    return optuna.load_study(study_name=name, storage=storage)


def complete(url: str, name: str = "s") -> list[optuna.trial.FrozenTrial]:
    return [
        t for t in study(url, name).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
    ]


# ------------------------------------------------------------------ the mechanism, in one process


def _settings(strategy: str) -> dict[str, Any]:
    return {"strategy": strategy, "objectives": ["loss", "flops"], "heartbeat": 1}


def _loop(strategy: str, folder: Path, shared: SharedStudy | None, budget: int) -> SearchLoop:
    """A search of `tiny_space` scored by the conformance checks' synthetic loss."""

    def scorer(archs: list[ArchConfig]) -> list[dict[str, float]]:
        time.sleep(0.01 * len(archs))  # room for the other worker to claim meanwhile
        return [{"objective": loss(a), "loss": loss(a)} for a in archs]

    made = get_strategy(strategy)(
        tiny_space(), ("loss", "flops"), seed=2, **SMALL.get(strategy, {})
    )
    costs = CostModel(8, 100, num_tasks=1)
    folder.mkdir(parents=True, exist_ok=True)
    args = (made, scorer, costs, [], ["loss", "flops"], folder, Budget(budget), 6)
    if shared is None:
        return SearchLoop(*args)
    shared.start(_settings(strategy))
    return SharedLoop(*args, study=shared, poll_s=0.05)


class Interrupted(Exception):
    """What stops a worker in the test of restarts."""


def _work(loop: SearchLoop, errors: list[BaseException]) -> None:
    try:
        loop.resume()
        loop.run(progress=False)
    except BaseException as err:  # handed to the test's thread
        errors.append(err)


def _work_together(loops: list[SearchLoop]) -> None:
    """Run the loops at the same time, one thread each; an error in any fails the test."""
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_work, args=(loop, errors)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_every_built_in_strategy_is_registered() -> None:
    assert set(BUILT_IN) <= set(available())


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_two_workers_record_what_one_process_would(strategy: str, tmp_path: Path) -> None:
    """Whatever the strategy, two workers sharing a study score exactly the architectures,
    in the same order, that one process with the same seed scores: its state is a function
    of the shared record."""
    alone = _loop(strategy, tmp_path / "alone", None, 24)
    alone.resume()
    expected = [r["arch_key"] for r in alone.run(progress=False)]
    url = f"sqlite:///{tmp_path / 's.db'}"
    workers = [
        _loop(strategy, tmp_path / f"w{i}", SharedStudy(url, "s", f"w{i}"), 24) for i in (0, 1)
    ]
    _work_together(workers)
    record = workers[0].record()
    assert [r["arch_key"] for r in record] == expected
    assert [r["index"] for r in record] == list(range(len(expected)))
    assert sum(w.scored for w in workers) == len(expected)  # nobody scored one twice
    assert len(complete(url)) == len(expected)


def test_a_restarted_worker_continues_the_search(tmp_path: Path) -> None:
    """A worker stopped mid-round releases its claim at once; restarted (same name), it
    replays the record and finishes the search as one process would have."""
    alone = _loop("evolution", tmp_path / "alone", None, 24)
    alone.resume()
    expected = [r["arch_key"] for r in alone.run(progress=False)]
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = _loop("evolution", tmp_path / "w", SharedStudy(url, "s", "w"), 24)
    scorer, calls = first.scorer, []

    def stops(archs: list[ArchConfig]) -> list[dict[str, float]]:
        calls.append(archs)
        if len(calls) == 11:
            raise Interrupted
        return scorer(archs)

    first.scorer = stops
    first.resume()
    with pytest.raises(Interrupted):
        first.run(progress=False)
    trials = study(url).get_trials(deepcopy=False)
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 10, TrialState.FAIL: 1}
    again = _loop("evolution", tmp_path / "w", SharedStudy(url, "s", "w"), 24)
    again.resume()
    assert [r["arch_key"] for r in again.run(progress=False)] == expected
    assert again.scored == len(expected) - 10


def test_a_claim_stands_once_and_a_dead_claim_expires(tmp_path: Path) -> None:
    """Two workers claiming one architecture: the first claim stands, the second is closed
    at once; a claim whose worker stops beating is failed by a waiting worker (journal storage:
    automoe's own lease), after which the architecture can be claimed again."""
    url = str(tmp_path / "journal.log")
    one, two = SharedStudy(url, "s", "one"), SharedStudy(url, "s", "two")
    for worker in (one, two):
        worker.start(_settings("random"))
    arch = tiny_space().largest()
    first = one.claim(arch, {"index": 0}, {})
    assert first is not None
    assert two.claim(arch, {"index": 0}, {}) is None
    lost = [e for e in two.entries() if e.attrs.get("fail_reason") == LOST]
    assert len(lost) == 1 and lost[0].state == TrialState.FAIL and lost[0].worker == "two"
    assert one._beat is not None
    one._beat.remove(first)  # its worker is frozen: no more heartbeats
    time.sleep(two.grace_s + 1.5)
    two.expire_stale()
    stale = [e for e in two.entries() if e.trial_id == first]
    assert stale[0].state == TrialState.FAIL and stale[0].attrs["fail_reason"] == STALE
    again = two.claim(arch, {"index": 0}, {})
    assert again is not None and two.finish(again, {"loss": 1.0}, [1.0, 2.0])
    assert not one.finish(first, {"loss": 1.0}, [1.0, 2.0])  # a late result is not recorded
    assert [e.worker for e in one.entries() if e.told] == ["two"]
    assert two.claim(arch, {"index": 0}, {}) is None  # scored: nobody claims it again


def test_a_database_claim_whose_worker_died_before_its_first_beat_expires(
    tmp_path: Path,
) -> None:
    """Optuna never fails a running trial without a heartbeat: a worker killed between creating
    its claim and beating for it must not keep the architecture claimed for good."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    one, two = SharedStudy(url, "s", "one"), SharedStudy(url, "s", "two")
    for worker in (one, two):
        worker.start(_settings("random"))
    space = tiny_space()
    beating = one.claim(space.smallest(), {"index": 0}, {})
    one._first_beat = lambda trial_id: None  # type: ignore[method-assign]  # dies before it
    dead = one.claim(space.largest(), {"index": 1}, {})
    assert dead is not None and beating is not None
    time.sleep(two.grace_s + 1.5)
    two.expire_stale()
    states = {e.trial_id: (e.state, e.attrs.get("fail_reason")) for e in two.entries()}
    assert states[dead] == (TrialState.FAIL, STALE)
    assert states[beating] == (TrialState.RUNNING, None)  # its worker beats: it stands
    again = two.claim(space.largest(), {"index": 1}, {})
    assert again is not None and two.finish(again, {"loss": 1.0}, [1.0, 2.0])


def test_a_failed_evaluation_is_a_result_not_a_lost_claim(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    worker = SharedStudy(url, "s", "w")
    worker.start(_settings("random"))
    trial = worker.claim(tiny_space().smallest(), {"index": 0}, {})
    assert trial is not None and worker.finish(trial, {}, None)
    [entry] = worker.entries()
    assert entry.told and entry.attrs["fail_reason"] == FAILED_EVALUATION
    assert worker.rows()[0]["objective"] is None


# ------------------------------------------------------------------ the command, several processes


def worker_args(storage: str, tiny_run: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        f"--supernet={tiny_run}",
        f"--data-dir={data_dir}",
        "--valid-size=30",
        "--threads=1",
        "--no-progress",
        f"--storage={storage}",
        "--study=s",
        "--objectives=loss,flops",
        *extra,
    ]


def start_worker(name: str, run: Path, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "automoe.search", *args, f"--worker={name}", f"--run={run}"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen[str]) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out


def local_keys(tmp_path: Path, tiny_run: Path, data_dir: Path, *extra: str) -> list[str]:
    """The architectures one process scores with these options, in order."""
    run = tmp_path / "local"
    args = worker_args("", tiny_run, data_dir, *extra)
    args = [a for a in args if not a.startswith(("--storage", "--study"))]
    assert search_main([*args, f"--run={run}"]) == 0
    return [json.loads(line)["arch_key"] for line in (run / "evaluations.jsonl").open()]


# Kill tests: budgets large enough that the victim, slowed by a loaded machine, still holds a
# claim after its first results before the others have spent the whole budget; heartbeats far
# enough apart that a loaded machine delaying one SQLite write does not fail the victim's
# claims as stale before it is killed (it did at 1 s, under two trainings beside the tests).
KILL_BUDGET = 40
KILL_HEARTBEAT = "--heartbeat=3"
EVOLUTION = [
    "--strategy=evolution",
    "--option=population=8",
    "--option=parents=3",
    "--option=mutations=3",
    "--option=crossovers=2",
    f"--evaluations={KILL_BUDGET}",
    "--batch=8",
]


def test_two_journal_workers_share_one_search(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    journal = str(tmp_path / "search.journal")
    extra = ["--strategy=nevergrad", "--evaluations=20", "--batch=5"]
    procs = [
        start_worker(f"w{i}", tmp_path / f"w{i}", worker_args(journal, tiny_run, data_dir, *extra))
        for i in (1, 2)
    ]
    for proc in procs:
        finish(proc)
    trials = sorted(complete(journal), key=lambda t: t.user_attrs["index"])
    assert [t.user_attrs["arch_key"] for t in trials] == local_keys(
        tmp_path, tiny_run, data_dir, *extra
    )


def freeze_and_kill(proc: subprocess.Popen[str], url: str, worker: str, scored: int) -> int:
    """Kill `worker` while it holds a claim, once it has scored `scored` architectures: it is
    stopped (SIGSTOP) first, so the claim seen is still its own when it dies. The claim's trial
    id."""
    deadline = time.monotonic() + 120
    found = None
    while time.monotonic() < deadline:
        try:
            found = found or study(url)
        except KeyError:  # the study is not there yet
            time.sleep(0.1)
            continue
        mine = [t for t in found.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker]
        done = sum(t.state == TrialState.COMPLETE for t in mine)
        if done >= scored and any(t.state == TrialState.RUNNING for t in mine):
            os.kill(proc.pid, signal.SIGSTOP)
            held = [
                t
                for t in found.get_trials(deepcopy=False)
                if t.user_attrs.get("worker") == worker and t.state == TrialState.RUNNING
            ]
            if held:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return held[0]._trial_id
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    states = Counter(t.state.name for t in found.get_trials(deepcopy=False)) if found else {}
    raise AssertionError(
        f"{worker} never held a claim after scoring {scored}; the study holds {dict(states)}"
    )


def expired(url: str, claim: int) -> Any:
    """The claim after another worker of the study expired stale claims (waiting out the
    grace period of the kill tests' heartbeat)."""
    checker = SharedStudy(url, "s", "checker")
    checker.start(checker.attach())
    deadline = time.monotonic() + 4 * checker.grace_s
    while True:
        checker.expire_stale()
        held = next(t for t in study(url).get_trials(deepcopy=False) if t._trial_id == claim)
        if held.state != TrialState.RUNNING or time.monotonic() > deadline:
            return held
        time.sleep(0.5)


def check_kill_survived(
    url: str, killed: str, claim: int, budget: int, before: list[str]
) -> list[str]:
    """The killed worker's claim was failed and its architecture scored by another; what it had
    scored is still in the study; the study holds the budget, each architecture once. The
    architectures in the order of the search."""
    trials = study(url).get_trials(deepcopy=False)
    held = next(t for t in trials if t._trial_id == claim)
    if held.state == TrialState.RUNNING:
        # Killed before it released a claim that lost its race: no architecture waited on it,
        # so the others could finish without failing it; any worker's look at the study once
        # its heartbeat is stale fails it.
        assert held.user_attrs["arch_key"] in {
            t.user_attrs["arch_key"] for t in trials if t.state == TrialState.COMPLETE
        }
        held = expired(url, claim)
    assert held.state == TrialState.FAIL
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [t.user_attrs["arch_key"] for t in done]
    assert len(done) == budget and len(set(keys)) == budget
    assert sorted(t.user_attrs["index"] for t in done) == list(range(budget))
    assert held.user_attrs["arch_key"] in keys
    assert set(before) <= {
        t.user_attrs["arch_key"] for t in done if t.user_attrs["worker"] == killed
    }
    return [t.user_attrs["arch_key"] for t in sorted(done, key=lambda t: t.user_attrs["index"])]


def test_sqlite_workers_started_together_share_one_search_through_a_kill(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    """Two workers started at the same moment on a fresh SQLite file, one of them killed while
    scoring and restarted: the study holds exactly the budget, each architecture once, the
    killed worker's results kept, the same architectures one process scores; each worker's run
    folder receives the whole record."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    args = worker_args(url, tiny_run, data_dir, *EVOLUTION, KILL_HEARTBEAT)
    survivor = start_worker("survivor", tmp_path / "survivor", args)
    victim = start_worker("victim", tmp_path / "victim", args)
    claim = freeze_and_kill(victim, url, "victim", scored=1)
    before = [t.user_attrs["arch_key"] for t in complete(url) if t.user_attrs["worker"] == "victim"]
    restarted = start_worker("victim", tmp_path / "victim", args)
    for proc in (survivor, restarted):
        finish(proc)
    keys = check_kill_survived(url, "victim", claim, KILL_BUDGET, before)
    assert keys == local_keys(tmp_path, tiny_run, data_dir, *EVOLUTION)
    for worker in ("survivor", "victim"):
        rows = [json.loads(line) for line in (tmp_path / worker / "evaluations.jsonl").open()]
        assert [r["arch_key"] for r in rows] == keys
        assert (
            json.loads((tmp_path / worker / "summary.json").read_text())["evaluations"]
            == KILL_BUDGET
        )


def test_three_postgres_workers_share_one_search_through_a_kill(
    tmp_path: Path, tiny_run: Path, data_dir: Path, postgres_database: str
) -> None:
    """Three workers started together on a fresh PostgreSQL database, one killed while scoring
    (not restarted): the other two finish the search, losing nothing; the study holds exactly
    the budget, each architecture once, as one process scores them."""
    extra = [
        "--strategy=optuna-tpe",
        "--option=n_startup_trials=4",
        f"--evaluations={KILL_BUDGET}",
        "--batch=8",
    ]
    args = worker_args(postgres_database, tiny_run, data_dir, *extra, KILL_HEARTBEAT)
    procs = {name: start_worker(name, tmp_path / name, args) for name in ("a", "b", "victim")}
    claim = freeze_and_kill(procs.pop("victim"), postgres_database, "victim", scored=1)
    done = complete(postgres_database)
    before = [t.user_attrs["arch_key"] for t in done if t.user_attrs["worker"] == "victim"]
    for proc in procs.values():
        finish(proc)
    keys = check_kill_survived(postgres_database, "victim", claim, KILL_BUDGET, before)
    assert keys == local_keys(tmp_path, tiny_run, data_dir, *extra)


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_the_claim_rule_holds_on_every_storage(kind: str, tmp_path: Path, request: Any) -> None:
    """Two workers on the other kinds of storage (a journal's log order, PostgreSQL's row locks;
    SQLite's database lock is the strategies' test above) record what one process would."""
    url = {
        "journal": lambda: str(tmp_path / "s.journal"),
        "postgres": lambda: request.getfixturevalue("postgres_database"),
    }[kind]()
    alone = _loop("random", tmp_path / "alone", None, 24)
    alone.resume()
    expected = [r["arch_key"] for r in alone.run(progress=False)]
    workers = [
        _loop("random", tmp_path / f"w{i}", SharedStudy(url, "s", f"w{i}"), 24) for i in (0, 1)
    ]
    _work_together(workers)
    assert [r["arch_key"] for r in workers[1].record()] == expected
    assert sum(w.scored for w in workers) == len(expected)


# ------------------------------------------------------------------ what users and Optuna see


def test_the_study_reads_back_with_optunas_api_and_plots(
    tmp_path: Path, tiny_run: Path, data_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'search.db'}"
    bound = 3.2e6
    constraint = Constraint.parse(f"flops<={bound}")
    args = worker_args(
        url,
        tiny_run,
        data_dir,
        "--strategy=random",
        "--evaluations=10",
        f"--constraint={constraint}",
    )
    assert search_main([*args, "--worker=only", f"--run={tmp_path / 'run'}"]) == 0
    found = study(url)
    assert found.metric_names == ["loss", "flops"]
    assert [d.name for d in found.directions] == ["MINIMIZE", "MINIMIZE"]
    trials = found.get_trials(states=[TrialState.COMPLETE])
    assert len(trials) == 10
    for trial in trials:
        attrs = trial.user_attrs
        assert trial.values == [attrs["loss"], attrs["flops"]]
        assert ArchConfig.from_dict(attrs["arch"]).key() == attrs["arch_key"]
        assert attrs["worker"] == "only" and attrs["feasible"] is True
        assert {"latency_ms", "params", "eval_s"} <= attrs.keys()
        assert trial.constraints == {str(constraint): attrs["flops"] - bound}
    assert {t.number for t in found.best_trials} <= {t.number for t in trials}
    out = tmp_path / "plots"
    assert plot_main(["--storage", url, "--study", "s", "--cost", "flops", "--out", str(out)]) == 0
    assert (out / "tradeoff_flops.png").stat().st_size > 0


def test_storage_mistakes_are_one_clear_message(
    tmp_path: Path,
    tiny_run: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'search.db'}"
    base = worker_args(sqlite, tiny_run, data_dir, "--strategy=random", "--evaluations=4")
    assert search_main([*base, f"--run={tmp_path / 'first'}"]) == 0

    def refused(args: list[str], needle: str) -> None:
        with pytest.raises(AutomoeError, match=needle):
            search_main([*args, f"--run={tmp_path / 'other'}"])

    def swap(args: list[str], prefix: str, value: str) -> list[str]:
        return [value if a.startswith(prefix) else a for a in args]

    refused(swap(base, "--storage", "--storage=not a url://x"), "not a database URL")
    refused(swap(base, "--storage", "--storage=nosuchdb://host/db"), "no database called")
    refused(swap(base, "--storage", "--storage=mysql://u@localhost/db"), "no database driver")
    refused(swap(base, "--storage", f"--storage={tmp_path / 'no' / 'j.log'}"), "does not exist")
    fresh = tmp_path / "fresh.db"
    missing = swap(base, "--supernet", f"--supernet={tmp_path / 'missing.pt'}")
    refused(swap(missing, "--storage", f"--storage=sqlite:///{fresh}"), "does not exist")
    assert not fresh.exists()  # a refused worker creates no storage
    refused([a for a in base if not a.startswith("--study")], "needs --study")
    refused([a for a in base if not a.startswith("--supernet")], "needs --supernet")
    refused([*base, "--latency=measured"], "latency measured")
    refused(
        [*swap(base, "--strategy", "--strategy=optuna-tpe"), "--option=storage_url=x"],
        "storage_url",
    )
    refused([*base, "--seed=1"], "seed is 0 there, 1 here")
    refused(swap(base, "--strategy", "--strategy=evolution"), "strategy is 'random' there")
    refused(swap(base, "--objectives", "--objectives=loss"), "objectives")
    refused([*base, "--evaluations=8"], "evaluations is 4 there, 8 here")
    narrower = tmp_path / "narrower.yaml"
    narrower.write_text(TINY_SPACE.replace("embed_dim: [24, 32]", "embed_dim: [32]"))
    refused([*base, f"--space={narrower}"], "another space")
    optuna.create_study(study_name="plain", storage=sqlite)
    monkeypatch.setattr(storage, "SETTINGS_WAIT_S", 0.5)
    refused(swap(base, "--study", "--study=plain"), "holds no automoe search")
    capsys.readouterr()
