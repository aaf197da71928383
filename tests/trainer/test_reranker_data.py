"""Reranker rows: prompts carry every query/candidate text and image, the hardest negative is used, the positive's
listwise position is uniform, and TRL's collator puts labels on the answer tokens only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from unime_hf.data.schema import DataFormatError
from unime_hf.scoring import JUDGE_PROMPT, build_pair_content
from unime_hf.trainer.reranker_data import (
    LISTWISE,
    LISTWISE_PROMPT,
    PAIRWISE,
    build_listwise_content,
    build_reranker_rows,
    count_image_parts,
    format_listwise_answer,
    ranked_negatives,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def make_mined(root: Path, num_queries: int = 6, num_items: int = 12):
    """A corpus of text-only, image-only and image+text items and mined rows over it (6 hard negatives, scored)."""
    import datasets
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    corpus = []
    for i in range(num_items):
        colour = names[i % len(names)]
        path = ""
        if i % 3:
            path = str(root / f"item{i}.png")
            Image.new("RGB", (28, 28), COLOURS[colour]).save(path)
        text = (
            "" if i % 3 == 1 else f"<|image_1|>\nitem {i}: a {colour} thing" if path else f"item {i}: {colour} words"
        )
        corpus.append({"id": f"c{i}", "text": text, "image": path})
    rows = []
    for q in range(num_queries):
        positive = corpus[q % num_items]
        others = [item["id"] for item in corpus if item["id"] != positive["id"]]
        negatives = [others[(q + 2 * k) % len(others)] for k in range(6)]
        query_image = corpus[(q + 1) % num_items]["image"] if q % 2 else ""
        rows.append(
            {
                "query_id": f"q{q}",
                "query_text": f"query {q}: find it" if not query_image else f"<|image_1|>\nquery {q}: find a match",
                "query_image": query_image,
                "pos_id": positive["id"],
                "pos_text": positive["text"],
                "pos_image": positive["image"],
                "pos_score": 0.95,
                "hard_negative_ids": negatives,
                "hard_negative_scores": [0.1 * ((q + k) % 6) for k in range(6)],
            }
        )
    return datasets.Dataset.from_list(rows), datasets.Dataset.from_list(corpus)


@pytest.fixture(scope="module")
def mined_data(tmp_path_factory):
    return make_mined(tmp_path_factory.mktemp("reranker-data"))


def _texts(prompt) -> str:
    return "".join(part["text"] or "" for message in prompt for part in message["content"] if part["type"] == "text")


def _strip_placeholder(text: str) -> str:
    return text.replace("<|image_1|>", "")


def test_every_prompt_holds_its_query_and_candidates(mined_data):
    mined, corpus = mined_data
    items = {row["id"]: row for row in corpus}
    rows = build_reranker_rows(mined, corpus, list_size=3, seed=0)
    queries = {row["query_id"]: row for row in mined}
    assert Counter(rows["task"]) == {PAIRWISE: 2 * len(mined), LISTWISE: len(mined)}
    for row in rows:
        query = queries[row["query_id"]]
        text = _texts(row["prompt"])
        expected_images = [query["query_image"]] if query["query_image"] else []
        assert _strip_placeholder(query["query_text"]) in text
        for candidate_id in row["candidate_ids"]:
            candidate = items[candidate_id]
            assert _strip_placeholder(candidate["text"]) in text
            if candidate["image"]:
                expected_images.append(candidate["image"])
        assert row["images"] == expected_images  # paths, in prompt order
        assert count_image_parts(row["prompt"]) == len(row["images"])
        assert "<|image_1|>" not in text
        if row["task"] == PAIRWISE:
            assert text.startswith(JUDGE_PROMPT.split("{query}")[0])
        else:
            assert text.startswith(LISTWISE_PROMPT.split("{query}")[0])
            for k in range(1, len(row["candidate_ids"]) + 1):
                assert f"({k}) " in text


def test_pairwise_rows_use_the_positive_and_the_hardest_negative(mined_data):
    mined, corpus = mined_data
    rows = build_reranker_rows(mined, corpus, listwise_ratio=0, seed=0)
    assert len(rows) == 2 * len(mined)
    for query, yes, no in zip(mined, rows.select(range(0, len(rows), 2)), rows.select(range(1, len(rows), 2))):
        assert (yes["answer"], no["answer"]) == ("Yes", "No")
        assert yes["candidate_ids"] == [query["pos_id"]]
        scores = dict(zip(query["hard_negative_ids"], query["hard_negative_scores"]))
        assert scores[no["candidate_ids"][0]] == max(scores.values())
        assert no["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": "No"}]}]


def test_pairwise_prompt_is_the_scorer_prompt(mined_data):
    mined, corpus = mined_data
    rows = build_reranker_rows(mined, corpus, listwise_ratio=0, seed=0)
    query = mined[1]
    expected = build_pair_content(
        {"text": query["query_text"], "image": query["query_image"]},
        {"text": query["pos_text"], "image": query["pos_image"]},
    )
    content = rows[2]["prompt"][0]["content"]
    assert [{k: v for k, v in part.items() if v is not None} for part in content] == expected.content


def test_listwise_rows_take_the_top_x_and_answer_the_positive(mined_data):
    mined, corpus = mined_data
    rows = build_reranker_rows(mined, corpus, list_size=3, pairwise_ratio=0, listwise_ratio=3, seed=1)
    assert len(rows) == 3 * len(mined)
    for row in rows:
        query = mined[int(row["query_id"][1:])]
        top = ranked_negatives(query["hard_negative_ids"], query["hard_negative_scores"], query["pos_id"])[:3]
        assert len(row["candidate_ids"]) == 4
        assert row["candidate_ids"][row["target"]] == query["pos_id"]
        assert sorted(c for c in row["candidate_ids"] if c != query["pos_id"]) == sorted(top)
        assert row["answer"] == f"({row['target'] + 1})"
        assert row["completion"][0]["content"][0]["text"] == row["answer"]


def test_listwise_position_is_uniform(tmp_path):
    """Every position 1..x+1 occurs, the last included (the authors' code never put the positive there), with
    frequencies a chi-square test does not reject."""
    import datasets

    mined, corpus = make_mined(tmp_path, num_queries=1)
    draws = 1000
    many = datasets.Dataset.from_list([mined[0]] * draws)
    x = 4
    rows = build_reranker_rows(many, corpus, list_size=x, pairwise_ratio=0, seed=3)
    counts = Counter(rows["target"])
    assert sorted(counts) == list(range(x + 1))
    expected = draws / (x + 1)
    chi_square = sum((counts[k] - expected) ** 2 / expected for k in range(x + 1))
    assert chi_square < 18.47  # 4 degrees of freedom, p = 0.001


def test_rows_are_seeded(mined_data):
    mined, corpus = mined_data
    first = build_reranker_rows(mined, corpus, list_size=3, pairwise_ratio=0.5, listwise_ratio=1.5, seed=7)
    again = build_reranker_rows(mined, corpus, list_size=3, pairwise_ratio=0.5, listwise_ratio=1.5, seed=7)
    other = build_reranker_rows(mined, corpus, list_size=3, pairwise_ratio=0.5, listwise_ratio=1.5, seed=8)
    assert first.to_list() == again.to_list()
    assert first.to_list() != other.to_list()


def test_ranked_negatives_drop_repeats_and_the_positive():
    assert ranked_negatives(["a", "b", "a", "p", "c"], [0.3, 0.9, 0.3, 1.0, 0.3], exclude="p") == ["b", "a", "c"]


def test_listwise_content_layout():
    prepared = build_listwise_content(
        {"text": "<|image_1|>\nfind the red one", "image": "q.png"},
        [{"text": "", "image": "a.png"}, "a red square", {"text": "red <|image_1|> here", "image": "b.png"}],
    )
    assert [side for side, _ in prepared.images] == ["query", "candidate 1", "candidate 3"]
    text = "".join(part.get("text", "<IMG>") for part in prepared.content)
    assert text.endswith("Candidates: (1) <IMG> (2) a red square (3) red <IMG> here.")
    assert format_listwise_answer(0) == "(1)"


def test_bad_data_names_the_row(mined_data):
    mined, corpus = mined_data
    broken = mined.map(lambda row, i: {"hard_negative_ids": ["nope"] * 6} if i == 2 else {}, with_indices=True)
    with pytest.raises(DataFormatError, match=r"row 2, column 'hard_negative_ids'.*'nope' is not a corpus id"):
        build_reranker_rows(broken, corpus)
    with pytest.raises(DataFormatError, match="missing columns"):
        build_reranker_rows(mined.remove_columns("pos_id"), corpus)
    empty = mined.map(lambda row, i: {"query_text": "", "query_image": ""} if i == 1 else {}, with_indices=True)
    with pytest.raises(DataFormatError, match=r"row 1, column 'query_text/query_image'.*neither text nor image"):
        build_reranker_rows(empty, corpus)
    with pytest.raises(ValueError, match="list_size"):
        build_reranker_rows(mined, corpus, list_size=0)
    with pytest.raises(ValueError, match="both 0"):
        build_reranker_rows(mined, corpus, pairwise_ratio=0, listwise_ratio=0)


@pytest.mark.parametrize("kind", ["qwen2_vl", "llava_onevision"])
def test_collator_labels_only_the_answer(kind, mined_data, tiny_backbones):
    from transformers import AutoProcessor

    from unime_hf.trainer.reranker_trainer import RerankerCollator

    mined, corpus = mined_data
    processor = AutoProcessor.from_pretrained(tiny_backbones[kind], trust_remote_code=True)
    rows = build_reranker_rows(mined.select(range(4)), corpus, list_size=3, seed=0)
    examples = [rows[i] for i in range(len(rows))]
    batch = RerankerCollator(processor)(examples)
    tokenizer = processor.tokenizer
    assert batch["labels"].shape == batch["input_ids"].shape
    for row, labels, ids, mask in zip(examples, batch["labels"], batch["input_ids"], batch["attention_mask"]):
        labelled = labels != -100
        # TRL trains the completion as the chat template renders it: the answer, then the end-of-turn token and the
        # template's newline.
        assert tokenizer.decode(labels[labelled]) == row["answer"] + "<|im_end|>\n"
        assert bool((labels[labelled] == ids[labelled]).all())
        # The labelled tokens are the last real tokens of the row: nothing of the prompt carries a label.
        real = mask.nonzero().flatten()
        assert labelled.nonzero().flatten().tolist() == real[-int(labelled.sum()) :].tolist()
    images = sum(len(row["images"]) for row in examples)
    assert images > 0 and "pixel_values" in batch
