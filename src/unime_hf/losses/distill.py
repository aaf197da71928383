"""Distillation losses that align the model's candidate distribution with a judge's (UniME-V2, METHOD.md §3).

Both losses take two `[batch, 1 + k]` score matrices over the same candidates (the positive first, then `k` hard
negatives): the model's cosine similarities and the judge's semantic-matching scores. Each row becomes a distribution
with a temperature softmax; the judge's distribution is a fixed target (detached). All work is done in float32 and in
log space, so bf16 inputs and temperatures as small as 0.02 stay finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_REDUCTIONS = ("mean", "sum", "none")


def _check_temperature(temperature: float) -> None:
    try:
        value = math.nan if isinstance(temperature, (bool, str, bytes)) else float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`temperature` must be a finite number > 0 (e.g. 0.02), got {temperature!r}.")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}.")


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise ValueError(
            f"`{name}` contains a non-finite value (NaN or inf), first at index {bad}; mask or drop that candidate "
            "before calling the loss."
        )


def _check_scores(similarities: torch.Tensor, judge_scores: torch.Tensor, temperature: float, reduction: str) -> None:
    if similarities.shape != judge_scores.shape:
        raise ValueError(
            f"`similarities` and `judge_scores` must have the same shape, got {tuple(similarities.shape)} and "
            f"{tuple(judge_scores.shape)}."
        )
    if similarities.dim() != 2:
        raise ValueError(
            f"`similarities` and `judge_scores` must be 2-D `[batch, 1 + k]` (positive first), got shape "
            f"{tuple(similarities.shape)}."
        )
    if similarities.shape[1] < 2:
        raise ValueError(
            f"`similarities` and `judge_scores` need at least 2 columns (the positive and one hard negative), got "
            f"shape {tuple(similarities.shape)}."
        )
    _check_temperature(temperature)
    _check_reduction(reduction)
    _check_finite(similarities, "similarities")
    _check_finite(judge_scores, "judge_scores")


def _reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row


def _log_distributions(
    similarities: torch.Tensor, judge_scores: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns `(log P, log Q)` in float32; `log Q` is detached because the judge is a target, not a learner."""
    log_p = F.log_softmax(similarities.float() / temperature, dim=-1)
    log_q = F.log_softmax(judge_scores.detach().float() / temperature, dim=-1)
    return log_p, log_q


def _kl_per_row(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) for each row, from log-probabilities."""
    # F.kl_div(input, target) computes target * (target - input), i.e. KL(target || input).
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=-1)


def symmetric_kl_loss(
    similarities: torch.Tensor,
    judge_scores: torch.Tensor,
    temperature: float = 0.02,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Symmetric KL divergence between the model's and the judge's distributions over candidates.

    With `P = softmax(similarities / temperature)` (model) and `Q = softmax(judge_scores / temperature)` (judge), the
    loss of a row is `0.5 * (KL(P || Q) + KL(Q || P))`. This is the objective of UniME-V2: the paper calls it the
    JS divergence, but the authors' code computes this symmetric KL (the Jeffreys divergence halved), so it is named
    for what it computes. For the true Jensen-Shannon divergence use [`js_divergence_loss`].

    Args:
        similarities (`torch.Tensor` of shape `(batch_size, 1 + k)`):
            Model scores (cosine similarities) of each query with its candidates, positive at index 0. Any float
            dtype; computed in float32.
        judge_scores (`torch.Tensor` of shape `(batch_size, 1 + k)`):
            Judge scores for the same candidates in the same order. Treated as a target: no gradient flows to it.
        temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature, shared by both distributions.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` averages over rows (queries), `"sum"` sums them, `"none"` returns the `(batch_size,)` losses.

    Returns:
        `torch.Tensor`: float32 loss, a scalar unless `reduction="none"`.

    Raises:
        `ValueError`: if the shapes differ, are not 2-D with at least 2 columns, the temperature is not a finite
            positive number, the reduction is unknown, or an input holds NaN or inf.

    Example:

    ```python
    >>> import torch
    >>> from unime_hf.losses import symmetric_kl_loss
    >>> similarities = torch.tensor([[0.8, 0.3, 0.1]], requires_grad=True)
    >>> judge_scores = torch.tensor([[0.9, 0.5, 0.0]])
    >>> loss = symmetric_kl_loss(similarities, judge_scores)
    >>> loss.backward()
    ```
    """
    _check_scores(similarities, judge_scores, temperature, reduction)
    log_p, log_q = _log_distributions(similarities, judge_scores, temperature)
    per_row = 0.5 * (_kl_per_row(log_p, log_q) + _kl_per_row(log_q, log_p))
    return _reduce(per_row, reduction)


def js_divergence_loss(
    similarities: torch.Tensor,
    judge_scores: torch.Tensor,
    temperature: float = 0.02,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Jensen-Shannon divergence between the model's and the judge's distributions over candidates.

    With `P = softmax(similarities / temperature)` (model), `Q = softmax(judge_scores / temperature)` (judge) and
    `M = (P + Q) / 2`, the loss of a row is `0.5 * KL(P || M) + 0.5 * KL(Q || M)`, bounded by `log 2`. `log M` is
    computed with `logsumexp`, so the loss stays finite when `P` and `Q` are nearly disjoint. This is the divergence
    the UniME-V2 paper names; the authors' code uses [`symmetric_kl_loss`] instead.

    Args:
        similarities (`torch.Tensor` of shape `(batch_size, 1 + k)`):
            Model scores (cosine similarities) of each query with its candidates, positive at index 0. Any float
            dtype; computed in float32.
        judge_scores (`torch.Tensor` of shape `(batch_size, 1 + k)`):
            Judge scores for the same candidates in the same order. Treated as a target: no gradient flows to it.
        temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature, shared by both distributions.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` averages over rows (queries), `"sum"` sums them, `"none"` returns the `(batch_size,)` losses.

    Returns:
        `torch.Tensor`: float32 loss, a scalar unless `reduction="none"`.

    Raises:
        `ValueError`: if the shapes differ, are not 2-D with at least 2 columns, the temperature is not a finite
            positive number, the reduction is unknown, or an input holds NaN or inf.

    Example:

    ```python
    >>> import torch
    >>> from unime_hf.losses import js_divergence_loss
    >>> similarities = torch.tensor([[0.8, 0.3, 0.1]], requires_grad=True)
    >>> js_divergence_loss(similarities, torch.tensor([[0.9, 0.5, 0.0]])) <= torch.log(torch.tensor(2.0))
    tensor(True)
    ```
    """
    _check_scores(similarities, judge_scores, temperature, reduction)
    log_p, log_q = _log_distributions(similarities, judge_scores, temperature)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    per_row = 0.5 * (_kl_per_row(log_p, log_m) + _kl_per_row(log_q, log_m))
    return _reduce(per_row, reduction)
