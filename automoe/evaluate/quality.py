"""Scoring a sub-network: validation loss with inherited weights, translations and BLEU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from automoe.data import Batch, Example, TokenBatcher, Tokenizer
from automoe.space import ArchConfig
from automoe.supernet.decode import DecodeSettings, translate_ids
from automoe.supernet.losses import label_smoothed_loss
from automoe.supernet.model import Transformer
from automoe.supernet.modes import inference


@dataclass(frozen=True)
class LossReport:
    """Per-token label-smoothed loss (the search fitness, as in the paper) and plain NLL."""

    loss: float
    nll: float
    tokens: int


def validation_loss(
    model: Transformer,
    batches: Sequence[Batch],
    arch: ArchConfig | None = None,
    smoothing: float = 0.1,
) -> LossReport:
    """Loss of `arch` (default: the model's own shape) over fixed, pre-built batches."""
    device = model.embed.weight.device
    loss = nll = 0.0
    tokens = 0
    with inference(model):
        for batch in batches:
            batch = batch.to(device)
            out = model.forward_batch(batch, arch)
            part = label_smoothed_loss(out.logits, batch.target, model.config.pad_id, smoothing)
            loss += float(part.loss)
            nll += float(part.nll)
            tokens += part.tokens
    return LossReport(loss / max(tokens, 1), nll / max(tokens, 1), tokens)


def translate_examples(
    model: Transformer,
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    arch: ArchConfig | None = None,
    settings: DecodeSettings | None = None,
    max_tokens: int = 4096,
) -> list[str]:
    """Detokenised translations of the examples' sources, in the examples' order."""
    device = model.embed.weight.device
    settings = settings or DecodeSettings()
    out = [""] * len(examples)
    batcher = TokenBatcher(examples, max_tokens, shuffle=False)
    with inference(model):
        for batch in batcher.batches():
            batch = batch.to(device)
            ids = translate_ids(
                model, batch.src_tokens, batch.src_padding_mask, arch, settings, batch.task_ids
            )
            for row, seq in zip(batch.indices.tolist(), ids, strict=True):
                out[row] = tokenizer.decode(seq)
    return out


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's default 13a-tokenised corpus BLEU on detokenised text."""
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, object]:
    """BLEU and chrF with sacrebleu's signatures, so a figure says exactly how it was computed
    and compares with others' only when the signatures match."""
    refs = [list(references)]
    bleu, chrf = BLEU(), CHRF()
    return {
        "bleu": float(bleu.corpus_score(list(hypotheses), refs).score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf": float(chrf.corpus_score(list(hypotheses), refs).score),
        "chrf_signature": str(chrf.get_signature()),
    }
