"""Each branch of the hard-negative sampler on hand-built rows with exact expected outputs."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from unime_hf.mining.sample import SamplingStats, sample_hard_negatives, select_hard_negatives


def rows(*queries: tuple[list[float], float]) -> Dataset:
    """One row per (candidate_scores, pos_score); candidates are named c0, c1, ... in rank order."""
    return Dataset.from_dict(
        {
            "query_id": [f"q{i}" for i in range(len(queries))],
            "candidate_ids": [[f"c{j}" for j in range(len(scores))] for scores, _ in queries],
            "candidate_similarities": [[0.9 - 0.01 * j for j in range(len(scores))] for scores, _ in queries],
            "candidate_scores": [scores for scores, _ in queries],
            "pos_score": [pos for _, pos in queries],
        }
    )


def test_interval_selection_over_fifty_candidates():
    data = rows(([0.1] * 50, 0.9))
    out, stats = sample_hard_negatives(data, show_progress=False)
    assert out[0]["hard_negative_ids"] == [f"c{j}" for j in range(0, 50, 5)]
    assert out[0]["hard_negative_scores"] == [0.1] * 10
    assert stats == SamplingStats(queries=1)


def test_interval_counts_positions_of_the_remaining_list():
    # c0 and c1 are false negatives (score > 0.9 - 0.01): every 5th of the remaining c2..c11 is c2, c7 -- not
    # c5, c10, which every 5th of the original ranks would give.
    scores = [0.95, 0.9] + [0.1 + 0.01 * j for j in range(10)]
    out, stats = sample_hard_negatives(rows((scores, 0.9)), num_negatives=2, show_progress=False)
    assert out[0]["hard_negative_ids"] == ["c2", "c7"]
    assert out[0]["hard_negative_scores"] == pytest.approx([0.1, 0.15])
    assert (stats.false_negatives_dropped, stats.queries_with_false_negatives) == (2, 1)


def test_filter_boundary_is_strict():
    # s > s_pos - beta is dropped; s == s_pos - beta is kept (0.75 - 0.25 = 0.5 exactly in binary floating point)
    out, stats = sample_hard_negatives(
        rows(([0.5, 0.5000001, 0.25], 0.75)), beta=0.25, num_negatives=2, interval=1, show_progress=False
    )
    assert out[0]["hard_negative_ids"] == ["c0", "c2"]
    assert stats.false_negatives_dropped == 1


def test_more_selected_than_needed_keeps_the_best_ranked():
    out, _ = sample_hard_negatives(rows(([0.1] * 8, 0.9)), num_negatives=3, interval=2, show_progress=False)
    assert out[0]["hard_negative_ids"] == ["c0", "c2", "c4"]


def test_cyclic_repetition_fills_up():
    scores = [0.2, 0.99, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # c1 is a false negative
    out, stats = sample_hard_negatives(rows((scores, 0.9)), num_negatives=5, interval=3, show_progress=False)
    # remaining c0 c2 c3 c4 c5 c6 c7 -> positions 0, 3, 6 -> c0, c4, c7 -> A B C A B
    assert out[0]["hard_negative_ids"] == ["c0", "c4", "c7", "c0", "c4"]
    assert out[0]["hard_negative_scores"] == pytest.approx([0.2, 0.5, 0.8, 0.2, 0.5])
    assert (stats.queries_repeated, stats.queries_fallback) == (1, 0)


def test_single_survivor_is_repeated():
    out, _ = sample_hard_negatives(rows(([0.99, 0.1, 0.99], 0.5)), num_negatives=4, show_progress=False)
    assert out[0]["hard_negative_ids"] == ["c1"] * 4


def test_fallback_draws_random_candidates_with_score_one():
    data = rows(([0.1] * 12, 0.9), ([0.99] * 12, 0.9), ([0.99] * 12, 0.9))
    out, stats = sample_hard_negatives(data, num_negatives=10, seed=7, show_progress=False)
    ids = out[1]["hard_negative_ids"]
    assert out[1]["hard_negative_scores"] == [1.0] * 10
    assert len(set(ids)) == 10 and set(ids) <= {f"c{j}" for j in range(12)}  # without replacement
    expected = np.random.default_rng([7, 1]).choice(12, size=10, replace=False)
    assert ids == [f"c{j}" for j in expected]
    assert out[1]["hard_negative_ids"] != out[2]["hard_negative_ids"]  # each row has its own stream
    assert (stats.queries_fallback, stats.false_negatives_dropped, stats.queries_with_false_negatives) == (2, 24, 2)

    again, _ = sample_hard_negatives(data, num_negatives=10, seed=7, show_progress=False)
    assert again.to_dict() == out.to_dict()
    # independent of processing order: the draw of row 2 depends on (seed, 2) only, not on the rows before it
    positions, scores, branch, _ = select_hard_negatives([0.99] * 12, 0.9, rng=np.random.default_rng([7, 2]))
    assert branch == "fallback" and out[2]["hard_negative_ids"] == [f"c{p}" for p in positions]
    other_seed, _ = sample_hard_negatives(data, num_negatives=10, seed=8, show_progress=False)
    assert other_seed[1]["hard_negative_ids"] != ids


def test_fallback_with_fewer_candidates_than_needed_samples_with_replacement():
    out, _ = sample_hard_negatives(rows(([0.99, 0.98, 0.97], 0.5)), num_negatives=10, show_progress=False)
    ids = out[0]["hard_negative_ids"]
    assert len(ids) == 10 and set(ids) <= {"c0", "c1", "c2"}
    assert out[0]["hard_negative_scores"] == [1.0] * 10


def test_stats_string_and_columns():
    data = rows(([0.1] * 50, 0.9), ([0.95] + [0.1] * 9, 0.9), ([0.99] * 5, 0.9))
    out, stats = sample_hard_negatives(data, show_progress=False)
    assert stats == SamplingStats(
        queries=3, false_negatives_dropped=6, queries_with_false_negatives=2, queries_fallback=1, queries_repeated=1
    )
    text = str(stats)
    assert "3 queries" in text and "false negatives dropped: 6" in text and "random fallback" in text
    assert out.column_names == [*data.column_names, "hard_negative_ids", "hard_negative_scores"]
    assert all(len(row) == 10 for row in out["hard_negative_ids"])


def test_errors_name_the_row():
    good = ([0.1, 0.2], 0.9)
    with pytest.raises(ValueError, match=r"row 1 \(query_id 'q1'\): candidate_ids is empty"):
        sample_hard_negatives(rows(good, ([], 0.9)), show_progress=False)
    bad = rows(good, good).map(
        lambda row, i: {"candidate_scores": row["candidate_scores"][:1] if i == 1 else row["candidate_scores"]},
        with_indices=True,
    )
    with pytest.raises(ValueError, match=r"row 1 \(query_id 'q1'\): candidate_ids has 2 entries but candidate_scores"):
        sample_hard_negatives(bad, show_progress=False)
    bad = rows(good, good).map(
        lambda row, i: {"candidate_similarities": [0.5] * 3 if i == 0 else row["candidate_similarities"]},
        with_indices=True,
    )
    with pytest.raises(ValueError, match=r"row 0 \(query_id 'q0'\).*candidate_similarities has 3"):
        sample_hard_negatives(bad, show_progress=False)
    with pytest.raises(ValueError, match=r"row 1 .*candidate_scores\[1\] is nan"):
        sample_hard_negatives(rows(good, ([0.1, float("nan")], 0.9)), show_progress=False)
    with pytest.raises(ValueError, match=r"row 0 .*pos_score is nan"):
        sample_hard_negatives(rows(([0.1], float("nan"))), show_progress=False)
    with pytest.raises(ValueError, match="lacks column"):
        sample_hard_negatives(rows(good).remove_columns("pos_score"), show_progress=False)
    for option in ({"num_negatives": 0}, {"interval": 0}, {"beta": float("nan")}):
        with pytest.raises(ValueError):
            sample_hard_negatives(rows(good), show_progress=False, **option)
