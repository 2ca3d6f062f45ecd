"""Greedy and beam search: agreement with uncached references, batching, scores and limits."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from automoe.errors import AutomoeError
from automoe.precision import Precision
from automoe.space import ArchConfig
from automoe.supernet.decode import DecodeSettings, beam_search, greedy_search, translate_ids
from automoe.supernet.model import ModelConfig, Transformer, extract

BOS, EOS, PAD = 2, 3, 0
VOCAB = 30
SHAPE = ArchConfig(
    32, 32, [[48] * 3] * 3, [4] * 3, [2] * 3, [[64] * 3] * 3, [4] * 3, [4] * 3, [3] * 3, [2] * 3
)
# Several experts (an identity one too), top-2 routing and cross-attention to 2 encoder layers.
SUB = ArchConfig(
    24, 32, [[48, 32], [16, 0, 48]], [2, 4], [1, 2], [[64, 32, 0], [48]], [2, 4], [4, 2], [1, 2],
    [2, 1],
)  # fmt: skip


def random_batch(seed: int, n: int, max_src: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Source sentences of 2..max_src tokens, right-padded."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(2, max_src + 1, (n,), generator=g)
    mask = torch.arange(max_src)[None] >= lens[:, None]
    src = torch.randint(4, VOCAB, (n, max_src), generator=g).masked_fill(mask, PAD)
    return src, mask


def single(src: torch.Tensor, mask: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence i alone, its padding stripped."""
    n = int((~mask[i]).sum())
    return src[i : i + 1, :n], mask[i : i + 1, :n]


@pytest.fixture(scope="module")
def model() -> Transformer:
    """A SuperNet briefly trained (with `SUB`) to copy its input then stop, so that outputs end
    with eos at different lengths instead of running to the limit like random weights do."""
    torch.manual_seed(0)
    net = Transformer(ModelConfig(VOCAB, 16, SHAPE, dropout=0.0))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for step in range(40):
        src, mask = random_batch(1000 + step, 32)
        lens = (~mask).sum(1)
        tgt = F.pad(src, (0, 1), value=PAD)
        tgt[torch.arange(len(src)), lens] = EOS
        prev = F.pad(tgt[:, :-1], (1, 0), value=BOS)
        logits = net(src, mask, prev, SUB).logits
        loss = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def max_len(mask_row: torch.Tensor, s: DecodeSettings) -> int:
    return int(s.max_len_a * int((~mask_row).sum()) + s.max_len_b)


def reference_greedy(
    net: Transformer, src: torch.Tensor, mask: torch.Tensor, arch: ArchConfig, s: DecodeSettings
) -> list[int]:
    """Greedy decoding of one sentence the slow way: the full prefix through the decoder."""
    with torch.no_grad():
        enc = net.encode(src, mask, arch)
        out: list[int] = []
        while len(out) < max_len(mask[0], s):
            logits, _ = net.decode(torch.tensor([[BOS, *out]]), enc, arch)
            lp = logits[0, -1].clone()
            lp[[PAD, BOS]] = -torch.inf
            if len(out) < s.min_len:
                lp[EOS] = -torch.inf
            token = int(lp.argmax())
            if token == EOS:
                break
            out.append(token)
    return out


def score(
    net: Transformer,
    src: torch.Tensor,
    mask: torch.Tensor,
    hyp: list[int],
    length_penalty: float,
    arch: ArchConfig | None = None,
) -> float:
    """Length-normalised log-prob of `hyp` + eos by one teacher-forced forward pass."""
    with torch.no_grad():
        logits = net(src, mask, torch.tensor([[BOS, *hyp]]), arch).logits[0]
        target = torch.tensor([*hyp, EOS])
        total = logits.float().log_softmax(-1)[torch.arange(len(target)), target].sum()
    return float(total) / len(target) ** length_penalty


@pytest.mark.parametrize("min_len", [0, 3])
def test_greedy_matches_uncached_reference(
    model: Transformer, min_len: int, precision: Precision
) -> None:
    src, mask = random_batch(1, 12)
    s = DecodeSettings(min_len=min_len)
    with precision.autocast():
        out = greedy_search(model, src, mask, SUB, s)
        expected = [reference_greedy(model, *single(src, mask, i), SUB, s) for i in range(len(src))]
    assert out == expected
    assert any(len(o) < max_len(m, s) for o, m in zip(out, mask, strict=True)), "no eos seen"
    assert len({len(o) for o in out}) > 1


def test_beam_of_one_is_greedy(model: Transformer) -> None:
    src, mask = random_batch(2, 12)
    greedy = greedy_search(model, src, mask, SUB)
    no_penalty = DecodeSettings(beam_size=1, length_penalty=0.0)
    assert beam_search(model, src, mask, SUB, no_penalty) == greedy
    assert translate_ids(model, src, mask, SUB, DecodeSettings(beam_size=1)) == greedy
    # After greedy's eos, a beam of one keeps searching while a live hypothesis, rewarded for
    # length by the penalty, could still beat it; it finds better outputs, never worse ones.
    beam = beam_search(model, src, mask, SUB, DecodeSettings(beam_size=1, length_penalty=1.0))
    assert beam != greedy
    for i, (b, g) in enumerate(zip(beam, greedy, strict=True)):
        one = single(src, mask, i)
        assert score(model, *one, b, 1.0, SUB) >= score(model, *one, g, 1.0, SUB) - 1e-5


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_batch_decodes_like_each_sentence_alone(
    model: Transformer, search, precision: Precision
) -> None:
    src, mask = random_batch(3, 10)
    task_ids = torch.arange(len(src))  # carried along as sentences finish; the router ignores it
    with precision.autocast():
        batched = search(model, src, mask, SUB, task_ids=task_ids)
        alone = [search(model, *single(src, mask, i), SUB)[0] for i in range(len(src))]
    assert batched == alone


def test_beam_scores_at_least_as_high_as_greedy(model: Transformer) -> None:
    src, mask = random_batch(4, 12)
    s = DecodeSettings()
    greedy = greedy_search(model, src, mask, SUB, s)
    beam = beam_search(model, src, mask, SUB, s)
    assert beam != greedy
    for i, (b, g) in enumerate(zip(beam, greedy, strict=True)):
        one = single(src, mask, i)
        assert score(model, *one, b, 0.6, SUB) >= score(model, *one, g, 0.6, SUB) - 1e-5


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(
    length_penalty: float, precision: Precision
) -> None:
    """With a beam wider than the hypothesis space, beam search is exact search (in bf16 too:
    scores sum fp32 log-probs of the bf16 logits, as `score` does)."""
    torch.manual_seed(5)
    tiny = ArchConfig(16, 16, [[32]], [2], [1], [[32, 32]], [2], [2], [1], [1])
    net = Transformer(ModelConfig(6, 8, tiny)).eval()  # tokens 1, 4, 5 besides eos
    src, mask = torch.tensor([[4, 5, 1]]), torch.zeros(1, 3, dtype=torch.bool)
    s = DecodeSettings(beam_size=40, max_len_a=0.0, max_len_b=3, length_penalty=length_penalty)
    hyps = [list(h) for n in range(4) for h in itertools.product([1, 4, 5], repeat=n)]
    with precision.autocast():
        best = max(hyps, key=lambda h: score(net, src, mask, h, length_penalty))
        assert beam_search(net, src, mask, settings=s) == [best]


@pytest.mark.parametrize("search", [greedy_search, beam_search])
@pytest.mark.parametrize(
    "settings",
    [
        DecodeSettings(max_len_a=0.5, max_len_b=2, min_len=3),
        DecodeSettings(max_len_a=0.0, max_len_b=0),
        DecodeSettings(max_len_a=0.0, max_len_b=1000),
    ],
)
def test_outputs_respect_length_limits_and_special_ids(search, settings: DecodeSettings) -> None:
    torch.manual_seed(6)
    net = Transformer(ModelConfig(VOCAB, 16, SUB, max_positions=20))
    src, mask = random_batch(7, 6)
    out = search(net, src, mask, settings=settings)
    assert net.training, "the caller's mode is restored"
    for tokens, m in zip(out, mask, strict=True):
        limit = min(max_len(m, settings), net.config.max_positions - 1)
        assert min(settings.min_len, limit) <= len(tokens) <= limit
        assert not {BOS, EOS, PAD} & set(tokens)
        assert all(isinstance(t, int) for t in tokens)


class FlatBF16(Transformer):
    """A model whose bf16 logits are equal for every token but 5, which leads by 2**-6."""

    def decode(self, prev_output_tokens: torch.Tensor, *args: object, **kwargs: object) -> tuple:
        b, t = prev_output_tokens.shape
        logits = torch.zeros(b, t, self.config.vocab_size, dtype=torch.bfloat16)
        logits[..., 5] = 2**-6
        return logits, []


def test_bf16_logits_are_ranked_by_fp32_log_probs() -> None:
    # Over 4096 tokens each log-prob is near -8.3, where bf16 steps by 2**-4: log-probs taken in
    # bf16 would tie token 5 with all the others (greedy would then pick token 1).
    tiny = ArchConfig(16, 16, [[32]], [2], [1], [[32]], [2], [2], [1], [1])
    net = FlatBF16(ModelConfig(4096, 8, tiny)).eval()
    src, mask = torch.tensor([[4, 5, 1]]), torch.zeros(1, 3, dtype=torch.bool)
    s = DecodeSettings(max_len_a=0.0, max_len_b=3)
    assert greedy_search(net, src, mask, settings=s) == [[5, 5, 5]]


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_decoding_ignores_dropout_of_a_training_model(search) -> None:
    torch.manual_seed(8)
    net = Transformer(ModelConfig(VOCAB, 16, SUB, dropout=0.5, attention_dropout=0.5))
    src, mask = random_batch(9, 4)
    first = search(net, src, mask)
    assert net.training
    assert search(net, src, mask) == first == search(net.eval(), src, mask)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_extracted_model_decodes_like_the_supernet(
    model: Transformer, search, precision: Precision
) -> None:
    src, mask = random_batch(10, 8)
    sub = extract(model, SUB)
    with precision.autocast():
        assert search(sub, src, mask) == search(model, src, mask, SUB)


def test_settings_are_checked() -> None:
    with pytest.raises(AutomoeError, match="beam_size"):
        DecodeSettings(beam_size=0)
    with pytest.raises(AutomoeError, match="min_len"):
        DecodeSettings(min_len=-1)
    with pytest.raises(AutomoeError, match="differ"):
        DecodeSettings(eos=0)
