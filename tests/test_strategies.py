"""Per-strategy behaviour: evolution's generations and its edge over random search, Optuna's
storages, heartbeats and duplicate handling, Nevergrad's replayed resume, the gene mapping of
conditional dimensions, ranking helpers, the registry and the protocol's error messages."""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.samplers import RandomSampler

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies import STRATEGIES, Result, Strategy, get_strategy, register
from automoe.strategies import registry as registry_module
from automoe.strategies.conformance import TINY_SPACE, loss, size, tiny_space
from automoe.strategies.evolution import EvolutionarySearch
from automoe.strategies.genome import decode, genes
from automoe.strategies.optuna_strategy import OptunaTPE
from automoe.strategies.pareto import crowding, fronts, rank


def run(strategy: Strategy, rounds: int, batch: int, objective: Any = loss) -> list[ArchConfig]:
    """Ask/tell until `rounds` asks or the strategy stops; everything proposed."""
    proposed: list[ArchConfig] = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        if not archs:
            break
        proposed += archs
        strategy.tell(archs, [(objective(a),) for a in archs])
    return proposed


# ----------------------------------------------------------------- evolution


def unique_loss(arch: ArchConfig) -> float:
    """The synthetic loss with a tiny tie-breaker, so rankings have one right answer."""
    return loss(arch) + int(arch.key(), 16) % 10**6 * 1e-9


def test_evolution_follows_the_generation_structure() -> None:
    space = tiny_space()
    evo = EvolutionarySearch(
        space, population=12, parents=3, mutations=4, crossovers=5, iterations=3, seed=1
    )
    first = evo.ask(100)
    assert len(first) == 12 and evo.generation == 0 and evo.parents == []
    assert evo.ask(5) == []  # the generation must be told before the next is bred
    evo.tell(first[:5], [(unique_loss(a),) for a in first[:5]])
    evo.tell(first[5:], [(unique_loss(a),) for a in first[5:]])
    told = list(first)
    for generation in (1, 2):
        children = evo.ask(3) + evo.ask(100)
        assert evo.generation == generation
        assert len(children) == 4 + 5  # mutants + crossovers; parents are not asked again
        best = sorted(told, key=unique_loss)[:3]
        assert evo.parents == best
        assert not {a.key() for a in children} & {a.key() for a in told}
        evo.tell(children, [(unique_loss(a),) for a in children])
        told += children
    assert evo.ask(10) == [] and evo.done
    assert evo.parents == sorted(told, key=unique_loss)[:3]
    assert len(evo.history) == 12 + 2 * 9


def test_evolution_rejects_infeasible_children_before_scoring() -> None:
    bound = size(tiny_space().smallest()) + 30
    evo = EvolutionarySearch(
        tiny_space(),
        is_feasible=lambda a: size(a) <= bound,
        population=10,
        parents=3,
        mutations=5,
        crossovers=5,
        iterations=3,
    )
    proposed = run(evo, 10, 7)
    assert len(proposed) == 30 and all(size(a) <= bound for a in proposed)


def test_evolution_beats_random_search() -> None:
    space = SearchSpace.load("multi30k")
    target = space.encode(space.sample(random.Random(123)))
    scale = [max(v, 1) for v in space.encode(space.largest())]

    def distance(arch: ArchConfig) -> float:
        return sum(
            abs(a - t) / s for a, t, s in zip(space.encode(arch), target, scale, strict=True)
        )

    options = {"population": 20, "parents": 5, "mutations": 10, "crossovers": 10, "iterations": 5}
    gaps = []
    for seed in range(5):
        evo = EvolutionarySearch(space, seed=seed, **options)
        rnd = get_strategy("random")(space, seed=seed)
        evolved = run(evo, 50, 20, distance)
        sampled = run(rnd, 5, 20, distance)
        assert len(evolved) == len(sampled) == 100
        gaps.append(min(map(distance, sampled)) - min(map(distance, evolved)))
    assert statistics.median(gaps) > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"population": 10, "parents": 30}, "parents = 30"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"iterations": 0}, "iterations"),
    ],
)
def test_evolution_options_are_checked_on_first_use(options: dict, message: str) -> None:
    evo = EvolutionarySearch(tiny_space(), **options)
    with pytest.raises(AutomoeError, match=message):
        evo.ask(1)


def test_multi_objective_evolution_keeps_a_spread_front() -> None:
    evo = EvolutionarySearch(
        tiny_space(),
        ("loss", "size"),
        population=16,
        parents=6,
        mutations=5,
        crossovers=5,
        iterations=4,
    )
    while archs := evo.ask(50):
        evo.tell(archs, [(loss(a), size(a)) for a in archs])
    front = evo.front()
    assert len({r.values[1] for r in front}) >= 3


# ----------------------------------------------------------------- optuna


def optuna_strategy(name: str = "optuna-tpe", **options: Any) -> Strategy:
    if name == "optuna-tpe":
        options.setdefault("n_startup_trials", 4)
    return get_strategy(name)(tiny_space(), seed=4, **options)


@pytest.mark.parametrize("where", ["storage_url", "journal_path"])
def test_optuna_resumes_from_its_storage(tmp_path: Path, where: str) -> None:
    def location(name: str) -> str:
        path = tmp_path / name
        return f"sqlite:///{path}.db" if where == "storage_url" else f"{path}.log"

    straight = optuna_strategy(**{where: location("straight")})
    expected = run(straight, 8, 3)

    first = optuna_strategy(**{where: location("stopped")})
    done = run(first, 4, 3)
    pending = first.ask(3)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["extra"]["journal"] is None  # the study lives in the storage, not the state
    second = optuna_strategy(**{where: location("stopped")})
    second.load_state_dict(state)
    second.tell(pending, [(loss(a),) for a in pending])
    assert done + pending + run(second, 3, 3) == expected
    assert len(second.study.trials) == len(straight.study.trials)


def test_optuna_workers_have_their_own_seeds(tmp_path: Path) -> None:
    journal = str(tmp_path / "shared.log")
    workers = [optuna_strategy(journal_path=journal, worker_index=i) for i in range(2)]
    first = [w.ask(2) for w in workers]
    assert first[0] != first[1]
    assert len(workers[0].study.trials) == 4  # both workers share one study


def test_optuna_retries_the_trials_of_a_dead_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'heartbeat.db'}"
    options = {"storage_url": url, "heartbeat_interval": 3600, "grace_period": 1}
    dead = optuna_strategy(**options)
    (lost,) = dead.ask(1)
    time.sleep(2.2)  # SQLite's clock has one-second steps; the heartbeat is now stale
    alive = optuna_strategy(worker_index=1, **options)
    (retried,) = alive.ask(1)
    assert retried == lost
    alive.tell([retried], [(loss(retried),)])
    dead.tell([lost], [(loss(lost),)])  # too late: the trial was failed, nothing breaks
    states = [t.state.name for t in alive.study.trials]
    assert states == ["FAIL", "COMPLETE"]


def test_optuna_tells_duplicates_their_known_values() -> None:
    data = {**TINY_SPACE, "identity_experts": False}
    data["encoder"] = {**TINY_SPACE["encoder"], "layers": [1], "experts": [1], "top_k": [1]}
    data["decoder"] = {**TINY_SPACE["decoder"], "layers": [1], "experts": [1], "top_k": [1]}
    data["decoder"]["cross_layers"] = [1]
    space = SearchSpace.from_dict(data)
    strategy = get_strategy("optuna-tpe")(space, seed=1, n_startup_trials=3, max_tries=10)
    proposed = run(strategy, 40, 4)
    assert len({a.key() for a in proposed}) == len(proposed) <= space.size()
    complete = [t for t in strategy.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) > len(proposed)  # repeats were told, not proposed
    for trial in complete:
        arch = decode(space, lambda name, n, trial=trial: trial.params[name])
        assert trial.values == [loss(arch)]


def test_optuna_sets_constraints_and_refusals_on_trials() -> None:
    bound = size(tiny_space().smallest()) + 30
    strategy = optuna_strategy("optuna-nsga2", population_size=4)
    strategy.is_feasible = lambda a: size(a) <= bound
    for archs in iter(lambda: strategy.ask(3), []):
        strategy.tell(archs, [(loss(a),) for a in archs], [(size(a) - bound - 1.0,) for a in archs])
        if len(strategy.history) >= 12:
            break
    trials = strategy.study.trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    refused = [t for t in trials if t.state.name == "PRUNED"]
    assert len(complete) == 12 and all(t.constraints["0"] <= -1.0 for t in complete)
    assert refused and all(t.constraints == {"is_feasible": 1.0} for t in refused)


def test_optuna_failed_evaluations_are_failed_trials() -> None:
    strategy = optuna_strategy()
    archs = strategy.ask(3)
    strategy.tell(archs, [None, (math.nan,), (1.0,)])
    assert [t.state.name for t in strategy.study.trials] == ["FAIL", "FAIL", "COMPLETE"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"storage_url": "sqlite://", "journal_path": "x.log"}, "either storage_url"),
        ({"journal_path": "x.log", "heartbeat_interval": 5}, "JournalStorage has no heartbeats"),
        ({"worker_index": -1}, "worker_index"),
        ({"population_size": 1}, "population_size"),
    ],
)
def test_optuna_option_errors(options: dict, message: str) -> None:
    name = "optuna-nsga2" if "population_size" in options else "optuna-tpe"
    strategy = get_strategy(name)(tiny_space(), **options)
    with pytest.raises(AutomoeError, match=message):
        strategy.ask(1)


def test_optuna_refuses_a_study_with_other_directions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    get_strategy("optuna-tpe")(tiny_space(), storage_url=url).ask(1)
    other = get_strategy("optuna-tpe")(tiny_space(), ("loss", "size"), storage_url=url)
    with pytest.raises(AutomoeError, match="another study_name"):
        other.ask(1)


# ----------------------------------------------------------------- nevergrad


@pytest.mark.parametrize("optimizer", ["DE", "DiscreteOnePlusOne"])
def test_nevergrad_resumes_by_replaying(optimizer: str) -> None:
    def build() -> Strategy:
        return get_strategy("nevergrad")(tiny_space(), ("loss", "size"), optimizer=optimizer)

    def values(archs: list[ArchConfig]) -> list[tuple[float, float]]:
        return [(loss(a), size(a)) for a in archs]

    straight, stopped = build(), build()
    for strategy in (straight, stopped):
        for _ in range(3):
            archs = strategy.ask(4)
            strategy.tell(archs, values(archs))
    pending = stopped.ask(2)
    resumed = build()
    resumed.load_state_dict(json.loads(json.dumps(stopped.state_dict())))
    assert straight.ask(2) == pending
    for strategy in (straight, resumed):
        strategy.tell(pending, values(pending))
        archs = strategy.ask(4)
        strategy.tell(archs, values(archs))
    assert straight.history == resumed.history


def test_nevergrad_unknown_optimizer_lists_choices() -> None:
    strategy = get_strategy("nevergrad")(tiny_space(), optimizer="Nope")
    with pytest.raises(AutomoeError, match=r"'Nope'.*NGOpt, DE"):
        strategy.ask(1)


def test_nevergrad_needs_a_space_with_choices() -> None:
    single = {**TINY_SPACE, "identity_experts": False}
    for side in ("encoder", "decoder"):
        single[side] = {key: values[:1] for key, values in TINY_SPACE[side].items()}
    with pytest.raises(AutomoeError, match="nothing to search"):
        get_strategy("nevergrad")(SearchSpace.from_dict(single)).ask(1)


def test_nevergrad_best_comes_from_the_told_history() -> None:
    strategy = get_strategy("nevergrad")(tiny_space(), optimizer="DE", seed=2)
    run(strategy, 4, 5)
    assert strategy.best() == min(strategy.history, key=lambda r: r.values)


# ----------------------------------------------------------------- conditional genes

VARIANTS = [
    {"fractional_experts": fractional, "identity_experts": identity}
    for fractional in (True, False)
    for identity in (True, False)
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k[:4]}{v[k]:d}" for k in v))
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_conditional_genes_always_decode_inside_the_space(variant: dict, seed: int) -> None:
    space = SearchSpace.from_dict({**TINY_SPACE, **variant})
    slots = genes(space)
    rng = random.Random(seed)
    asked: dict[str, int] = {}

    def pick(name: str, n: int) -> int:
        asked[name] = n
        return rng.randrange(n)

    assert space.contains(decode(space, pick))
    assert all(slots[name] == n for name, n in asked.items())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000))
def test_adapters_propose_valid_architectures_for_any_seed(seed: int) -> None:
    space = SearchSpace.from_dict({**TINY_SPACE, "fractional_experts": False})
    for name in ("optuna-tpe", "nevergrad"):
        strategy = get_strategy(name)(space, seed=seed)
        assert all(space.contains(a) for a in run(strategy, 2, 3))


def test_genes_exist_only_for_existing_layers_and_experts() -> None:
    space = tiny_space()
    asked: list[str] = []

    def smallest(name: str, n: int) -> int:
        asked.append(name)
        return 0

    arch = decode(space, smallest)
    assert arch.encoder_layers == arch.decoder_layers == 1
    assert not any(name.startswith(("enc1", "dec1")) or "_e1_" in name for name in asked)
    assert arch.encoder_ffn_dims == ((8,),)  # the all-identity layer was repaired
    assert {"enc1_e1_ffn", "dec1_cross_layers"} <= set(genes(space))


# ----------------------------------------------------------------- ranking helpers


def test_fronts_and_crowding() -> None:
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (6, 6)]
    assert fronts(points) == [[0, 1, 2], [3], [4]]
    assert crowding([(1, 5), (2, 2), (5, 1)]) == [math.inf, 2.0, math.inf]


def test_rank_puts_feasible_first_then_least_violation_and_drops_failures() -> None:
    arch = tiny_space().smallest()
    results = [
        Result(arch, (3.0,)),
        Result(arch, (1.0,), (2.0,)),
        Result(arch, None),
        Result(arch, (2.0,), (-1.0,)),
        Result(arch, (0.5,), (0.5, -3.0)),
    ]
    assert rank(results) == [results[3], results[0], results[4], results[1]]


# ----------------------------------------------------------------- protocol and registry


def test_tell_parses_failures_and_checks_violations() -> None:
    strategy = get_strategy("random")(tiny_space())
    archs = strategy.ask(3)
    with pytest.raises(AutomoeError, match="must not be NaN"):
        strategy.tell(archs, [(1.0,)] * 3, [(math.nan,), None, None])
    strategy.tell(archs, [(None,), 2, (math.nan,)], [None, (0.0, -1.0), (5.0,)])
    assert [r.failed for r in strategy.history] == [True, False, True]
    assert strategy.history[1].feasible and strategy.best() == strategy.history[1]


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_ask_needs_a_count(n: Any) -> None:
    with pytest.raises(AutomoeError, match="non-negative integer"):
        get_strategy("random")(tiny_space()).ask(n)


def test_load_state_dict_refuses_mismatches() -> None:
    saved = get_strategy("random")(tiny_space(), seed=1)
    saved.ask(2)
    state = saved.state_dict()
    with pytest.raises(AutomoeError, match="seed = 1, not 2"):
        get_strategy("random")(tiny_space(), seed=2).load_state_dict(state)
    with pytest.raises(AutomoeError, match="strategy = 'random'"):
        EvolutionarySearch(tiny_space(), seed=1).load_state_dict(state)
    with pytest.raises(AutomoeError, match="another search space"):
        get_strategy("random")(SearchSpace.load("multi30k"), seed=1).load_state_dict(state)
    with pytest.raises(AutomoeError, match="not a saved strategy state"):
        get_strategy("random")(tiny_space()).load_state_dict({"version": 99})
    with pytest.raises(AutomoeError, match="fresh strategy"):
        saved.load_state_dict(state)


def test_objectives_are_checked() -> None:
    with pytest.raises(AutomoeError, match="distinct non-empty names"):
        get_strategy("random")(tiny_space(), ("loss", "loss")).ask(1)


def test_unknown_strategy_lists_the_choices() -> None:
    with pytest.raises(AutomoeError, match=r"unknown strategy 'nope'.*evolution.*optuna-tpe"):
        get_strategy("nope")


def test_register_refuses_clashes_and_non_strategies() -> None:
    with pytest.raises(AutomoeError, match="already taken"):
        register("random", EvolutionarySearch)
    with pytest.raises(AutomoeError, match="not a subclass of Strategy"):
        register("thing", dict)  # type: ignore[arg-type]


def test_third_party_strategies_come_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plugin(EvolutionarySearch):
        name = "plugin"

    class EntryPoint:
        name = "plugin"

        def load(self) -> type:
            return Plugin

    def entry_points(group: str, name: str | None = None) -> list[EntryPoint]:
        assert group == "automoe.strategies"
        return [EntryPoint()] if name in (None, "plugin") else []

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    monkeypatch.setattr(registry_module, "STRATEGIES", dict(STRATEGIES))
    assert "plugin" in registry_module.available()
    assert registry_module.get_strategy("plugin") is Plugin


ROUTED = {
    **TINY_SPACE,
    "encoder": {**TINY_SPACE["encoder"], "routing": ["token", "task"]},
    "decoder": {**TINY_SPACE["decoder"], "routing": ["token", "sentence", "task"]},
}


@pytest.mark.parametrize("name", sorted(n for n in STRATEGIES if not n.startswith("test-")))
def test_every_strategy_searches_the_routing_dimension(name: str) -> None:
    """Routing genes exist only for MoE layers; every strategy stays valid and explores them."""
    space = SearchSpace.from_dict(ROUTED)
    strategy = get_strategy(name)(space, seed=5)
    proposed = run(strategy, 6, 8)
    assert proposed and all(space.contains(a) for a in proposed)
    modes = {
        m
        for a in proposed
        for m, e in zip(a.decoder_routing, a.decoder_experts, strict=True)
        if e > 1
    }
    assert len(modes) >= 2


class _Lowest(RandomSampler):
    """A converged sampler: every gene at its lowest index, so every ask is the same arch."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.low


class StubbornTPE(OptunaTPE):
    name = "test-stubborn"

    def _sampler(self, seed: int) -> RandomSampler:
        return _Lowest(seed=seed)


def test_optuna_turns_to_random_draws_when_its_sampler_repeats_itself() -> None:
    space = tiny_space()
    stuck = StubbornTPE(space, seed=0, random_after=0, max_tries=30)
    assert len(run(stuck, 3, 4)) == 1  # after the first arch, only duplicates: exhausted
    freed = StubbornTPE(space, seed=0, random_after=5, max_tries=30)
    proposed = run(freed, 3, 4)
    assert len(proposed) == 12 and len({a.key() for a in proposed}) == 12
    # at most `random_after` refused draws before each accepted one, plus the first arch
    assert len(freed.study.trials) <= 12 * (5 + 1)
    again = StubbornTPE(space, seed=0, random_after=5, max_tries=30)
    assert [a.key() for a in run(again, 3, 4)] == [a.key() for a in proposed]


@pytest.mark.parametrize(
    ("options", "population"),
    [
        ({}, 50),
        ({"budget": 300}, 20),
        ({"budget": 30}, 4),
        ({"budget": 300, "population_size": 8}, 8),
    ],
)
def test_nsga2_sizes_its_population_to_the_budget(options: dict, population: int) -> None:
    """The search passes its budget: 15 generations fit it unless a population is given."""
    strategy = get_strategy("optuna-nsga2")(tiny_space(), objectives=("loss", "size"), **options)
    strategy.ask(1)
    assert strategy.population() == population
    assert strategy.study.sampler._population_size == population
