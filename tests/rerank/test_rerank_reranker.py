"""UniMEReranker: pointwise scores are YesNoScorer's, listwise answers are parsed robustly, and an answer that names no
candidate falls back to the pointwise order (counted, never a crash)."""

from __future__ import annotations

import pytest
import torch

from unime_hf.rerank.reranker import UniMEReranker, parse_listwise_answer, pointwise_order

QUERY = {"text": "find the red square", "image": None}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reranker(tiny_backbones):
    return UniMEReranker.from_pretrained(tiny_backbones["qwen2_vl"], batch_size=4)


@pytest.fixture
def candidates(red_image_path):
    return ["a red square", {"text": None, "image": red_image_path}, "a blue circle", {"text": "red", "image": ""}]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("(3)", 2),
        ("3", 2),
        (" (3).", 2),
        ("Candidate 3", 2),
        ("(1) a red square", 0),
        ("(5)", 4),
        ("\n(2)<|im_end|>", 1),
        ("(0)", None),
        ("(6)", None),
        ("12", None),
        ("", None),
        ("Yes", None),
        ("(three)", None),
        (None, None),
    ],
)
def test_parse_listwise_answer(answer, expected):
    assert parse_listwise_answer(answer, 5) == expected


def test_pointwise_order_is_stable():
    assert pointwise_order([0.2, 0.9, 0.2, 0.5]) == [1, 3, 0, 2]


def test_score_is_the_yes_no_scorer(reranker, candidates):
    from unime_hf.scoring import YesNoScorer

    scores = reranker.score(QUERY, candidates)
    expected = YesNoScorer(reranker.model, reranker.processor).score([(QUERY, c) for c in candidates])
    assert scores == pytest.approx(expected, abs=1e-6)
    assert reranker.rank(QUERY, candidates, mode="pointwise") == pointwise_order(scores)


def test_score_many_keeps_lists_apart(reranker, candidates):
    many = reranker.score_many([QUERY, QUERY], [candidates, candidates[:2]])
    assert [len(row) for row in many] == [4, 2]
    assert many[1] == pytest.approx(many[0][:2], abs=1e-6)


@pytest.mark.parametrize(
    ("answer", "best"), [("(3)", 2), (" 2.", 1), ("Candidate 4", 3), ("(9)", None), ("no idea", None), ("", None)]
)
def test_listwise_rank_and_fallback(reranker, candidates, monkeypatch, answer, best):
    monkeypatch.setattr(reranker, "listwise_answers", lambda queries, lists: [answer] * len(queries))
    before = dict(reranker.stats)
    order = reranker.rank(QUERY, candidates)
    assert sorted(order) == list(range(len(candidates)))
    fallbacks = reranker.stats["listwise_fallbacks"] - before["listwise_fallbacks"]
    assert reranker.stats["listwise_queries"] - before["listwise_queries"] == 1
    if best is None:
        assert fallbacks == 1
        assert order == pointwise_order(reranker.score(QUERY, candidates))
    else:
        assert fallbacks == 0
        assert order == [best, *(i for i in range(len(candidates)) if i != best)]  # the rest in input order


def test_listwise_rest_by_pointwise_score(tiny_backbones, candidates, monkeypatch):
    reranker = UniMEReranker.from_pretrained(tiny_backbones["qwen2_vl"], rest_order="pointwise")
    monkeypatch.setattr(reranker, "listwise_answers", lambda queries, lists: ["(2)"] * len(queries))
    scores = reranker.score(QUERY, candidates)
    assert reranker.rank(QUERY, candidates) == [1, *(i for i in pointwise_order(scores) if i != 1)]


def test_listwise_generation_runs_batched_with_images(reranker, candidates):
    """The untrained tiny model answers anything; ranking must still return permutations and count fallbacks."""
    queries = [QUERY, {"text": "<|image_1|>\nsame colour?", "image": candidates[1]["image"]}, QUERY]
    lists = [candidates, candidates[:3], candidates[1:2]]
    answers = reranker.listwise_answers(queries[:2], lists[:2])
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)
    before = dict(reranker.stats)
    orders = reranker.rank_many(queries, lists)
    assert [sorted(order) for order in orders] == [[0, 1, 2, 3], [0, 1, 2], [0]]
    assert reranker.stats["listwise_queries"] - before["listwise_queries"] == 2  # one candidate: nothing to ask
    assert 0 <= reranker.stats["listwise_fallbacks"] - before["listwise_fallbacks"] <= 2


def test_bad_inputs(reranker, candidates):
    with pytest.raises(ValueError, match="mode"):
        reranker.rank(QUERY, candidates, mode="best")
    with pytest.raises(ValueError, match="2 queries but 1 candidate lists"):
        reranker.rank_many([QUERY, QUERY], [candidates])
    with pytest.raises(TypeError, match="list of items"):
        reranker.rank(QUERY, "a red square")
    with pytest.raises(ValueError, match="rest_order"):
        UniMEReranker(reranker.model, reranker.processor, rest_order="random")
    assert reranker.rank(QUERY, []) == [] and reranker.rank(QUERY, candidates[:1]) == [0]
