"""Canonical layouts: content ids, corpus building and merging, and row-precise validation."""

from __future__ import annotations

import datasets
import pytest

from unime_hf.data import schema
from unime_hf.data.schema import CorpusBuilder, DataFormatError, item_id, merge_corpora, query_id


def corpus_of(*items: tuple[str, str]) -> datasets.Dataset:
    builder = CorpusBuilder()
    for text, image in items:
        builder.add(text, image)
    return builder.to_dataset()


def pairs_of(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=schema.pairs_features())


def pair(query: str = "q", pos: str = "p", **changes) -> dict:
    row = {
        "query_id": query_id(query, ""),
        "query_text": query,
        "query_image": "",
        "pos_id": item_id(pos, ""),
        "pos_text": pos,
        "pos_image": "",
    }
    return {**row, **changes}


def test_ids_are_content_hashes():
    assert item_id("a", "") == item_id("a", "") != item_id("a", "/x.png")
    assert item_id("a", "") != item_id("", "a")  # text and image are kept apart
    assert item_id("a", "").startswith("c") and query_id("a", "").startswith("q")
    assert len(item_id("a", "")) == 17


def test_corpus_builder_dedupes_in_first_seen_order():
    builder = CorpusBuilder()
    first = builder.add("b", "")
    assert builder.add("a", "/img.png") != first
    assert builder.add("b", "") == first
    corpus = builder.to_dataset()
    assert corpus["text"] == ["b", "a"] and corpus["image"] == ["", "/img.png"]
    assert corpus.features == schema.corpus_features()
    schema.validate_corpus(corpus)


def test_merge_corpora_unites_by_id():
    merged = merge_corpora(corpus_of(("a", ""), ("b", "")), corpus_of(("b", ""), ("c", "")))
    assert merged["text"] == ["a", "b", "c"]


def test_validate_corpus_errors():
    good = corpus_of(("a", ""), ("b", ""))
    rows = good.to_list()
    with pytest.raises(DataFormatError, match=r"corpus: row 1, column 'id': id 'x' is not item_id"):
        schema.validate_corpus(datasets.Dataset.from_list([rows[0], {**rows[1], "id": "x"}]))
    with pytest.raises(DataFormatError, match=r"row 1, column 'id': duplicate of row 0"):
        schema.validate_corpus(datasets.Dataset.from_list([rows[0], rows[0]]))
    with pytest.raises(DataFormatError, match=r"row 0, column 'text/image': empty item"):
        schema.validate_corpus(datasets.Dataset.from_list([{"id": item_id("", ""), "text": "", "image": ""}]))
    with pytest.raises(DataFormatError, match=r"missing columns \['image'\]"):
        schema.validate_corpus(good.remove_columns("image"))


def test_validate_pairs_against_the_corpus():
    corpus = corpus_of(("p", ""), ("n", ""))
    schema.validate_pairs(pairs_of([pair(), pair("q2")]), corpus)
    with pytest.raises(DataFormatError, match=r"train: row 1, column 'pos_id': 'c[0-9a-f]+' is not a corpus id"):
        schema.validate_pairs(pairs_of([pair(), pair(pos="other")]), corpus)
    with pytest.raises(DataFormatError, match=r"row 0, column 'pos_id': the corpus item differs"):
        schema.validate_pairs(pairs_of([pair(pos_text="n")]), corpus)
    with pytest.raises(DataFormatError, match=r"row 0, column 'query_text/query_image': empty item"):
        schema.validate_pairs(pairs_of([pair(query_text="")]), corpus)
    with_negs = pairs_of([pair()]).add_column("neg_ids", [["c" + "f" * 16]])
    with pytest.raises(DataFormatError, match=r"row 0, column 'neg_ids'"):
        schema.validate_pairs(with_negs, corpus)


def test_validate_mined_and_training_dataset():
    corpus = corpus_of(("p", ""), ("n", ""))
    neg = item_id("n", "")
    row = {**pair(), "pos_score": 0.9, "hard_negative_ids": [neg, neg], "hard_negative_scores": [0.1, 0.2]}
    mined = datasets.Dataset.from_list([row], features=schema.mined_features())
    schema.validate_training_dataset(datasets.DatasetDict({"train": mined, "corpus": corpus}))
    bad = datasets.Dataset.from_list([{**row, "hard_negative_scores": [0.1]}], features=schema.mined_features())
    with pytest.raises(DataFormatError, match=r"\[train\]: row 0, column 'hard_negative_scores': 1 scores for 2"):
        schema.validate_training_dataset({"train": bad, "corpus": corpus})
    nan = datasets.Dataset.from_list([{**row, "pos_score": float("nan")}], features=schema.mined_features())
    with pytest.raises(DataFormatError, match=r"row 0, column 'pos_score': score is nan"):
        schema.validate_mined(nan, corpus)
    with pytest.raises(DataFormatError, match=r"missing split 'corpus'"):
        schema.validate_training_dataset({"train": mined})


def test_validate_eval_errors():
    row = {"dataset": "d", "query_text": "q", "query_image": "", "candidate_texts": ["a"], "candidate_images": [""]}
    schema.validate_eval(datasets.Dataset.from_list([row], features=schema.eval_features()))
    bad = {**row, "candidate_images": ["", ""]}
    with pytest.raises(DataFormatError, match=r"eval: row 0, column 'candidate_images': 2 images for 1 texts"):
        schema.validate_eval(datasets.Dataset.from_list([bad], features=schema.eval_features()))
