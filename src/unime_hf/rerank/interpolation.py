# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Score interpolation for retrieve-then-rerank: the reranker's evidence added to the embedding's, not replacing it.

UniME-V2 reorders the top `k` by the reranker alone. A reranker that is not clearly stronger than the embedder (a
small one, or one trained on little data) then throws away what the embedder knew; interpolating the two scores
keeps both. Each score is standardised over the query's `k` candidates first, since cosine similarities and log-odds
live on different scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_EPS = 1e-6


def _standardise(values: Sequence[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))
    return [(value - mean) / std if std > 0 else 0.0 for value in values]


def check_interpolation_weight(weight: float) -> None:
    """Raise a `ValueError` unless `weight` is a finite number `>= 0` (a bool is not a weight)."""
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"The interpolation weight must be a finite number >= 0, got {weight!r}.")


def interpolate_scores(
    embedding_scores: Sequence[float], rerank_probabilities: Sequence[float], weight: float
) -> list[float]:
    r"""`z(embedding score) + weight * z(log-odds of P(Yes))` for each of a query's candidates.

    `z` standardises over the candidates (mean 0, standard deviation 1; a constant list becomes all zeros), so
    `weight` is the reranker's share relative to the embedder's: 0 keeps the retrieval order, large values approach
    pure reranking.

    Args:
        embedding_scores (`Sequence[float]`):
            The embedder's similarity of each candidate to the query.
        rerank_probabilities (`Sequence[float]`):
            The reranker's pointwise `P(Yes)` of each candidate, in `[0, 1]` (clipped to `[1e-6, 1 - 1e-6]`).
        weight (`float`):
            The reranker's weight, `>= 0`.

    Returns:
        `list[float]`: the interpolated score of each candidate (higher is better).

    Example:

    ```python
    >>> [round(score, 6) for score in interpolate_scores([0.9, 0.8], [0.2, 0.6], weight=0.5)]
    [0.5, -0.5]
    >>> [round(score, 6) for score in interpolate_scores([0.9, 0.8], [0.2, 0.6], weight=2.0)]
    [-1.0, 1.0]
    ```
    """
    check_interpolation_weight(weight)
    if len(embedding_scores) != len(rerank_probabilities):
        raise ValueError(
            f"{len(embedding_scores)} embedding scores for {len(rerank_probabilities)} reranker probabilities."
        )
    if not embedding_scores:
        return []
    for position, probability in enumerate(rerank_probabilities):
        if not 0.0 <= probability <= 1.0:  # also rejects NaN
            raise ValueError(f"Reranker probability {probability!r} at position {position} is not in [0, 1].")
    log_odds = [math.log(p / (1 - p)) for p in (min(max(p, _EPS), 1 - _EPS) for p in rerank_probabilities)]
    return [
        embedding + weight * rerank
        for embedding, rerank in zip(_standardise(embedding_scores), _standardise(log_odds), strict=True)
    ]


def interpolated_order(
    embedding_scores: Sequence[float], rerank_probabilities: Sequence[float], weight: float
) -> list[int]:
    """Positions sorted by [`interpolate_scores`], best first (ties keep the given order, i.e. the retrieval order
    when the candidates come sorted by embedding score)."""
    fused = interpolate_scores(embedding_scores, rerank_probabilities, weight)
    return sorted(range(len(fused)), key=lambda position: -fused[position])
