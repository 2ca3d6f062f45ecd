"""Analytical FLOPs and parameter counts of a sub-network, computed from its `ArchConfig` alone.

Search scores thousands of candidates, so cost comes from closed-form formulas rather than from
building and profiling each model. The reference workload is the papers' one: a single
teacher-forced forward pass over a `src_len`-token source and a `tgt_len`-token target, batch 1.

Counting convention (that of `torchprofile` and `torch.utils.flop_counter`): FLOPs are 2 per
multiply-add of matrix products only, i.e. every linear projection (biases not counted), the
attention score product QK^T and the attention-weighted sum of V, the MoE router and the chosen
experts' two matmuls, and the output projection. Biases, softmax, LayerNorm, ReLU, residual adds,
gate scaling, embedding lookups, positional sinusoids and dropout are ignored: together they are
a few per mille of the total. Attention products are counted dense, causal half included, since
dense kernels compute them. Heads do not change any count: they re-partition the fixed
`qkv_dim`.

MoE layers are counted by their active FLOPs: the router plus the experts a token visits, either
weighted by the fraction of tokens the router sends to each expert (the expected cost) or taking
the `top_k` widest experts (the worst case). Identity experts (width 0) cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from automoe.data.batching import Batch
from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.supernet.model import Transformer
from automoe.supernet.modes import inference

LayerKey = tuple[str, int]
ExpertFractions = Mapping[LayerKey, Sequence[float]]
"""Per-layer share of tokens each expert receives, keyed ("encoder" | "decoder", layer index);
a layer's shares sum to its top_k, since every token is counted once per chosen expert."""

_SIDES = ("encoder", "decoder")
_FRACTION_TOLERANCE = 1e-6


class ExpertFractionsError(AutomoeError, ValueError):
    """Expert fractions that do not fit the architecture, or that cannot be measured."""


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs of one reference sentence pair; `worst_case_*` routes to the widest experts.

    `without_output` drops the output projection, the convention the papers report.
    """

    src_len: int
    tgt_len: int
    encoder: float
    decoder: float
    output_projection: float
    worst_case_encoder: float
    worst_case_decoder: float

    @property
    def total(self) -> float:
        return self.encoder + self.decoder + self.output_projection

    @property
    def without_output(self) -> float:
        return self.encoder + self.decoder

    @property
    def worst_case_total(self) -> float:
        return self.worst_case_without_output + self.output_projection

    @property
    def worst_case_without_output(self) -> float:
        return self.worst_case_encoder + self.worst_case_decoder

    def to_dict(self) -> dict[str, float]:
        """Stored and derived figures, ready for JSON."""
        return {
            **asdict(self),
            "total": self.total,
            "without_output": self.without_output,
            "worst_case_total": self.worst_case_total,
            "worst_case_without_output": self.worst_case_without_output,
        }


@dataclass(frozen=True)
class ParamsReport:
    """Parameter counts; `without_embeddings` is the papers' convention.

    `active_per_token` counts the non-embedding weights one token can touch (all attention and
    LayerNorm weights, routers and the `top_k` widest experts of each layer); the expected
    variant weights every expert by the share of tokens it receives.
    """

    total: int
    embeddings: int
    active_per_token: int
    expected_active_per_token: float

    @property
    def without_embeddings(self) -> int:
        return self.total - self.embeddings

    def to_dict(self) -> dict[str, float]:
        """Stored and derived figures, ready for JSON."""
        return {**asdict(self), "without_embeddings": self.without_embeddings}


@dataclass(frozen=True)
class _Layer:
    side: str
    index: int
    embed_dim: int
    widths: tuple[int, ...]
    top_k: int
    routing: str
    sentence_dim: int

    @property
    def key(self) -> LayerKey:
        return (self.side, self.index)


def _layers(arch: ArchConfig) -> Iterator[_Layer]:
    for side in _SIDES:
        dim = getattr(arch, f"{side}_embed_dim")
        widths = getattr(arch, f"{side}_ffn_dims")
        top_k = getattr(arch, f"{side}_top_k")
        routing = getattr(arch, f"{side}_routing")
        pooled = arch.encoder_embed_dim  # sentence routers read the source sentence
        for i, (w, k, r) in enumerate(zip(widths, top_k, routing, strict=True)):
            yield _Layer(side, i, dim, w, k, r, pooled)


def _fractions(
    arch: ArchConfig, expert_fractions: ExpertFractions | None
) -> dict[LayerKey, tuple[float, ...]]:
    """Checked fractions for every layer; None means uniform routing (top_k / experts each).

    A given mapping must cover every MoE layer (dense layers may be left out): silently falling
    back to uniform would hide fractions measured on another architecture.
    """
    layers = list(_layers(arch))
    if expert_fractions is None:
        return {lay.key: (lay.top_k / len(lay.widths),) * len(lay.widths) for lay in layers}
    unknown = set(expert_fractions) - {lay.key for lay in layers}
    if unknown:
        raise ExpertFractionsError(
            f"expert fractions name layers the architecture does not have: {sorted(unknown)}"
        )
    out = {}
    for lay in layers:
        e, k = len(lay.widths), lay.top_k
        if lay.key not in expert_fractions:
            if e > 1:
                raise ExpertFractionsError(f"expert fractions are missing {lay.key} ({e} experts)")
            out[lay.key] = (1.0,)
            continue
        values = tuple(float(f) for f in expert_fractions[lay.key])
        if len(values) != e:
            raise ExpertFractionsError(
                f"expert fractions for {lay.key} have {len(values)} entries, "
                f"but the layer has {e} experts"
            )
        tol = _FRACTION_TOLERANCE
        if any(not -tol <= f <= 1 + tol for f in values):
            raise ExpertFractionsError(
                f"expert fractions for {lay.key} must lie in [0, 1], got {list(values)}"
            )
        if not math.isclose(sum(values), k, rel_tol=tol, abs_tol=tol):
            raise ExpertFractionsError(
                f"expert fractions for {lay.key} sum to {sum(values)}, expected top_k = {k}"
            )
        out[lay.key] = values
    return out


def _attention_flops(queries: int, keys: int, query_dim: int, key_dim: int, qkv_dim: int) -> int:
    """Q and output projections on the queries, K and V on the keys, then QK^T and AV."""
    projections = 2 * qkv_dim * (2 * queries * query_dim + 2 * keys * key_dim)
    products = 2 * 2 * queries * keys * qkv_dim
    return projections + products


def _router_flops(lay: _Layer, tokens: int) -> int:
    """A layer's routing cost over `tokens` tokens of one sentence: a token router scores every
    token, a sentence router pools the source once and scores it once, a task router looks up."""
    e = len(lay.widths)
    if e == 1 or lay.routing == "task":
        return 0
    if lay.routing == "sentence":
        return lay.sentence_dim * tokens + 2 * lay.sentence_dim * e
    return tokens * 2 * lay.embed_dim * e


def _router_params(lay: _Layer, modes: tuple[str, ...], num_tasks: int) -> int:
    """Routers an extracted MoE layer holds: one per granularity its architecture uses."""
    e = len(lay.widths)
    if e == 1:
        return 0
    sizes = {
        "task": num_tasks * e,
        "sentence": e * lay.sentence_dim + e,
        "token": e * lay.embed_dim + e,
    }
    return sum(sizes[mode] for mode in modes)


def _worst_widths(lay: _Layer) -> int:
    return sum(sorted(lay.widths, reverse=True)[: lay.top_k])


def count_flops(
    arch: ArchConfig,
    *,
    qkv_dim: int,
    vocab_size: int,
    src_len: int = 30,
    tgt_len: int = 30,
    expert_fractions: ExpertFractions | None = None,
) -> FlopsReport:
    """Active FLOPs of one teacher-forced forward pass over a `src_len`/`tgt_len` pair.

    The decoder's share includes its cross-attention K/V projections of the encoder outputs
    (they are decoder weights): decoder layer i projects `decoder_cross_layers[i] * src_len`
    positions. `expert_fractions` (e.g. from `routing_fractions`) weights experts by their load.
    """
    if src_len <= 0 or tgt_len <= 0:
        raise ValueError(f"src_len and tgt_len must be positive, got {src_len}, {tgt_len}")
    fractions = _fractions(arch, expert_fractions)
    d_enc, d_dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    attention = {
        "encoder": arch.encoder_layers * _attention_flops(src_len, src_len, d_enc, d_enc, qkv_dim),
        "decoder": 0,
    }
    for cross in arch.decoder_cross_layers:
        attention["decoder"] += _attention_flops(tgt_len, tgt_len, d_dec, d_dec, qkv_dim)
        attention["decoder"] += _attention_flops(tgt_len, cross * src_len, d_dec, d_enc, qkv_dim)
    expected = dict.fromkeys(_SIDES, 0.0)
    worst = dict.fromkeys(_SIDES, 0)
    tokens = {"encoder": src_len, "decoder": tgt_len}
    for lay in _layers(arch):
        n, d = tokens[lay.side], lay.embed_dim
        routed = sum(f * w for f, w in zip(fractions[lay.key], lay.widths, strict=True))
        expected[lay.side] += _router_flops(lay, n) + n * 4 * d * routed
        worst[lay.side] += _router_flops(lay, n) + n * 4 * d * _worst_widths(lay)
    return FlopsReport(
        src_len=src_len,
        tgt_len=tgt_len,
        encoder=float(attention["encoder"] + expected["encoder"]),
        decoder=float(attention["decoder"] + expected["decoder"]),
        output_projection=float(2 * tgt_len * d_dec * vocab_size),
        worst_case_encoder=float(attention["encoder"] + worst["encoder"]),
        worst_case_decoder=float(attention["decoder"] + worst["decoder"]),
    )


def _expert_params(embed_dim: int, width: int) -> int:
    """fc1 and fc2 with biases; an identity expert owns no weights."""
    return 2 * embed_dim * width + width + embed_dim if width else 0


def _attention_params(query_dim: int, key_dim: int, qkv_dim: int) -> int:
    """q/k/v projections into qkv_dim and the output projection back, all with biases."""
    return qkv_dim * (2 * query_dim + 2 * key_dim + 3) + query_dim


def count_params(
    arch: ArchConfig,
    *,
    qkv_dim: int,
    vocab_size: int,
    expert_fractions: ExpertFractions | None = None,
    num_tasks: int = 1,
) -> ParamsReport:
    """Parameters of `extract(model, arch)`, exactly, and the share one token activates.

    `num_tasks` sizes task routers (one logit row per task)."""
    fractions = _fractions(arch, expert_fractions)
    d_enc, d_dec = arch.encoder_embed_dim, arch.decoder_embed_dim
    layer_norms = 2 * (d_enc + d_dec)  # the final encoder and decoder norms
    layer_norms += arch.encoder_layers * 2 * (2 * d_enc)
    layer_norms += arch.decoder_layers * 3 * (2 * d_dec)
    shared = layer_norms
    shared += arch.encoder_layers * _attention_params(d_enc, d_enc, qkv_dim)
    shared += arch.decoder_layers * (
        _attention_params(d_dec, d_dec, qkv_dim) + _attention_params(d_dec, d_enc, qkv_dim)
    )
    all_experts = worst = 0
    expected = 0.0
    for lay in _layers(arch):
        d = lay.embed_dim
        shared += _router_params(lay, arch.routing_modes, num_tasks)
        sizes = [_expert_params(d, w) for w in lay.widths]
        all_experts += sum(sizes)
        worst += sum(sorted(sizes, reverse=True)[: lay.top_k])
        expected += sum(f * s for f, s in zip(fractions[lay.key], sizes, strict=True))
    embeddings = vocab_size * max(d_enc, d_dec)
    return ParamsReport(
        total=embeddings + shared + all_experts,
        embeddings=embeddings,
        active_per_token=shared + worst,
        expected_active_per_token=shared + expected,
    )


def routing_fractions(
    model: Transformer, arch: ArchConfig, batches: Iterable[Batch]
) -> dict[LayerKey, list[float]]:
    """Share of tokens the trained router sends to each expert, measured on calibration batches.

    Runs `model` at `arch` in eval mode (no dropout, no gradients), sums the per-expert token
    counts of every layer over all batches and scales them to sum to the layer's top_k, the
    form `count_flops` and `count_params` take. Dense layers get [1.0].
    """
    layers = list(_layers(arch))
    counts: dict[LayerKey, Tensor] = {}
    device = model.embed.weight.device
    with inference(model):
        for batch in batches:
            batch = batch.to(device)
            out = model.forward_batch(batch, arch)
            for side, stats in (("encoder", out.encoder_stats), ("decoder", out.decoder_stats)):
                for i, st in enumerate(stats):
                    if st is not None:
                        seen = st.expert_counts.to("cpu", torch.int64)
                        key = (side, i)
                        counts[key] = counts[key] + seen if key in counts else seen
    fractions: dict[LayerKey, list[float]] = {}
    for lay in layers:
        if len(lay.widths) == 1:
            fractions[lay.key] = [1.0]
            continue
        layer_counts = counts.get(lay.key)
        if layer_counts is None or int(layer_counts.sum()) == 0:
            raise ExpertFractionsError(
                f"no tokens reached {lay.key}: the calibration batches are empty"
            )
        total = int(layer_counts.sum())
        fractions[lay.key] = [c * lay.top_k / total for c in layer_counts.tolist()]
    return fractions
