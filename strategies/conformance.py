"""Checks every `Strategy` must pass, for the built-ins and for third-party ones alike.

Call `check_strategy(MyStrategy, **options)` (or a registered name) from your own tests, or
parametrise over `CHECKS` to see each check fail separately. Each check builds fresh
strategies on `tiny_space()` with `options` and a synthetic objective, and raises
AssertionError saying what broke: proposals outside the space or repeated, work done in the
constructor, seeds that do not reproduce, a resume (through JSON) that does not continue
identically, ask/tell chunking that changes proposals, constraints not respected, failed
evaluations or several objectives mishandled, bad tells accepted.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

from automoe.arch import ArchConfig
from automoe.errors import AutomoeError
from automoe.space import SearchSpace
from automoe.strategies.base import Feasibility, Strategy
from automoe.strategies.pareto import dominates
from automoe.strategies.registry import get_strategy

Check = Callable[..., None]


def _side(layers: list[int], **extra: list[int]) -> dict[str, list[int]]:
    return {"embed_dim": [8, 16], "layers": layers, "ffn_dim": [8, 16], **extra}


TINY_SPACE: dict[str, Any] = {
    "name": "conformance",
    "qkv_dim": 8,
    "max_experts": 2,
    "fractional_experts": True,
    "identity_experts": True,
    "encoder": _side([1, 2], heads=[1, 2], experts=[1, 2], top_k=[1, 2]),
    "decoder": _side(
        [1, 2],
        self_heads=[1, 2],
        cross_heads=[1, 2],
        cross_layers=[1, 2],
        experts=[1, 2],
        top_k=[1, 2],
    ),
}


def tiny_space() -> SearchSpace:
    """A space of about 10^8 architectures with every kind of gene: conditional
    layers and experts, identity experts, top_k and cross_layers that depend on other genes."""
    return SearchSpace.from_dict(TINY_SPACE)


def size(arch: ArchConfig) -> int:
    """A cost proxy: total expert width plus embedding width per layer."""
    widths = sum(sum(layer) for layer in arch.encoder_ffn_dims + arch.decoder_ffn_dims)
    return (
        widths
        + arch.encoder_embed_dim * arch.encoder_layers
        + arch.decoder_embed_dim * arch.decoder_layers
    )


def loss(arch: ArchConfig) -> float:
    """A smooth synthetic loss: better with wider embeddings, experts near width 12, and
    balanced depths."""
    widths = [w for layer in arch.encoder_ffn_dims + arch.decoder_ffn_dims for w in layer]
    spread = sum((w - 12) ** 2 for w in widths) / len(widths) / 16
    embeds = 16 / arch.encoder_embed_dim + 16 / arch.decoder_embed_dim
    return spread + embeds + 0.3 * abs(arch.encoder_layers - arch.decoder_layers)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _build(
    cls: type[Strategy],
    options: dict[str, Any],
    *,
    objectives: tuple[str, ...] = ("loss",),
    seed: int = 0,
    is_feasible: Feasibility | None = None,
    space: SearchSpace | None = None,
) -> Strategy:
    return cls(space or tiny_space(), objectives, seed=seed, is_feasible=is_feasible, **options)


def _values(strategy: Strategy, arch: ArchConfig) -> tuple[float, ...]:
    measures = {"loss": loss(arch), "size": float(size(arch))}
    return tuple(measures[name] for name in strategy.objectives)


def _run(
    strategy: Strategy,
    rounds: int,
    batch: int = 3,
    evaluate: Callable[[ArchConfig], Any] | None = None,
) -> list[list[ArchConfig]]:
    """Ask/tell `rounds` times; the proposals of each round."""
    proposals = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        if not archs:
            break
        proposals.append(archs)
        strategy.tell(archs, [(evaluate or (lambda a: _values(strategy, a)))(a) for a in archs])
    return proposals


def _is_json(value: Any) -> bool:
    """Only plain JSON types (no numpy scalars, tuples or other subclasses)."""
    if type(value) is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    if type(value) is list:
        return all(_is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def check_constructor_stores_only(cls: type[Strategy], **options: Any) -> None:
    """The constructor stores its arguments and does nothing else (not even check them)."""

    class CountingSpace(SearchSpace):
        calls = 0

        def sample(self, rng: random.Random) -> ArchConfig:
            CountingSpace.calls += 1
            return super().sample(rng)

    space = CountingSpace(TINY_SPACE)

    def feasible(arch: ArchConfig) -> bool:
        return True

    strategy = cls(space, ("loss",), seed=7, is_feasible=feasible, **options)
    _expect(CountingSpace.calls == 0, "the constructor sampled the space")
    stored = (strategy.space, strategy.objectives, strategy.seed, strategy.is_feasible)
    _expect(
        stored == (space, ("loss",), 7, feasible), "the constructor did not store its arguments"
    )
    _expect(strategy.options == options, "the constructor did not store its options as given")
    lazy = cls(space, ("loss",), no_such_option=1, **options)
    try:
        lazy.ask(1)
    except AutomoeError as err:
        _expect("no_such_option" in str(err), f"unknown option error does not name it: {err}")
    else:
        raise AssertionError("an unknown option was accepted")


def check_valid_new_proposals(cls: type[Strategy], **options: Any) -> None:
    """Proposals lie in the space, never repeat, never exceed n; tells land in history."""
    strategy = _build(cls, options)
    space = tiny_space()
    seen: set[str] = set()
    for archs in _run(strategy, 8, batch=4):
        _expect(len(archs) <= 4, f"ask(4) returned {len(archs)} architectures")
        for arch in archs:
            _expect(space.contains(arch), f"proposal outside the space: {arch}")
            _expect(arch.key() not in seen, f"architecture proposed twice: {arch}")
            seen.add(arch.key())
    _expect(len(strategy.history) == len(seen), "history does not hold every told result")
    _expect(not strategy.pending, "pending architectures remain after telling them all")
    best = strategy.best()
    lowest = min(r.values for r in strategy.history)  # type: ignore[type-var]
    _expect(best is not None and best.values == lowest, "best() is not the lowest loss told")


def check_seed_reproduces(cls: type[Strategy], **options: Any) -> None:
    """The same seed and the same tells give the same proposals."""
    first = _run(_build(cls, options, seed=3), 6)
    second = _run(_build(cls, options, seed=3), 6)
    _expect(first == second, "two runs with seed 3 proposed different architectures")


def check_resume(cls: type[Strategy], **options: Any) -> None:
    """A strategy saved (with asks pending) and loaded through JSON continues identically."""
    original = _build(cls, options, seed=5)
    _run(original, 3)
    pending = original.ask(2)
    state = original.state_dict()
    _expect(_is_json(state), "state_dict() holds values that are not plain JSON types")
    resumed = _build(cls, options, seed=5)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    _expect(resumed.pending == pending, "the resumed strategy lost its pending architectures")
    for strategy in (original, resumed):
        strategy.tell(pending, [_values(strategy, a) for a in pending])
    _expect(_run(original, 4) == _run(resumed, 4), "the resumed strategy proposed differently")
    _expect(original.history == resumed.history, "the resumed strategy has another history")


def check_chunking(cls: type[Strategy], **options: Any) -> None:
    """ask(6) proposes what ask(2), ask(1), ask(3) do; telling at once or in parts (same
    order) leads to the same next proposals."""
    whole, parts = _build(cls, options), _build(cls, options)
    archs = whole.ask(6)
    split = parts.ask(2) + parts.ask(1) + parts.ask(3)
    _expect(archs == split, "proposals depend on how asks are chunked")
    values = [_values(whole, a) for a in archs]
    whole.tell(archs, values)
    parts.tell(archs[:2], values[:2])
    parts.tell(archs[2:], values[2:])
    _expect(whole.ask(4) == parts.ask(4), "proposals depend on how tells are chunked")


def check_constraint_respected(cls: type[Strategy], **options: Any) -> None:
    """No proposal breaks `is_feasible`; told violations are accepted."""
    bound = size(tiny_space().smallest()) + 40

    def feasible(arch: ArchConfig) -> bool:
        return size(arch) <= bound

    strategy = _build(cls, options, is_feasible=feasible)
    for _ in range(5):
        archs = strategy.ask(3)
        if not archs:
            break
        _expect(all(feasible(a) for a in archs), "a proposal breaks is_feasible")
        violations = [(size(a) - bound, a.decoder_layers - 1.5) for a in archs]
        strategy.tell(archs, [_values(strategy, a) for a in archs], violations)
    _expect(bool(strategy.history), "nothing was proposed under a satisfiable constraint")
    best = strategy.best()
    _expect(best is None or best.feasible, "best() returned an infeasible result")


def check_impossible_constraint(cls: type[Strategy], **options: Any) -> None:
    """A constraint nothing passes raises AutomoeError saying so, instead of looping."""
    strategy = _build(cls, {**options, "max_tries": 25}, is_feasible=lambda arch: False)
    try:
        strategy.ask(2)
    except AutomoeError as err:
        _expect("impossible" in str(err), f"the error does not say why: {err}")
    else:
        raise AssertionError("an impossible constraint did not raise AutomoeError")


def check_failed_evaluations(cls: type[Strategy], **options: Any) -> None:
    """NaN/None results are recorded as failures, never proposed again, never best."""
    strategy = _build(cls, options)
    failures = iter([math.nan, None])

    def evaluate(arch: ArchConfig) -> Any:
        return next(failures, None) if arch.encoder_embed_dim == 8 else (loss(arch),)

    proposals = _run(strategy, 6, evaluate=evaluate)
    keys = [a.key() for archs in proposals for a in archs]
    _expect(len(keys) == len(set(keys)), "a failed architecture was proposed again")
    failed = [r for r in strategy.history if r.failed]
    _expect(all(r.values is None for r in failed), "a failed evaluation kept values")
    best = strategy.best()
    _expect(best is None or not best.failed, "best() returned a failed evaluation")


def check_multi_objective(cls: type[Strategy], **options: Any) -> None:
    """Two objectives: proposals stay valid and front() is mutually non-dominated."""
    strategy = _build(cls, options, objectives=("loss", "size"))
    _run(strategy, 5)
    front = strategy.front()
    _expect(bool(front), "no Pareto front after five rounds")
    for a in front:
        _expect(
            not any(dominates(b.values, a.values) for b in strategy.history if b.feasible),  # type: ignore[arg-type]
            "front() holds a dominated result",
        )


def check_bad_tells(cls: type[Strategy], **options: Any) -> None:
    """Telling what was not proposed, twice, or with the wrong shape raises AutomoeError."""
    strategy = _build(cls, options)
    archs = strategy.ask(2)
    stranger = next(a for a in (tiny_space().largest(), tiny_space().smallest()) if a not in archs)
    bad: list[Callable[[], None]] = [
        lambda: strategy.tell([stranger], [(1.0,)]),
        lambda: strategy.tell(archs[:1], [(1.0, 2.0)]),
        lambda: strategy.tell(archs, [(1.0,)]),
        lambda: strategy.tell([archs[0], archs[0]], [(1.0,), (1.0,)]),
    ]
    for attempt in bad:
        try:
            attempt()
        except AutomoeError:
            continue
        raise AssertionError("a malformed tell was accepted")
    strategy.tell(archs, [(1.0,)] * len(archs))


def check_exhaustion(cls: type[Strategy], **options: Any) -> None:
    """On a space of eight architectures the strategy runs dry instead of repeating itself."""
    data = {**TINY_SPACE, "identity_experts": False}
    data["encoder"] = {**_side([1], heads=[1], experts=[1], top_k=[1]), "embed_dim": [8]}
    one = {key: [1] for key in ("self_heads", "cross_heads", "cross_layers", "experts", "top_k")}
    data["decoder"] = _side([1], **one)
    space = SearchSpace.from_dict(data)
    strategy = _build(cls, {**options, "max_tries": 40}, space=space)
    proposals = _run(strategy, 8, batch=3)
    keys = {a.key() for archs in proposals for a in archs}
    _expect(len(keys) == sum(map(len, proposals)) <= space.size(), "proposals repeat")


CHECKS: tuple[Check, ...] = (
    check_constructor_stores_only,
    check_valid_new_proposals,
    check_seed_reproduces,
    check_resume,
    check_chunking,
    check_constraint_respected,
    check_impossible_constraint,
    check_failed_evaluations,
    check_multi_objective,
    check_bad_tells,
    check_exhaustion,
)


def check_strategy(strategy: str | type[Strategy], **options: Any) -> None:
    """Run every check on a strategy class (or registered name) built with `options`."""
    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    for check in CHECKS:
        check(cls, **options)
