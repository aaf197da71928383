import math

import pytest
import torch
import torch.nn.functional as F

from unime_hf.losses import js_divergence_loss, symmetric_kl_loss

LOG2 = math.log(2.0)
LOSS_FNS = [symmetric_kl_loss, js_divergence_loss]


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(x / temperature) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_symmetric_kl_hand_computed_2x2():
    # Row 0: P = [1/2, 1/2], Q = [3/4, 1/4] at temperature 1.
    kl_pq = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qp = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    row0 = 0.5 * (kl_pq + kl_qp)
    # Row 1 equal distributions, shifted by a constant: softmax is shift invariant, so the loss is 0.
    similarities = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    judge_scores = torch.tensor([[math.log(3.0), 0.0], [3.0, 4.0]])
    per_row = symmetric_kl_loss(similarities, judge_scores, temperature=1.0, reduction="none")
    torch.testing.assert_close(per_row, torch.tensor([row0, 0.0]))
    torch.testing.assert_close(symmetric_kl_loss(similarities, judge_scores, temperature=1.0), torch.tensor(row0 / 2))
    torch.testing.assert_close(
        symmetric_kl_loss(similarities, judge_scores, temperature=1.0, reduction="sum"), torch.tensor(row0)
    )


def test_js_hand_computed_2x2():
    p, q = [0.5, 0.5], [0.75, 0.25]
    m = [0.625, 0.375]
    expected = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    loss = js_divergence_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), temperature=1.0)
    torch.testing.assert_close(loss, torch.tensor(expected))


@pytest.mark.parametrize("temperature", [0.5, 0.02])
def test_temperature_scales_both_distributions(temperature):
    sims = [0.30, 0.25, 0.10]
    judge = [0.9, 0.2, 0.4]
    p, q = _softmax(sims, temperature), _softmax(judge, temperature)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    expected_skl = 0.5 * (_kl(p, q) + _kl(q, p))
    expected_js = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    s, j = torch.tensor([sims]), torch.tensor([judge])
    torch.testing.assert_close(symmetric_kl_loss(s, j, temperature=temperature), torch.tensor(expected_skl))
    torch.testing.assert_close(js_divergence_loss(s, j, temperature=temperature), torch.tensor(expected_js))


def test_symmetric_kl_matches_kl_div_reference():
    generator = torch.Generator().manual_seed(0)
    similarities = torch.rand(6, 9, generator=generator) * 2 - 1
    judge_scores = torch.rand(6, 9, generator=generator)
    temperature = 0.05
    log_p = F.log_softmax(similarities / temperature, dim=-1)
    log_q = F.log_softmax(judge_scores / temperature, dim=-1)
    expected = 0.5 * (
        F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
        + F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    )
    torch.testing.assert_close(symmetric_kl_loss(similarities, judge_scores, temperature=temperature), expected)


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
def test_equal_distributions_give_zero(loss_fn):
    scores = torch.rand(4, 9, generator=torch.Generator().manual_seed(1))
    loss = loss_fn(scores, scores.clone())
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_js_is_bounded_by_log2_and_reaches_it_for_disjoint_distributions():
    generator = torch.Generator().manual_seed(2)
    similarities = torch.rand(32, 9, generator=generator) * 2 - 1
    judge_scores = torch.rand(32, 9, generator=generator)
    per_row = js_divergence_loss(similarities, judge_scores, temperature=0.02, reduction="none")
    assert per_row.shape == (32,)
    assert (per_row >= -1e-6).all() and (per_row <= LOG2 + 1e-6).all()
    # Nearly disjoint supports at tau=0.02: P on the positive, Q on the negative.
    disjoint = js_divergence_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]]), temperature=0.02)
    torch.testing.assert_close(disjoint, torch.tensor(LOG2), atol=1e-5, rtol=0)
    # Symmetric KL is unbounded there (about (1 + 2) / 0.02 / 2 = 75 nats), which is why JS is offered.
    assert symmetric_kl_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])) > 70


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
def test_value_is_symmetric_in_its_arguments(loss_fn):
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(5, 4, generator=generator)
    b = torch.rand(5, 4, generator=generator)
    torch.testing.assert_close(loss_fn(a, b, temperature=0.1), loss_fn(b, a, temperature=0.1))


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_finite_at_extreme_inputs(loss_fn, dtype):
    # Cosines at +-1 and judge scores at 0/1 give logits of +-50 at tau=0.02.
    similarities = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=dtype)
    similarities.requires_grad_(True)
    judge_scores = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    loss = loss_fn(similarities, judge_scores, temperature=0.02)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert loss > 0
    loss.backward()
    assert similarities.grad.dtype == dtype
    assert torch.isfinite(similarities.grad.float()).all()
    assert similarities.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
def test_gradient_reaches_similarities_not_judge_scores(loss_fn):
    generator = torch.Generator().manual_seed(4)
    similarities = torch.rand(3, 5, generator=generator).requires_grad_(True)
    judge_scores = torch.rand(3, 5, generator=generator).requires_grad_(True)
    loss_fn(similarities, judge_scores, temperature=0.1).backward()
    assert judge_scores.grad is None
    assert similarities.grad is not None and similarities.grad.abs().sum() > 0
    # Softmax is shift invariant, so each row's gradient sums to zero.
    torch.testing.assert_close(similarities.grad.sum(dim=-1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
def test_descending_the_gradient_moves_p_towards_q(loss_fn):
    similarities = torch.tensor([[0.1, 0.5, 0.2]], requires_grad=True)
    judge_scores = torch.tensor([[0.9, 0.1, 0.0]])
    loss_fn(similarities, judge_scores, temperature=0.1).backward()
    # The judge prefers the positive: the loss must push its similarity up and the top negative's down.
    assert similarities.grad[0, 0] < 0
    assert similarities.grad[0, 1] > 0


@pytest.mark.parametrize("loss_fn", LOSS_FNS)
@pytest.mark.parametrize(
    ("similarities", "judge_scores", "kwargs", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), {}, "same shape"),
        (torch.zeros(3), torch.zeros(3), {}, "2-D"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), {}, "2-D"),
        (torch.zeros(2, 1), torch.zeros(2, 1), {}, "at least 2 columns"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"temperature": 0.0}, "temperature"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"temperature": -0.02}, "temperature"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"temperature": float("inf")}, "temperature"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"temperature": float("nan")}, "temperature"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"temperature": "0.02"}, "finite number > 0"),
        (torch.zeros(2, 3), torch.zeros(2, 3), {"reduction": "batchmean"}, "reduction"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), {}, "`similarities` contains a non-finite"),
        (torch.zeros(1, 2), torch.tensor([[float("inf"), 0.0]]), {}, "`judge_scores` contains a non-finite"),
    ],
)
def test_invalid_inputs_raise(loss_fn, similarities, judge_scores, kwargs, message):
    with pytest.raises(ValueError, match=message) as excinfo:
        loss_fn(similarities, judge_scores, **kwargs)
    if message in ("same shape", "2-D", "at least 2 columns"):
        assert str(tuple(similarities.shape)) in str(excinfo.value)
