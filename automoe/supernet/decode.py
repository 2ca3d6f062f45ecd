"""Greedy and beam-search translation with incremental (key/value cached) decoding.

Both searches decode a padded batch and give every sentence the output it would get alone:
length limits are per sentence, and a sentence leaves the batch (its cache and encoder rows
included) as soon as it is done, so finished sentences cost nothing and cannot emit garbage.
Every step feeds the decoder only the newest token of each hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from automoe.errors import AutomoeError
from automoe.space import ArchConfig
from automoe.supernet.model import DecoderCache, EncoderOutput, Transformer
from automoe.supernet.modes import inference


@dataclass(frozen=True)
class DecodeSettings:
    """Search settings; lengths count output tokens without bos and eos (fairseq style).

    A sentence of `n` source tokens gets at most `int(max_len_a * n + max_len_b)` tokens,
    capped by the model's position table. A hypothesis of `L` tokens scores its summed
    log-probs (eos included) divided by `(L + 1) ** length_penalty` (GNMT/fairseq), so a
    positive penalty stops the search from favouring short outputs.
    """

    beam_size: int = 4
    max_len_a: float = 1.2
    max_len_b: int = 10
    length_penalty: float = 0.6
    min_len: int = 0
    bos: int = 2
    eos: int = 3
    pad: int = 0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise AutomoeError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.min_len < 0:
            raise AutomoeError(f"min_len must not be negative, got {self.min_len}")
        if len({self.bos, self.eos, self.pad}) != 3:
            raise AutomoeError(f"bos, eos and pad must differ, got {self.bos, self.eos, self.pad}")


def _max_lengths(model: Transformer, src_padding_mask: Tensor, s: DecodeSettings) -> list[int]:
    """Per-sentence limits, so that an output never depends on its batch-mates.

    Decoder positions run from 0 (bos) to `max_len` (the input of beam search's forced-eos
    step), hence the cap by the position table.
    """
    cap = model.config.max_positions - 1
    src_lens = (~src_padding_mask).sum(1).tolist()
    return [max(0, min(int(s.max_len_a * n + s.max_len_b), cap)) for n in src_lens]


def _log_probs(logits: Tensor, s: DecodeSettings, step: int, at_limit: Tensor) -> Tensor:
    """Next-token log-probs [R, V] with pad and bos banned, eos banned below `min_len` and
    forced on rows `at_limit`.

    Masking follows the softmax, so kept entries are the model's own log-probs and scores
    equal those of a teacher-forced forward pass.
    """
    lp = torch.log_softmax(logits.float(), dim=-1)
    banned = torch.zeros(lp.shape[-1], dtype=torch.bool, device=lp.device)
    banned[[s.pad, s.bos]] = True
    if step < s.min_len:
        banned[s.eos] = True
    all_but_eos = torch.ones_like(banned)
    all_but_eos[s.eos] = False
    banned = torch.where(at_limit[:, None], all_but_eos, banned)
    return lp.masked_fill(banned, -torch.inf)


def _take_rows(
    enc: EncoderOutput, task_ids: Tensor | None, rows: Tensor
) -> tuple[EncoderOutput, Tensor | None]:
    """Encoder output and task ids for new decoder rows `rows` (repeat, drop or reorder)."""
    return enc.index_select(rows), None if task_ids is None else task_ids.index_select(0, rows)


def greedy_search(
    model: Transformer,
    src_tokens: Tensor,
    src_padding_mask: Tensor,
    arch: ArchConfig | None = None,
    settings: DecodeSettings | None = None,
    task_ids: Tensor | None = None,
) -> list[list[int]]:
    """The most likely next token at every step; outputs exclude bos and eos."""
    s = settings or DecodeSettings()
    with inference(model):
        max_lens = _max_lengths(model, src_padding_mask, s)
        enc = model.encode(src_tokens, src_padding_mask, arch, task_ids)
        outputs: list[list[int]] = [[] for _ in max_lens]
        active = list(range(len(max_lens)))  # sentence of each decoder row
        last = src_tokens.new_full((len(active), 1), s.bos)
        cache: DecoderCache = []
        step = 0
        while active:
            logits, _ = model.decode(last, enc, arch, task_ids, cache, start=step)
            # Only a zero limit gets here: other sentences leave after their last allowed token.
            at_limit = torch.tensor([step >= max_lens[i] for i in active], device=last.device)
            last = _log_probs(logits[:, -1], s, step, at_limit).argmax(-1, keepdim=True)
            step += 1
            still: list[int] = []
            for row, (sent, token) in enumerate(zip(active, last.squeeze(1).tolist(), strict=True)):
                if token != s.eos:
                    outputs[sent].append(token)
                    if step < max_lens[sent]:
                        still.append(row)
            if len(still) < len(active):
                rows = torch.tensor(still, dtype=torch.long, device=last.device)
                enc, task_ids = _take_rows(enc, task_ids, rows)
                Transformer.reorder_cache(cache, rows)
                last = last.index_select(0, rows)
                active = [active[row] for row in still]
    return outputs


Finished = list[tuple[float, list[int]]]


def _add_finished(finished: Finished, score: float, tokens: list[int], beam_size: int) -> None:
    """Keep the `beam_size` best finished hypotheses, best first (ties: earliest first)."""
    finished.append((score, tokens))
    finished.sort(key=lambda hyp: -hyp[0])
    del finished[beam_size:]


def _can_stop(
    finished: Finished, best_live: float, step: int, max_len: int, s: DecodeSettings
) -> bool:
    """Whether `beam_size` hypotheses are finished and no live one (after `step`) can beat them.

    Future log-probs are <= 0, so a live sum can only fall; its best final score divides it by
    the largest normaliser any final length (step + 2 ... max_len + 1, eos included) reaches.
    """
    if len(finished) < s.beam_size:
        return False
    p = s.length_penalty
    return best_live / max((step + 2) ** p, (max_len + 1) ** p) <= finished[-1][0]


def beam_search(
    model: Transformer,
    src_tokens: Tensor,
    src_padding_mask: Tensor,
    arch: ArchConfig | None = None,
    settings: DecodeSettings | None = None,
    task_ids: Tensor | None = None,
) -> list[list[int]]:
    """The best length-normalised hypothesis per sentence; outputs exclude bos and eos.

    Each step expands every sentence's `beam_size` hypotheses by top-2k over beam x vocab:
    eos among the first k candidates finishes a hypothesis, the k best others stay live.
    A sentence is done once k finished hypotheses exist and no live one can beat them, or
    at its length limit, where eos is forced so that every live hypothesis finishes.
    """
    s = settings or DecodeSettings()
    k = s.beam_size
    device = src_tokens.device
    with inference(model):
        max_lens = _max_lengths(model, src_padding_mask, s)
        n = len(max_lens)
        rows = torch.arange(n, device=device).repeat_interleave(k)
        enc = model.encode(src_tokens, src_padding_mask, arch, task_ids)
        enc, task_ids = _take_rows(enc, task_ids, rows)
        finished: list[Finished] = [[] for _ in range(n)]
        active = list(range(n))  # sentence of each group of k decoder rows
        tokens = src_tokens.new_full((n * k, 1), s.bos)
        # All beams start as the same bos; only the first may expand, or k copies would win.
        scores = torch.full((n, k), -torch.inf, device=device)
        scores[:, 0] = 0.0
        offsets = torch.arange(k, device=device)
        cache: DecoderCache = []
        step = 0
        while active:
            logits, _ = model.decode(tokens[:, -1:], enc, arch, task_ids, cache, start=step)
            limits = [step >= max_lens[i] for i in active]
            at_limit = torch.tensor(limits, device=device).repeat_interleave(k)
            lp = _log_probs(logits[:, -1], s, step, at_limit)
            vocab = lp.shape[-1]
            cand_scores, cand = (
                (scores[:, :, None] + lp.view(-1, k, vocab)).view(-1, k * vocab).topk(2 * k)
            )
            cand_beam, cand_token = cand // vocab, cand % vocab
            is_eos = cand_token == s.eos

            ends = is_eos[:, :k] & cand_scores[:, :k].isfinite()
            for r, c in ends.nonzero().tolist():
                hyp = tokens[r * k + int(cand_beam[r, c]), 1:].tolist()
                score = cand_scores[r, c].item() / (step + 1) ** s.length_penalty
                _add_finished(finished[active[r]], score, hyp, k)

            live = torch.argsort(is_eos.to(torch.uint8), dim=1, stable=True)[:, :k]
            scores = cand_scores.gather(1, live)
            first_rows = k * torch.arange(len(active), device=device)[:, None]
            parents = first_rows + cand_beam.gather(1, live)
            new_tokens = cand_token.gather(1, live)

            best_live = scores[:, 0].tolist()
            keep = [
                r
                for r, sent in enumerate(active)
                if not (
                    limits[r] or _can_stop(finished[sent], best_live[r], step, max_lens[sent], s)
                )
            ]
            if len(keep) < len(active):
                kept = torch.tensor(keep, dtype=torch.long, device=device)
                scores, parents, new_tokens = scores[kept], parents[kept], new_tokens[kept]
                enc, task_ids = _take_rows(enc, task_ids, (k * kept[:, None] + offsets).view(-1))
                active = [active[r] for r in keep]
            parents = parents.view(-1)
            Transformer.reorder_cache(cache, parents)
            tokens = torch.cat([tokens[parents], new_tokens.view(-1, 1)], dim=1)
            step += 1
    return [hyps[0][1] for hyps in finished]


def translate_ids(
    model: Transformer,
    src_tokens: Tensor,
    src_padding_mask: Tensor,
    arch: ArchConfig | None = None,
    settings: DecodeSettings | None = None,
    task_ids: Tensor | None = None,
) -> list[list[int]]:
    """Greedy search for `beam_size == 1` (cheaper, same result as a beam of one without a
    length penalty), beam search otherwise."""
    s = settings or DecodeSettings()
    search = greedy_search if s.beam_size == 1 else beam_search
    return search(model, src_tokens, src_padding_mask, arch, s, task_ids)
