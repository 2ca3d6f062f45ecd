"""Checks every `Strategy` must pass, for the built-ins and for third-party ones alike.

Call `check_strategy(MyStrategy, **options)` (or a registered name) from your own tests, or
parametrise over `CHECKS` to see each check fail separately. Each check builds fresh
strategies on `tiny_space()` with `options`, fixed seeds and a synthetic objective computed
from the architecture, and raises AssertionError saying what broke: proposals outside the
space, repeated or more than asked; work done in the constructor; a seed that does not
reproduce, or seeds that do not matter; a resume through JSON (several, with asks pending and
after tells, up to the end of the run) whose proposals or final `state_dict` differ from an
uninterrupted run's; ask/tell chunking that changes proposals; proposals that break
`is_feasible`; told losses, violations or any one objective that do not change what is
proposed; failed evaluations or malformed tells mishandled; a strategy that stops proposing
before it is `done` or the space is exhausted.

A strategy that ignores results by design declares `uses_feedback = False` (random search
does); the feedback checks then require that what it is told changes nothing. Pass options
small enough that feedback shows within `FEEDBACK_ROUNDS` asks of three (e.g. a population of
8 for evolution, 5 startup trials for TPE) and that runs of `RUN_ROUNDS` asks cross the
strategy's phases (evolution's generations). Every check runs under `TIME_LIMIT`, so a
strategy that hangs fails the check instead of stalling the suite.
"""

from __future__ import annotations

import functools
import json
import math
import random
import signal
import threading
from collections.abc import Callable
from typing import Any

from automoe.errors import AutomoeError
from automoe.space import ArchConfig, SearchSpace
from automoe.strategies.base import Feasibility, Strategy
from automoe.strategies.pareto import dominates
from automoe.strategies.registry import get_strategy

Check = Callable[..., None]
Feedback = Callable[[ArchConfig], tuple[Any, Any]]
"""What a check tells about an architecture: its objective values and its violations."""

TIME_LIMIT = 60.0
"""Seconds one check may run; the checks take a few seconds for the built-in strategies."""

FEEDBACK_ROUNDS = 16
"""Asks of three within which other feedback must lead to other proposals. Nevergrad, for one,
spends its first 15 multi-objective tells setting the bounds of its hypervolume."""

RUN_ROUNDS = 10
"""Asks of three in the long runs of `check_resume` and `check_keeps_proposing`. Evolution with
population 8 and 6 children a generation ends its generations after rounds 2, 4, 6 and 8."""
RESUME_PENDING = (1, 4, 7)
"""Rounds after whose ask a strategy is saved and reloaded, with the asks still pending."""
RESUME_TOLD = (2, 6)
"""Rounds after whose tell a strategy is saved and reloaded."""


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


class _OutOfTime(BaseException):
    """Raised into a check by SIGALRM: a BaseException, so the strategy's own `except
    Exception` cannot swallow it."""


def _within_time_limit(check: Check) -> Check:
    """`check`, failing with AssertionError when it runs longer than `TIME_LIMIT`.

    On the main thread of a POSIX system with no alarm pending (pytest's case), a SIGALRM timer
    raises into the check, which stops even a `while True` loop in `_propose` where it runs.
    Elsewhere (Windows, another thread, an alarm already set, e.g. by pytest-timeout) the check
    runs in a daemon thread and is abandoned after the time limit: it fails on time, but a loop
    keeps running in the background. Either way an exception that is not an AssertionError
    (the strategy crashed) becomes one that names it.
    """

    @functools.wraps(check)
    def limited(cls: type[Strategy], **options: Any) -> None:
        limit = TIME_LIMIT
        late = (
            f"the check did not finish within {limit:g} s: the strategy hangs (an endless "
            "loop in _propose?) or is far too slow for a tiny space"
        )
        try:
            if (
                hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread()
                and signal.getitimer(signal.ITIMER_REAL)[0] == 0
            ):
                _with_alarm(lambda: check(cls, **options), limit)
            else:
                _in_thread(lambda: check(cls, **options), limit)
        except _OutOfTime:
            raise AssertionError(late) from None
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(f"the strategy raised {type(err).__name__}: {err}") from err

    return limited


def _with_alarm(run: Callable[[], None], limit: float) -> None:
    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _in_thread(run: Callable[[], None], limit: float) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as err:  # handed to the caller below
            errors.append(err)

    worker = threading.Thread(target=target, name="conformance-check", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise _OutOfTime
    if errors:
        raise errors[0]


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


def _scores(objectives: tuple[str, ...], negate: str = "") -> Feedback:
    """Feedback of each objective's synthetic measure (the `negate`d one turned around, so
    the best becomes the worst), without violations."""

    def feedback(arch: ArchConfig) -> tuple[Any, Any]:
        measures = {"loss": loss(arch), "size": float(size(arch))}
        return tuple(-measures[o] if o == negate else measures[o] for o in objectives), None

    return feedback


def _tell(strategy: Strategy, archs: list[ArchConfig], feedback: Feedback) -> None:
    told = [feedback(arch) for arch in archs]
    strategy.tell(archs, [values for values, _ in told], [row for _, row in told])


def _run(
    strategy: Strategy, rounds: int, batch: int = 3, feedback: Feedback | None = None
) -> list[list[ArchConfig]]:
    """Ask/tell `rounds` times (fewer if an ask comes back empty); the proposals of each."""
    feedback = feedback or _scores(tuple(strategy.objectives))
    proposals = []
    for _ in range(rounds):
        archs = strategy.ask(batch)
        if not archs:
            break
        proposals.append(archs)
        _tell(strategy, archs, feedback)
    return proposals


def _diverge(first: Strategy, second: Strategy, one: Feedback, other: Feedback) -> bool:
    """Whether `first` told `one` and `second` told `other` propose differently within
    `FEEDBACK_ROUNDS` asks of three (run side by side, stopping at the first difference)."""
    for _ in range(FEEDBACK_ROUNDS):
        archs = first.ask(3)
        if archs != second.ask(3):
            return True
        if not archs:
            return False
        _tell(first, archs, one)
        _tell(second, archs, other)
    return False


def _expect_feedback(
    cls: type[Strategy], build: Callable[[], Strategy], one: Feedback, other: Feedback, what: str
) -> None:
    """Proposals differ when `what` (telling `other` instead of `one`), unless the class
    declares `uses_feedback = False`: then they must not."""
    differs = _diverge(build(), build(), one, other)
    if cls.uses_feedback:
        _expect(
            differs,
            f"proposals stay the same when {what} (within {3 * FEEDBACK_ROUNDS} proposals): "
            "the strategy ignores it; declare uses_feedback = False if that is by design, or "
            "pass options that let results matter sooner",
        )
    else:
        _expect(not differs, f"declares uses_feedback = False, yet proposals change when {what}")


def _is_json(value: Any) -> bool:
    """Only plain JSON types (no numpy scalars, tuples or other subclasses)."""
    if type(value) is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    if type(value) is list:
        return all(_is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


@_within_time_limit
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
    try:
        lazy = cls(space, ("loss",), no_such_option=1, **options)
    except AutomoeError as err:
        raise AssertionError(
            f"the constructor checked its options ({err}); it must only store them and check "
            "them on first use"
        ) from err
    try:
        lazy.ask(1)
    except AutomoeError as err:
        _expect("no_such_option" in str(err), f"unknown option error does not name it: {err}")
    else:
        raise AssertionError("an unknown option was accepted")


@_within_time_limit
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


@_within_time_limit
def check_seeds(cls: type[Strategy], **options: Any) -> None:
    """The same seed and the same tells give the same proposals; another seed, other ones."""
    first = _run(_build(cls, options, seed=3), 6)
    second = _run(_build(cls, options, seed=3), 6)
    _expect(first == second, "two runs with seed 3 proposed different architectures")
    scores = _scores(("loss",))
    _expect(
        _diverge(_build(cls, options, seed=3), _build(cls, options, seed=4), scores, scores),
        "seeds 3 and 4 proposed the same architectures: the strategy ignores its seed",
    )


def _reloaded(cls: type[Strategy], options: dict[str, Any], saved: Strategy) -> Strategy:
    """A fresh strategy loaded with `saved`'s state through JSON."""
    state = saved.state_dict()
    _expect(_is_json(state), "state_dict() holds values that are not plain JSON types")
    resumed = _build(cls, options, seed=5)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    _expect(resumed.pending == saved.pending, "the resumed strategy lost its pending architectures")
    _expect(resumed.history == saved.history, "the resumed strategy lost its history")
    return resumed


def _long_run(
    cls: type[Strategy], options: dict[str, Any], resume: bool
) -> tuple[list[ArchConfig], dict[str, Any], list[tuple[int, str]]]:
    """`RUN_ROUNDS` asks of three (fewer if the strategy runs out), reloaded after the
    rounds `RESUME_PENDING` and `RESUME_TOLD` name if `resume`: the proposals, the final state
    and where each resume happened (after how many proposals, how)."""
    strategy = _build(cls, options, seed=5)
    scores = _scores(("loss",))
    proposals: list[ArchConfig] = []
    resumes: list[tuple[int, str]] = []
    for round_ in range(RUN_ROUNDS):
        archs = strategy.ask(3)
        if not archs:
            break
        proposals += archs
        if resume and round_ in RESUME_PENDING:
            strategy = _reloaded(cls, options, strategy)
            resumes.append((len(proposals), f"{len(archs)} pending"))
        _tell(strategy, archs, scores)
        if resume and round_ in RESUME_TOLD:
            strategy = _reloaded(cls, options, strategy)
            resumes.append((len(proposals), "all told"))
    return proposals, json.loads(json.dumps(strategy.state_dict())), resumes


def _differences(one: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The fields of two `state_dict`s (and of their `extra`) that differ."""
    fields = sorted(
        k for k in one.keys() | other.keys() if k != "extra" and one.get(k) != other.get(k)
    )
    extra, more = one.get("extra", {}), other.get("extra", {})
    return fields + sorted(
        f"extra[{k!r}]" for k in extra.keys() | more.keys() if extra.get(k) != more.get(k)
    )


@_within_time_limit
def check_resume(cls: type[Strategy], **options: Any) -> None:
    """A strategy saved and reloaded through JSON again and again, with asks pending and after
    tells, proposes exactly what an uninterrupted run does, up to the end of the run, and ends
    in the same `state_dict`. Entries of the state's `extra` that differ between two
    uninterrupted runs are not compared (Optuna's journal holds clock times and random worker
    ids)."""
    plain, state, _ = _long_run(cls, options, resume=False)
    again, other, _ = _long_run(cls, options, resume=False)
    _expect(plain == again, "two runs with seed 5 proposed different architectures")
    volatile = [field for field in _differences(state, other) if field.startswith("extra[")]
    unsteady = [field for field in _differences(state, other) if field not in volatile]
    _expect(not unsteady, f"two runs with seed 5 end with different state_dict {unsteady}")
    resumed, final, resumes = _long_run(cls, options, resume=True)
    if resumed != plain:
        first = next(
            (i for i, (a, b) in enumerate(zip(plain, resumed, strict=False)) if a != b),
            min(len(plain), len(resumed)),
        )
        where = ", ".join(f"{count} ({how})" for count, how in resumes if count <= first)
        raise AssertionError(
            f"the resumed strategy (reloaded after proposals {where}) proposed differently "
            f"from proposal {first + 1} on: {len(resumed)} proposals in all where an "
            f"uninterrupted run made {len(plain)}"
        )
    changed = [field for field in _differences(state, final) if field not in volatile]
    _expect(
        not changed,
        f"the resumed strategy ends with another state_dict than an uninterrupted run: {changed}",
    )


@_within_time_limit
def check_chunking(cls: type[Strategy], **options: Any) -> None:
    """ask(6) proposes what ask(2), ask(1), ask(3) do; telling at once or in parts (same
    order) leads to the same next proposals."""
    whole, parts = _build(cls, options), _build(cls, options)
    archs = whole.ask(6)
    split = parts.ask(2) + parts.ask(1) + parts.ask(3)
    _expect(archs == split, "proposals depend on how asks are chunked")
    values = [_scores(("loss",))(a)[0] for a in archs]
    whole.tell(archs, values)
    parts.tell(archs[:2], values[:2])
    parts.tell(archs[2:], values[2:])
    _expect(whole.ask(4) == parts.ask(4), "proposals depend on how tells are chunked")


@_within_time_limit
def check_feedback(cls: type[Strategy], **options: Any) -> None:
    """Told losses change what is proposed: telling each loss negated (the best architectures
    made the worst) leads to other proposals."""
    _expect_feedback(
        cls,
        lambda: _build(cls, options),
        _scores(("loss",)),
        _scores(("loss",), negate="loss"),
        "every told loss is negated",
    )


@_within_time_limit
def check_constraint_respected(cls: type[Strategy], **options: Any) -> None:
    """No proposal breaks `is_feasible`; told violations are accepted and change what is
    proposed: marking the architectures with the lowest losses as violating leads to other
    proposals."""
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
        strategy.tell(archs, [(loss(a),) for a in archs], violations)
    _expect(bool(strategy.history), "nothing was proposed under a satisfiable constraint")
    best = strategy.best()
    _expect(best is None or best.feasible, "best() returned an infeasible result")

    def within(arch: ArchConfig) -> tuple[Any, Any]:
        return (loss(arch),), (-1.0,)

    def marked(arch: ArchConfig) -> tuple[Any, Any]:  # wide embeddings: the lowest losses
        return (loss(arch),), (1.0 if arch.encoder_embed_dim == 16 else -1.0,)

    _expect_feedback(
        cls,
        lambda: _build(cls, options),
        within,
        marked,
        "architectures with encoder embed_dim 16 are told as violating a constraint",
    )


@_within_time_limit
def check_impossible_constraint(cls: type[Strategy], **options: Any) -> None:
    """A constraint nothing passes raises AutomoeError saying so, instead of looping."""
    strategy = _build(cls, {**options, "max_tries": 25}, is_feasible=lambda arch: False)
    try:
        strategy.ask(2)
    except AutomoeError as err:
        _expect("impossible" in str(err), f"the error does not say why: {err}")
    else:
        raise AssertionError("an impossible constraint did not raise AutomoeError")


@_within_time_limit
def check_failed_evaluations(cls: type[Strategy], **options: Any) -> None:
    """NaN/None results are recorded as failures, never proposed again, never best."""
    strategy = _build(cls, options)
    outcomes = iter([math.nan, None])
    failed: set[str] = set()

    def feedback(arch: ArchConfig) -> tuple[Any, Any]:
        if arch.encoder_embed_dim == 16:
            return (loss(arch),), None
        failed.add(arch.key())
        return next(outcomes, None), None

    proposals = _run(strategy, 6, feedback=feedback)
    keys = [a.key() for archs in proposals for a in archs]
    _expect(len(keys) == len(set(keys)), "a failed architecture was proposed again")
    recorded = {r.arch.key() for r in strategy.history if r.failed}
    _expect(
        recorded == failed,
        f"{len(failed)} evaluations were told as failed (NaN or None) but history records "
        f"{len(recorded)} failures",
    )
    best = strategy.best()
    _expect(best is None or not best.failed, "best() returned a failed evaluation")


@_within_time_limit
def check_multi_objective(cls: type[Strategy], **options: Any) -> None:
    """Two objectives: each one changes what is proposed (telling it negated leads to other
    proposals), and front() is mutually non-dominated."""
    objectives = ("loss", "size")
    for name in objectives:
        _expect_feedback(
            cls,
            lambda: _build(cls, options, objectives=objectives),
            _scores(objectives),
            _scores(objectives, negate=name),
            f"objective {name!r} alone is told negated",
        )
    strategy = _build(cls, options, objectives=objectives)
    _run(strategy, 4)
    front = strategy.front()
    _expect(bool(front), "no Pareto front after four rounds")
    for a in front:
        _expect(
            not any(dominates(b.values, a.values) for b in strategy.history if b.feasible),  # type: ignore[arg-type]
            "front() holds a dominated result",
        )


@_within_time_limit
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


@_within_time_limit
def check_keeps_proposing(cls: type[Strategy], **options: Any) -> None:
    """With every proposal told, each ask returns something until the strategy is `done`: on a
    space of 10^8 architectures an empty ask means the budget is spent."""
    strategy = _build(cls, options)
    scores = _scores(("loss",))
    proposed = 0
    for _ in range(RUN_ROUNDS):
        archs = strategy.ask(3)
        if not archs:
            _expect(
                strategy.done,
                f"the strategy stopped proposing after {proposed} architectures though nothing "
                "is pending, done is False and the space holds 10^8",
            )
            return
        proposed += len(archs)
        _tell(strategy, archs, scores)


@_within_time_limit
def check_exhaustion(cls: type[Strategy], **options: Any) -> None:
    """On a space of eight architectures the strategy proposes each once (unless done first)
    and then runs dry, instead of repeating itself or giving up early."""
    data = {**TINY_SPACE, "identity_experts": False}
    data["encoder"] = {**_side([1], heads=[1], experts=[1], top_k=[1]), "embed_dim": [8]}
    one = {key: [1] for key in ("self_heads", "cross_heads", "cross_layers", "experts", "top_k")}
    data["decoder"] = _side([1], **one)
    space = SearchSpace.from_dict(data)
    strategy = _build(cls, {**options, "max_tries": 60}, space=space)
    proposals = [a for archs in _run(strategy, 8) for a in archs]
    keys = {a.key() for a in proposals}
    _expect(len(keys) == len(proposals), "proposals repeat")
    _expect(
        len(keys) == space.size() or strategy.done,
        f"the strategy ran dry after {len(keys)} of the {space.size()} architectures of a tiny "
        "space (max_tries 60) though done is False",
    )


CHECKS: tuple[Check, ...] = (
    check_constructor_stores_only,
    check_valid_new_proposals,
    check_seeds,
    check_resume,
    check_chunking,
    check_feedback,
    check_constraint_respected,
    check_impossible_constraint,
    check_failed_evaluations,
    check_multi_objective,
    check_bad_tells,
    check_keeps_proposing,
    check_exhaustion,
)


def check_strategy(strategy: str | type[Strategy], **options: Any) -> None:
    """Run every check on a strategy class (or registered name) built with `options`; the
    first that fails raises AssertionError naming the class and the check."""
    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    for check in CHECKS:
        try:
            check(cls, **options)
        except AssertionError as err:
            raise AssertionError(f"{cls.__name__} fails {check.__name__}: {err}") from err
