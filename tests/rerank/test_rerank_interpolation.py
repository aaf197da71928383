"""interpolate_scores: standardised embedding score + weight x standardised reranker log-odds, hand-computed."""

from __future__ import annotations

import math

import pytest

from unime_hf.rerank.interpolation import interpolate_scores, interpolated_order


def _z(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std for v in values]


def test_values_by_hand():
    embedding, probabilities = [0.9, 0.8, 0.7], [0.5, 0.5, 0.9]
    z_embedding = [math.sqrt(1.5), 0.0, -math.sqrt(1.5)]  # population std of (0.1, 0, -0.1) is 0.1 * sqrt(2/3)
    z_rerank = _z([0.0, 0.0, math.log(9.0)])  # log-odds of 0.5, 0.5, 0.9
    assert z_rerank == pytest.approx([-1 / math.sqrt(2), -1 / math.sqrt(2), math.sqrt(2)])
    for weight in (0.0, 0.5, 1.0, 3.0):
        expected = [e + weight * r for e, r in zip(z_embedding, z_rerank)]
        assert interpolate_scores(embedding, probabilities, weight) == pytest.approx(expected)
    # weight 0 keeps the retrieval order; 1: 1.22 - 0.71 = 0.52 beats 1.41 - 1.22 = 0.19; 3: the reranker wins
    assert interpolated_order(embedding, probabilities, 0.0) == [0, 1, 2]
    assert interpolated_order(embedding, probabilities, 1.0) == [0, 2, 1]
    assert interpolated_order(embedding, probabilities, 3.0) == [2, 0, 1]


def test_constant_scores_and_ties():
    # A reranker that says the same for every candidate leaves the retrieval order; equal embedding scores and
    # equal P(Yes) tie, and ties keep the given order.
    assert interpolate_scores([0.3, 0.2, 0.1], [0.7, 0.7, 0.7], 5.0) == pytest.approx(_z([0.3, 0.2, 0.1]))
    assert interpolated_order([0.5, 0.5], [0.4, 0.4], 1.0) == [0, 1]
    assert interpolate_scores([], [], 1.0) == []
    # Probabilities of exactly 0 and 1 are clipped, not infinite.
    assert all(math.isfinite(s) for s in interpolate_scores([0.2, 0.1, 0.0], [0.0, 1.0, 0.5], 1.0))


@pytest.mark.parametrize(
    ("embedding", "probabilities", "weight", "message"),
    [
        ([0.1], [0.5], -0.5, "weight must be a finite number >= 0, got -0.5"),
        ([0.1], [0.5], float("nan"), "weight must be a finite number"),
        ([0.1], [0.5], True, "weight must be a finite number"),
        ([0.1], [0.5], "1", "weight must be a finite number"),
        ([0.1, 0.2], [0.5], 1.0, "2 embedding scores for 1 reranker probabilities"),
        ([0.1, 0.2], [0.5, 1.5], 1.0, "probability 1.5 at position 1 is not in"),
        ([0.1, 0.2], [float("nan"), 0.5], 1.0, "probability nan at position 0"),
    ],
)
def test_bad_input_raises(embedding, probabilities, weight, message):
    with pytest.raises(ValueError, match=message):
        interpolate_scores(embedding, probabilities, weight)
