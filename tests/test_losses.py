"""The label-smoothed loss agrees with its definition in value and gradient, in every dtype
the trainer feeds it and however its rows are sliced."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from automoe.supernet import losses
from automoe.supernet.losses import label_smoothed_loss

PAD = 0


def by_definition(logits: torch.Tensor, target: torch.Tensor, smoothing: float):
    """(loss, nll) in float64 from log_softmax, gather and mean, as fairseq writes them."""
    logp = F.log_softmax(logits.double(), -1)
    keep = target != PAD
    nll = -logp.gather(-1, target[..., None]).squeeze(-1)[keep].sum()
    uniform = -logp.mean(-1)[keep].sum()
    return (1 - smoothing) * nll + smoothing * uniform, nll


def batch(seed: int, sentences: int, length: int, vocab: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(sentences, length, vocab, generator=gen)).to(dtype)
    target = torch.randint(0, vocab, (sentences, length), generator=gen)
    return logits, target


def test_label_smoothed_loss_matches_definition() -> None:
    logits, target = batch(0, 2, 5, 11, torch.float32)
    target[1, 3:] = PAD
    out = label_smoothed_loss(logits, target, pad_id=PAD, smoothing=0.1)
    loss, nll = by_definition(logits, target, 0.1)
    assert out.tokens == int((target != PAD).sum())
    assert float(out.nll) == pytest.approx(float(nll), rel=1e-6)
    assert float(out.loss) == pytest.approx(float(loss), rel=1e-6)
    plain = label_smoothed_loss(logits, target, pad_id=PAD, smoothing=0.0)
    assert float(plain.loss) == pytest.approx(float(nll), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sentences=st.integers(1, 6),
    length=st.integers(1, 7),
    vocab=st.integers(2, 40),
    smoothing=st.floats(0.0, 0.5),
    chunk=st.integers(1, 200),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_value_and_gradient_match_the_definition(
    seed: int,
    sentences: int,
    length: int,
    vocab: int,
    smoothing: float,
    chunk: int,
    dtype: torch.dtype,
) -> None:
    logits, target = batch(seed, sentences, length, vocab, dtype)
    before = logits.clone()
    logits.requires_grad_()
    with mock.patch.object(losses, "CHUNK_ELEMENTS", chunk):
        out = label_smoothed_loss(logits, target, PAD, smoothing)
    out.loss.backward()
    reference = logits.detach().double().requires_grad_()
    loss, nll = by_definition(reference, target, smoothing)
    loss.backward()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    assert out.loss.dtype == out.nll.dtype == dtype
    torch.testing.assert_close(out.loss.double(), loss, **tol)
    torch.testing.assert_close(out.nll.double(), nll, **tol)
    assert logits.grad is not None and logits.grad.dtype == dtype
    torch.testing.assert_close(logits.grad.double(), reference.grad, **tol)
    assert torch.equal(logits.detach(), before)  # the backward pass works on copies


def test_bf16_logits_get_a_bf16_gradient_of_the_fp32_loss() -> None:
    logits, target = batch(3, 8, 9, 50, torch.bfloat16)
    target[:, -2:] = PAD
    logits.requires_grad_()
    with mock.patch.object(losses, "CHUNK_ELEMENTS", 100):
        out = label_smoothed_loss(logits, target, PAD, 0.1)
    out.loss.backward()
    reference = logits.detach().double().requires_grad_()
    loss, _ = by_definition(reference, target, 0.1)
    loss.backward()
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), loss, rtol=1e-6, atol=1e-4)
    assert logits.grad is not None and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.double(), reference.grad, rtol=1e-2, atol=1e-4)
    assert not logits.grad[:, -2:].any()  # padding takes no gradient


def test_inference_mode_gives_the_training_value() -> None:
    logits, target = batch(5, 3, 4, 30, torch.float32)
    trained = label_smoothed_loss(logits.clone().requires_grad_(), target, PAD, 0.1)
    with torch.inference_mode():
        scored = label_smoothed_loss(logits, target, PAD, 0.1)
    assert float(scored.loss) == pytest.approx(float(trained.loss.detach()), rel=1e-6)
    assert float(scored.nll) == pytest.approx(float(trained.nll.detach()), rel=1e-6)
