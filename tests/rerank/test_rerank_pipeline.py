"""RetrieveRerankPipeline: the corpus is embedded once, each query gets its top k, in the reranker's order."""

from __future__ import annotations

import pytest
import torch

from unime_hf.rerank.pipeline import RetrieveRerankPipeline

WORDS = ["red", "green", "blue", "yellow", "pink", "cyan"]


class CountingEmbedder:
    """Embeds an item as a fixed vector per colour word (plus a little of every other word), counting calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, items, batch_size=16, instruction=None, **kwargs):
        self.calls.append(len(items))
        rows = []
        for item in items:
            text = item["text"] or ""
            rows.append([1.0 if word in text else 0.1 * (i + 1) / len(WORDS) for i, word in enumerate(WORDS)])
        return torch.tensor(rows)


class ReversingReranker:
    def rank(self, query, candidates):
        return list(range(len(candidates)))[::-1]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def corpus():
    import datasets

    rows = [{"id": f"c{i}", "text": f"a {word} thing", "image": ""} for i, word in enumerate(WORDS)]
    rows.append({"id": "both", "text": "red and green", "image": ""})
    return datasets.Dataset.from_list(rows)


def test_retrieval_only_and_corpus_cache(corpus):
    embedder = CountingEmbedder()
    pipeline = RetrieveRerankPipeline(embedder, None, corpus, top_k=3)
    results = pipeline(["red", {"text": "green", "image": None}])
    assert [len(rows) for rows in results] == [3, 3]
    assert {results[0][0]["id"], results[0][1]["id"]} == {"c0", "both"}
    for rows in results:
        scores = [row["embedding_score"] for row in rows]
        assert scores == sorted(scores, reverse=True)
        assert [row["rank"] for row in rows] == [row["retrieval_rank"] for row in rows] == [0, 1, 2]
        assert all(row["rerank_score"] is None for row in rows)
    pipeline("blue")
    assert embedder.calls == [len(corpus), 2, 1]  # the corpus once, then only queries
    single = pipeline("blue")
    assert isinstance(single, list) and single[0]["id"] == "c2" and single[0]["text"] == "a blue thing"


def test_any_reranker_with_rank(corpus):
    pipeline = RetrieveRerankPipeline(CountingEmbedder(), ReversingReranker(), corpus, top_k=4)
    rows = pipeline(["yellow"])[0]
    assert [row["retrieval_rank"] for row in rows] == [3, 2, 1, 0]
    assert [row["rank"] for row in rows] == [0, 1, 2, 3]


def test_pointwise_pipeline_is_in_rerank_score_order(corpus, tiny_backbones):
    from unime_hf.rerank import UniMEReranker

    reranker = UniMEReranker.from_pretrained(tiny_backbones["qwen2_vl"])
    pipeline = RetrieveRerankPipeline(CountingEmbedder(), reranker, corpus, top_k=5, mode="pointwise")
    results = pipeline(["red", "cyan"])
    for query, rows in zip(["red", "cyan"], results):
        assert len(rows) == 5
        scores = [row["rerank_score"] for row in rows]
        assert scores == sorted(scores, reverse=True)
        candidates = [{"text": row["text"], "image": None} for row in sorted(rows, key=lambda r: r["retrieval_rank"])]
        expected = reranker.score(query, candidates)
        assert sorted(scores, reverse=True) == pytest.approx(sorted(expected, reverse=True), abs=1e-6)


def test_listwise_pipeline_returns_permutations(corpus, tiny_backbones):
    from unime_hf.rerank import UniMEReranker

    reranker = UniMEReranker.from_pretrained(tiny_backbones["qwen2_vl"], max_new_tokens=4)
    pipeline = RetrieveRerankPipeline(CountingEmbedder(), reranker, corpus, top_k=3)
    rows = pipeline(["pink"])[0]
    assert sorted(row["retrieval_rank"] for row in rows) == [0, 1, 2]
    assert reranker.stats["listwise_queries"] == 1


def test_corpus_as_a_list_and_bad_arguments(red_image_path):
    pipeline = RetrieveRerankPipeline(CountingEmbedder(), None, ["red words", {"id": "x", "text": "blue"}], top_k=5)
    rows = pipeline("blue")
    assert pipeline.top_k == 2 and rows[0]["id"] == "x" and rows[1]["id"] == "0"
    with pytest.raises(ValueError, match="top_k"):
        RetrieveRerankPipeline(CountingEmbedder(), None, ["a"], top_k=0)
    with pytest.raises(TypeError, match="rank"):
        RetrieveRerankPipeline(CountingEmbedder(), object(), ["a"])
    with pytest.raises(ValueError, match="empty"):
        RetrieveRerankPipeline(CountingEmbedder(), None, [])
    image_only = RetrieveRerankPipeline(CountingEmbedder(), None, [red_image_path])
    assert image_only.items == [{"text": None, "image": red_image_path}]


class TableReranker:
    """Pointwise P(Yes) from a table of candidate texts."""

    def __init__(self, probabilities) -> None:
        self.probabilities = probabilities

    def rank(self, query, candidates):
        raise AssertionError("an interpolating pipeline orders by score_many, not rank")

    def score_many(self, queries, candidate_lists):
        return [[self.probabilities[c["text"]] for c in candidates] for candidates in candidate_lists]


def test_interpolation_orders_by_embedding_and_rerank_scores(corpus):
    from unime_hf.rerank.interpolation import interpolated_order

    # "red" retrieves c0 and "both" (tied near the top), then the rest; the reranker prefers "a cyan thing".
    probabilities = {row["text"]: 0.5 for row in corpus}
    probabilities["a cyan thing"] = 0.95
    for weight, cyan_first in ((0.1, False), (10.0, True)):
        pipeline = RetrieveRerankPipeline(
            CountingEmbedder(), TableReranker(probabilities), corpus, top_k=4, mode="pointwise", interpolation=weight
        )
        rows = pipeline(["red"])[0]
        by_retrieval = sorted(rows, key=lambda row: row["retrieval_rank"])
        expected = interpolated_order(
            [row["embedding_score"] for row in by_retrieval], [row["rerank_score"] for row in by_retrieval], weight
        )
        assert [row["retrieval_rank"] for row in rows] == expected
        assert (rows[0]["text"] == "a cyan thing") is cyan_first
        assert "a cyan thing" in [row["text"] for row in rows]  # the reranker's favourite is in the top 4


def test_interpolation_arguments(corpus):
    table = TableReranker({})
    with pytest.raises(ValueError, match="needs mode='pointwise', not 'listwise'"):
        RetrieveRerankPipeline(CountingEmbedder(), table, corpus, interpolation=1.0)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        RetrieveRerankPipeline(CountingEmbedder(), table, corpus, mode="pointwise", interpolation=-2.0)
    with pytest.raises(TypeError, match="score_many"):
        RetrieveRerankPipeline(CountingEmbedder(), ReversingReranker(), corpus, mode="pointwise", interpolation=1.0)
