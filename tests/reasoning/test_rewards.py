"""Embed-RL rewards: exact values on hand-built similarities, the TRL signature, and the Embedder glue."""

from __future__ import annotations

import math

import pytest
import torch

from unime_hf.reasoning.rewards import (
    DEFAULT_REWARD_WEIGHTS,
    EmbedderGuidedRewards,
    completion_text,
    format_reward,
    hardest_negatives,
    outcome_rewards,
    outcome_terms,
    process_rewards,
)
from unime_hf.reasoning.tcot import format_tcot

GOOD = format_tcot(keywords=["red circle"], boxes=[[0, 0, 500, 500]], rethink="ok", answer="a red circle")


def softmax_mean(values: list[float], tau: float) -> float:
    weights = [math.exp(v / tau) for v in values]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


# ------------------------------------------------------------------------------------------------------- format
def test_format_reward_standard_and_conversational():
    completions = [GOOD, "no tags at all", "<thinking>{</thinking>", "", None]
    assert format_reward(["p"] * 5, completions) == [1.0, 0.0, 0.0, 0.0, 0.0]
    conversational = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "oops"}]]
    assert format_reward(None, conversational, query_id=["a", "b"]) == [1.0, 0.0]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]
    assert completion_text(parts) == GOOD


def test_default_weights_are_the_authors():
    assert DEFAULT_REWARD_WEIGHTS == {"format": 0.05, "outcome": 0.8, "process": 0.2}


# ------------------------------------------------------------------------------------------------------ outcome
def test_outcome_single_positive_exact():
    sims = torch.tensor([[0.9, 0.5, 0.1]], dtype=torch.float64)
    positives = torch.tensor([[True, False, False]])
    margin = 0.9 - softmax_mean([0.5, 0.1], tau=1.0)
    (reward,) = outcome_rewards(sims, positives, top_n=1, temperature=1.0)
    assert reward == pytest.approx(0.5 * 1.0 * margin, abs=1e-12)
    assert reward == pytest.approx(0.2802624680, abs=1e-10)
    (scaled,) = outcome_rewards(sims, positives, top_n=1, temperature=1.0, scale=1.0)
    assert scaled == pytest.approx(margin, abs=1e-12)


def test_outcome_share_gates_the_margin():
    sims = torch.tensor([[0.5, 0.6, 0.1]], dtype=torch.float64)
    positives = torch.tensor([[True, False, False]])
    assert outcome_rewards(sims, positives, top_n=1, temperature=0.1) == [0.0]  # positive ranked 2nd
    (reward,) = outcome_rewards(sims, positives, top_n=2, temperature=0.1)
    assert reward == pytest.approx(0.5 * (0.5 - softmax_mean([0.6, 0.1], 0.1)), abs=1e-12)
    assert reward < 0  # in the top 2, but a negative is closer: the margin is negative


def test_outcome_two_positives_exact():
    sims = torch.tensor([[0.8, 0.4, 0.6, 0.2]], dtype=torch.float64)
    positives = torch.tensor([[True, True, False, False]])
    terms = outcome_terms(sims, positives, top_n=2, temperature=0.1)
    assert terms.share.tolist() == [0.5]  # ranks: 0.8 -> 0, 0.6 -> 1, 0.4 -> 2: one of two positives in the top 2
    margin = 0.6 - softmax_mean([0.6, 0.2], 0.1)
    assert terms.margin.item() == pytest.approx(margin, abs=1e-12)
    assert outcome_rewards(sims, positives, top_n=2, temperature=0.1)[0] == pytest.approx(0.25 * margin, abs=1e-12)


def test_outcome_ties_excluded_targets_and_undefined_rows():
    # a tie with a negative counts in the positive's favour; the margin is then 0
    assert outcome_rewards(torch.tensor([[0.5, 0.5]]), torch.tensor([[True, False]]), top_n=1) == [0.0]
    # a known false negative (column 1) is neither ranked nor a negative
    sims = torch.tensor([[0.5, 0.9, 0.1]], dtype=torch.float64)
    positives = torch.tensor([[True, False, False]])
    negatives = torch.tensor([[False, False, True]])
    assert outcome_rewards(sims, positives, top_n=1, negatives=negatives) == [pytest.approx(0.2, abs=1e-12)]
    # no negative: no margin; no positive: no margin
    assert outcome_rewards(torch.tensor([[0.7]]), torch.tensor([[True]])) == [None]
    assert outcome_rewards(torch.tensor([[0.7, 0.1]]), torch.tensor([[False, False]])) == [None]
    with pytest.raises(ValueError, match="shape"):
        outcome_terms(torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool))


def test_hardest_negatives():
    sims = torch.tensor([[0.9, 0.2, 0.7, 0.7, 0.8], [0.1, 0.9, 0.3, 0.2, 0.0]])
    positives = torch.tensor([[True, False, False, False, False], [False, True, False, False, False]])
    assert hardest_negatives(sims, positives, k=3) == [[4, 2, 3], [2, 3, 0]]


def test_process_reward_exact():
    assert process_rewards([2, 0, None, 1, 0], [2, 1, 0, None, 0], [0.3, 0.4, 0.5, 0.6, -0.2]) == [
        0.3,
        0.0,
        0.0,
        None,
        -0.2,
    ]
    assert process_rewards([0], [0], [float("nan")]) == [None]
    with pytest.raises(ValueError, match="picks"):
        process_rewards([0], [0, 1], [0.1])


# ---------------------------------------------------------------------------------------------- Embedder glue
class TableEmbedder:
    """Embeds an item as the vector the table gives its T-CoT (queries) or its text (targets); counts calls."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.calls: list[list[dict]] = []

    def encode(self, items, processor=None, batch_size=16, image_root=None, **kwargs):
        self.calls.append(list(items))
        return torch.tensor([self.table[item.get("cot") or item["text"]] for item in items], dtype=torch.float32)


class RecordingDiscriminator:
    def __init__(self, pick: int | None = 0):
        self.pick = pick
        self.seen: list[tuple] = []

    def __call__(self, anchors, candidate_lists):
        self.seen.append((list(anchors), [list(c) for c in candidate_lists]))
        return [self.pick] * len(anchors)


def _batch():
    # three queries, two generations each; the targets t1..t3 are one-hot, so a completion's vector is its similarity
    # row to (t1, t2, t3)
    table = {
        "t1": [1.0, 0.0, 0.0],
        "t2": [0.0, 1.0, 0.0],
        "t3": [0.0, 0.0, 1.0],
        "a0": [0.9, 0.5, 0.1],
        "a1": [0.2, 0.6, 0.1],
        "b0": [0.3, 0.8, 0.4],
        "b1": [0.1, 0.7, 0.2],
        "c0": [0.4, 0.1, 0.9],
        "c1": [0.5, 0.5, 0.5],
    }
    completions = [[{"role": "assistant", "content": c}] for c in ("a0", "a1", "b0", "b1", "c0", "c1")]
    columns = {
        "query_id": ["q1", "q1", "q2", "q2", "q3", "q3"],
        "query_text": ["find 1"] * 2 + ["find 2"] * 2 + ["find 3"] * 2,
        "query_image": [""] * 6,
        "pos_id": ["t1", "t1", "t2", "t2", "t3", "t3"],
        "pos_text": ["t1", "t1", "t2", "t2", "t3", "t3"],
        "pos_image": [""] * 6,
    }
    return table, completions, columns


def test_glue_outcome_matches_pure_function_and_caches_targets():
    table, completions, columns = _batch()
    embedder = TableEmbedder(table)
    rewards = EmbedderGuidedRewards(embedder, top_n=1, temperature=1.0)
    logged = {}
    values = rewards.outcome_reward(["p"] * 6, completions, log_metric=logged.__setitem__, **columns)
    rows = torch.tensor([table[c[0]["content"]] for c in completions])
    positives = torch.eye(3, dtype=torch.bool).repeat_interleave(2, dim=0)
    expected = outcome_rewards(rows, positives, top_n=1, temperature=1.0)
    assert values == pytest.approx(expected, abs=1e-6)
    # by hand: a0 ranks t1 first; a1 ranks t2 (a negative) first, so its share is 0
    assert values[0] == pytest.approx(0.5 * (0.9 - softmax_mean([0.5, 0.1], 1.0)), abs=1e-6)
    assert values[1] == 0.0
    assert set(logged) == {"outcome/share", "outcome/margin"}
    assert logged["outcome/share"] == pytest.approx(5 / 6)  # c1 ties all three: ties count for the positive
    # queries carry the T-CoT under "cot"; targets are embedded once, then cached
    assert embedder.calls[0] == [{"text": f"t{i}", "image": ""} for i in (1, 2, 3)]
    assert embedder.calls[1][0] == {"text": "find 1", "image": "", "cot": "a0"}
    rewards.outcome_reward(["p"] * 6, completions, **columns)  # same batch: no new Embedder call
    assert len(embedder.calls) == 2
    shifted = [[{"role": "assistant", "content": c}] for c in ("a1", "a0", "b0", "b1", "c0", "c1")]
    rewards.outcome_reward(["p"] * 6, shifted, **columns)  # new batch: only the queries are embedded
    assert len(embedder.calls) == 3 and len(embedder.calls[2]) == 6


def test_glue_process_reward_candidates_and_values():
    table, completions, columns = _batch()
    discriminator = RecordingDiscriminator(pick=0)
    rewards = EmbedderGuidedRewards(
        TableEmbedder(table), discriminator=discriminator, top_n=3, temperature=1.0, num_process_negatives=1
    )
    logged = {}
    values = rewards.process_reward(["p"] * 6, completions, log_metric=logged.__setitem__, **columns)
    anchors, candidate_lists = discriminator.seen[0]
    assert anchors[0] == {"text": "t1", "image": ""}
    # a0's hardest negative is t2, whose T-CoT at the same generation index is b0; a1's is also t2 -> b1
    assert sorted(candidate_lists[0]) == ["a0", "b0"] and sorted(candidate_lists[1]) == ["a1", "b1"]
    # c0: hardest negative t1 -> a0
    assert sorted(candidate_lists[4]) == ["a0", "c0"]
    margins = outcome_terms(
        torch.tensor([table[c[0]["content"]] for c in completions]),
        torch.eye(3, dtype=torch.bool).repeat_interleave(2, dim=0),
        temperature=1.0,
    ).margin.tolist()
    for i, (value, candidates) in enumerate(zip(values, candidate_lists)):
        own = completions[i][0]["content"]
        picked_own = candidates[0] == own
        assert value == pytest.approx(margins[i] if picked_own else 0.0, abs=1e-6)
    assert (
        logged["process/accuracy"]
        == sum(c[0] == completions[i][0]["content"] for i, c in enumerate(candidate_lists)) / 6
    )
    # the order of the candidates is seeded: the same batch gives the same order
    again = EmbedderGuidedRewards(
        TableEmbedder(table), discriminator=RecordingDiscriminator(), top_n=3, temperature=1.0, num_process_negatives=1
    )
    again.process_reward(["p"] * 6, completions, **columns)
    assert again.discriminator.seen[0][1] == candidate_lists


def test_glue_process_reward_without_negative_tcots_is_none():
    table, completions, columns = _batch()
    one_target = {key: value[:2] for key, value in columns.items()}
    rewards = EmbedderGuidedRewards(TableEmbedder(table), discriminator=RecordingDiscriminator())
    assert rewards.process_reward(["p"] * 2, completions[:2], **one_target) == [None, None]
    assert rewards.outcome_reward(["p"] * 2, completions[:2], **one_target) == [None, None]


def test_glue_errors_and_reward_function_list():
    table, completions, columns = _batch()
    rewards = EmbedderGuidedRewards(TableEmbedder(table))
    assert [f.__name__ for f in rewards.reward_functions()] == ["format_reward", "outcome_reward"]
    with pytest.raises(ValueError, match="discriminator"):
        rewards.reward_functions(process=True)
    with pytest.raises(ValueError, match="discriminator"):
        rewards.process_reward(["p"] * 6, completions, **columns)
    del columns["pos_id"]
    with pytest.raises(KeyError, match="pos_id"):
        rewards.outcome_reward(["p"] * 6, completions, **columns)
    with pytest.raises(ValueError, match="cot_mode"):
        EmbedderGuidedRewards(TableEmbedder(table), cot_mode="thinking")
    with_process = EmbedderGuidedRewards(TableEmbedder(table), discriminator=RecordingDiscriminator())
    names = [f.__name__ for f in with_process.reward_functions()]
    assert names == ["format_reward", "outcome_reward", "process_reward"]


def test_glue_answer_mode_embeds_only_the_answer():
    table = {"t1": [1.0, 0.0], "t2": [0.0, 1.0], "a red circle": [0.8, 0.2], "garbled": [0.1, 0.9]}
    embedder = TableEmbedder(table)
    rewards = EmbedderGuidedRewards(embedder, cot_mode="answer", top_n=1, temperature=1.0)
    columns = {
        "query_id": ["q1", "q2"],
        "query_text": ["x", "y"],
        "query_image": ["", ""],
        "pos_id": ["t1", "t2"],
        "pos_text": ["t1", "t2"],
        "pos_image": ["", ""],
    }
    values = rewards.outcome_reward(["p", "p"], [GOOD, "garbled"], **columns)
    assert [item["cot"] for item in embedder.calls[-1]] == ["a red circle", "garbled"]
    assert values == pytest.approx([0.5 * (0.8 - 0.2), 0.5 * (0.9 - 0.1)], abs=1e-6)
