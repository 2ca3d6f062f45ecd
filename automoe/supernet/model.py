"""The elastic encoder-decoder Transformer: a SuperNet or a standalone extracted sub-network.

`Transformer(config)` allocates weights for `config.shape` (an `ArchConfig` read as maximum
sizes) and runs any architecture that fits inside it. The SuperNet is built with the search
space's largest shape; `extract` builds one with the shape of a single architecture and copies
the top-left corner of every weight, so both run the very same code.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automoe.data import Batch
from automoe.errors import AutomoeError
from automoe.space import ArchConfig, ArchError
from automoe.supernet.layers import (
    DecoderLayer,
    ElasticLayerNorm,
    EncoderLayer,
    KVCache,
    sinusoid_table,
)
from automoe.supernet.moe import ROUTERS, RoutingContext, RoutingStats

CHECKPOINT_FORMAT = "automoe-model/1"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's modules; weights live in the state dict.

    `task_names` name the task ids (translation pairs, in training order) when known.
    `positional_dim` and `dropout_ref_dim` default to the widest embedding. An extracted model
    keeps its SuperNet's values, so its sinusoids and dropout equal the SuperNet's.
    """

    vocab_size: int
    qkv_dim: int
    shape: ArchConfig
    max_positions: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    capacity_factor: float | None = None
    routers: tuple[str, ...] = ("token",)
    num_tasks: int = 1
    task_names: tuple[str, ...] = ()
    pad_id: int = 0
    positional_dim: int = 0
    dropout_ref_dim: int = 0

    def __post_init__(self) -> None:
        widest = max(self.shape.encoder_embed_dim, self.shape.decoder_embed_dim)
        if self.positional_dim == 0:
            object.__setattr__(self, "positional_dim", widest)
        if self.dropout_ref_dim == 0:
            object.__setattr__(self, "dropout_ref_dim", widest)
        object.__setattr__(self, "routers", tuple(self.routers))
        unknown = [r for r in self.routers if r not in ROUTERS]
        if unknown or not self.routers:
            raise AutomoeError(f"unknown routers {unknown or '[]'}; choices: {list(ROUTERS)}")
        if self.num_tasks < 1:
            raise AutomoeError(f"num_tasks must be at least 1, got {self.num_tasks}")
        object.__setattr__(self, "task_names", tuple(self.task_names))
        if self.task_names and len(self.task_names) != self.num_tasks:
            raise AutomoeError(
                f"task_names {list(self.task_names)} do not match num_tasks {self.num_tasks}"
            )
        if self.positional_dim < widest:
            raise AutomoeError(f"positional_dim {self.positional_dim} is below the width {widest}")
        heads = (
            self.shape.encoder_heads
            + self.shape.decoder_self_heads
            + self.shape.decoder_cross_heads
        )
        for h in heads:
            if self.qkv_dim % h:
                raise AutomoeError(f"{h} heads do not divide qkv_dim {self.qkv_dim}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = self.shape.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)} | {"router"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise AutomoeError(f"unknown model setting(s) {unknown}")
        values = dict(data)
        if "router" in values:  # checkpoints before per-layer routing held one router kind
            values["routers"] = (values.pop("router"),)
        values["shape"] = ArchConfig.from_dict(values["shape"])
        return cls(**values)


@dataclass
class EncoderOutput:
    """Encoder states the decoder may attend to (last layers first-to-last) and their mask."""

    states: list[Tensor]
    padding_mask: Tensor
    stats: list[RoutingStats | None] = field(default_factory=list)
    _memory: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    _pooled: Tensor | None = None

    def pooled(self) -> Tensor:
        """Each source sentence's mean final encoder state: what decoder sentence routers see."""
        if self._pooled is None:
            real = (~self.padding_mask).to(self.states[-1].dtype)
            sums = (self.states[-1] * real[:, :, None]).sum(dim=1)
            self._pooled = sums / real.sum(dim=1, keepdim=True).clamp_min(1.0)
        return self._pooled

    def memory(self, last: int) -> tuple[Tensor, Tensor]:
        """Concatenated states of the last `last` encoder layers and an attention mask."""
        if last not in self._memory:
            states = torch.cat(self.states[-last:], dim=1)
            allowed = (~self.padding_mask).repeat(1, last)[:, None, None, :]
            self._memory[last] = (states, allowed)
        return self._memory[last]

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Reorder or repeat sentences (beam search)."""
        return EncoderOutput(
            [s.index_select(0, index) for s in self.states],
            self.padding_mask.index_select(0, index),
        )


@dataclass
class ModelOutput:
    logits: Tensor
    balance_loss: Tensor
    encoder_stats: list[RoutingStats | None]
    decoder_stats: list[RoutingStats | None]


DecoderCache = list[dict[str, KVCache]]


def _mean_balance_loss(stats: list[RoutingStats | None], like: Tensor) -> Tensor:
    """Average over MoE layers only, so layers with any mix of expert counts combine."""
    losses = [s.balance_loss for s in stats if s is not None]
    if not losses:
        return like.new_zeros(())
    return torch.stack(losses).mean()


class Transformer(nn.Module):
    """Encoder-decoder Transformer with MoE FFNs, run at any architecture inside its shape."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        shape = config.shape
        table_dim = max(shape.encoder_embed_dim, shape.decoder_embed_dim)
        self.embed = nn.Embedding(config.vocab_size, table_dim, padding_idx=config.pad_id)
        nn.init.normal_(self.embed.weight, std=table_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[config.pad_id].zero_()
        table = sinusoid_table(config.max_positions, config.positional_dim)[:, :table_dim]
        self.register_buffer("positions", table, persistent=False)
        layer_settings = dict(
            routers=config.routers,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            capacity_factor=config.capacity_factor,
            num_tasks=config.num_tasks,
        )
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(shape.encoder_embed_dim, config.qkv_dim, dims, **layer_settings)
            for dims in shape.encoder_ffn_dims
        )
        self.encoder_norm = ElasticLayerNorm(shape.encoder_embed_dim)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(
                shape.decoder_embed_dim,
                shape.encoder_embed_dim,
                config.qkv_dim,
                dims,
                **layer_settings,
            )
            for dims in shape.decoder_ffn_dims
        )
        self.decoder_norm = ElasticLayerNorm(shape.decoder_embed_dim)

    @property
    def default_arch(self) -> ArchConfig:
        return self.config.shape

    def task_id(self, name: str) -> int:
        """The task id of a pair such as "en-de", as the model was trained with it."""
        names = self.config.task_names
        if name not in names:
            known = f"its tasks are {list(names)}" if names else "it records no task names"
            raise AutomoeError(f"this model was not trained on {name!r}: {known}")
        return names.index(name)

    def check_arch(self, arch: ArchConfig) -> None:
        """Refuse an arch this model cannot run: wider or deeper than its shape, heads that do
        not split the Q/K/V width evenly, or a routing it holds no router for."""
        problem = arch.fits_in(self.config.shape) or self._heads_problem(arch)
        if problem is None:
            missing = set(arch.encoder_routing + arch.decoder_routing) - {"token"}
            missing -= set(self.config.routers)
            if missing:
                problem = (
                    f"it routes by {sorted(missing)} but the model holds routers "
                    f"{list(self.config.routers)} only"
                )
        if problem is not None:
            raise ArchError(f"architecture does not fit this model: {problem}")

    def _heads_problem(self, arch: ArchConfig) -> str | None:
        qkv = self.config.qkv_dim
        for name in ("encoder_heads", "decoder_self_heads", "decoder_cross_heads"):
            for i, heads in enumerate(getattr(arch, name)):
                if qkv % heads:
                    return (
                        f"{name}[{i}] = {heads} heads do not divide qkv_dim {qkv} "
                        "(use a divisor of it)"
                    )
        return None

    def _dropout(self, dim: int) -> float:
        return self.config.dropout * dim / self.config.dropout_ref_dim

    def _embed(self, tokens: Tensor, dim: int, start: int = 0) -> Tensor:
        x = F.embedding(tokens, self.embed.weight[:, :dim], self.config.pad_id)
        x = x * math.sqrt(dim) + self.positions[start : start + tokens.shape[1], :dim]
        return F.dropout(x, self._dropout(dim), self.training)

    def encode(
        self,
        src_tokens: Tensor,
        src_padding_mask: Tensor,
        arch: ArchConfig | None = None,
        task_ids: Tensor | None = None,
    ) -> EncoderOutput:
        arch = arch or self.default_arch
        self.check_arch(arch)
        d = arch.encoder_embed_dim
        s = src_tokens.shape[1]
        keep = (~src_padding_mask).reshape(-1).nonzero().squeeze(1)
        context = RoutingContext(token_rows=keep // s, task_ids=task_ids)
        mask = (~src_padding_mask)[:, None, None, :]
        dropout = self._dropout(d)
        x = self._embed(src_tokens, d)
        outputs, stats = [], []
        for i in range(arch.encoder_layers):
            x, st = self.encoder_layers[i](
                x,
                mask,
                keep,
                arch.encoder_heads[i],
                arch.encoder_ffn_dims[i],
                arch.encoder_top_k[i],
                context,
                dropout,
                arch.encoder_routing[i],
            )
            outputs.append(x)
            stats.append(st)
        needed = max(arch.decoder_cross_layers)
        states = [self.encoder_norm(h) for h in outputs[-needed:]]
        return EncoderOutput(states, src_padding_mask, stats)

    def decode(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOutput,
        arch: ArchConfig | None = None,
        task_ids: Tensor | None = None,
        cache: DecoderCache | None = None,
        start: int = 0,
    ) -> tuple[Tensor, list[RoutingStats | None]]:
        """Logits for every target position; with `cache`, only the new positions are fed."""
        arch = arch or self.default_arch
        d = arch.decoder_embed_dim
        b, t = prev_output_tokens.shape
        if cache is None:
            tgt_padding = prev_output_tokens.eq(self.config.pad_id)
            keep = (~tgt_padding).reshape(-1).nonzero().squeeze(1)
            rows = keep // t
        else:
            keep = None
            rows = torch.arange(b, device=prev_output_tokens.device).repeat_interleave(t)
            while len(cache) < arch.decoder_layers:
                cache.append({})
        needs_pooled = any(
            m == "sentence" and e > 1
            for m, e in zip(arch.decoder_routing, arch.decoder_experts, strict=True)
        )
        pooled = encoder_out.pooled() if needs_pooled else None
        context = RoutingContext(token_rows=rows, task_ids=task_ids, sentence_states=pooled)
        dropout = self._dropout(d)
        x = self._embed(prev_output_tokens, d, start)
        stats = []
        for i in range(arch.decoder_layers):
            memory, memory_mask = encoder_out.memory(arch.decoder_cross_layers[i])
            x, st = self.decoder_layers[i](
                x,
                memory,
                memory_mask,
                keep,
                arch.decoder_self_heads[i],
                arch.decoder_cross_heads[i],
                arch.decoder_ffn_dims[i],
                arch.decoder_top_k[i],
                context,
                dropout,
                None if cache is None else cache[i],
                arch.decoder_routing[i],
            )
            stats.append(st)
        x = self.decoder_norm(x)
        return F.linear(x, self.embed.weight[:, :d]), stats

    def forward(
        self,
        src_tokens: Tensor,
        src_padding_mask: Tensor,
        prev_output_tokens: Tensor,
        arch: ArchConfig | None = None,
        task_ids: Tensor | None = None,
    ) -> ModelOutput:
        arch = arch or self.default_arch
        enc = self.encode(src_tokens, src_padding_mask, arch, task_ids)
        logits, dec_stats = self.decode(prev_output_tokens, enc, arch, task_ids)
        balance = _mean_balance_loss(enc.stats + dec_stats, logits)
        return ModelOutput(logits, balance, enc.stats, dec_stats)

    def forward_batch(self, batch: Batch, arch: ArchConfig | None = None) -> ModelOutput:
        """`forward` on a data batch already on this model's device."""
        return self(
            batch.src_tokens,
            batch.src_padding_mask,
            batch.prev_output_tokens,
            arch,
            batch.task_ids,
        )

    @staticmethod
    def reorder_cache(cache: DecoderCache, index: Tensor) -> None:
        for layer in cache:
            for part in layer.values():
                for name, tensor in part.items():
                    part[name] = tensor.index_select(0, index)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "state_dict": self.state_dict(),
        }

    def save(self, path: str | Path) -> None:
        """Write config and weights; `Transformer.load` needs nothing else."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.checkpoint(), tmp)
        tmp.replace(path)

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], source: str = "<memory>") -> Transformer:
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise AutomoeError(
                f"{source} is not an automoe model (expected format {CHECKPOINT_FORMAT})"
            )
        config, weights = data.get("config"), data.get("state_dict")
        if not isinstance(config, dict) or not isinstance(weights, dict):
            raise AutomoeError(f"{source} is damaged: its config or weights are missing")
        try:
            model = cls(ModelConfig.from_dict(config))
        except (KeyError, TypeError, ValueError) as err:
            raise AutomoeError(f"{source} has an unreadable model config ({err})") from None
        weights = {_upgrade_key(k): v for k, v in weights.items()}
        try:
            model.load_state_dict(weights)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise AutomoeError(f"{source}: weights do not match its config ({first})") from None
        return model

    @classmethod
    def load(cls, path: str | Path) -> Transformer:
        return cls.from_checkpoint(load_checkpoint_file(path), str(path))


def _upgrade_key(name: str) -> str:
    """State-dict names of checkpoints written when a layer held a single token router."""
    return name.replace(".ffn.router.", ".ffn.routers.token.")


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """torch.load of tensors and plain values only (a pickled object could run code), with one
    clear message for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise AutomoeError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler met a foreign object
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" such as {found.group(1)}" if found else ""
        raise AutomoeError(
            f"checkpoint {path} is corrupt or holds something other than weights{what}; it is "
            "refused unread, since loading objects could run code: use a model file saved by "
            "automoe's commands"
        ) from None
    except Exception as err:  # torch raises many types for corrupt files
        raise AutomoeError(
            f"cannot read checkpoint {path}: the file is corrupt or not a torch checkpoint "
            f"({type(err).__name__}); re-create it or point at another file"
        ) from None


def extract(model: Transformer, arch: ArchConfig) -> Transformer:
    """A standalone model holding only the weights `arch` uses (top-left slices); its MoE
    layers hold routers of the granularities `arch` routes by (each layer all of them)."""
    model.check_arch(arch)
    config = replace(
        model.config,
        shape=arch,
        routers=arch.routing_modes or model.config.routers[:1],
        positional_dim=model.config.positional_dim,
        dropout_ref_dim=model.config.dropout_ref_dim,
    )
    sub = Transformer(config).to(model.embed.weight.device)
    source = model.state_dict()
    with torch.no_grad():
        for name, target in sub.state_dict().items():
            weights = source[name]
            target.copy_(weights[tuple(slice(0, n) for n in target.shape)])
    return sub.train(model.training)
