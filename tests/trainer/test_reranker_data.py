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


@pytest.fixture(scope="module")
def grouped_mined(tmp_path_factory):
    """Seven queries with positives c0..c6 in groups A (q0-q2), B (q3-q5) and C (q6 alone); q0's judge scored
    c1 (another query's positive) above its positive's score - beta, a false negative."""
    mined, corpus = make_mined(tmp_path_factory.mktemp("grouped"), num_queries=7)
    candidates = [["c1", "c7"] if i == 0 else [] for i in range(7)]
    scores = [[0.99, 0.2] if i == 0 else [] for i in range(7)]
    mined = mined.add_column("dataset", ["A"] * 3 + ["B"] * 3 + ["C"])
    mined = mined.add_column("candidate_ids", candidates).add_column("candidate_scores", scores)
    return mined, corpus


def test_random_negatives_are_other_positives_of_the_group(grouped_mined, caplog):
    mined, corpus = grouped_mined
    with caplog.at_level("WARNING", logger="unime_hf.trainer.reranker_data"):
        rows = build_reranker_rows(
            mined,
            corpus,
            pairwise_ratio=0,
            listwise_ratio=0,
            random_negative_ratio=20,
            negative_group_column="dataset",
        )
    assert "1 of 7 queries have no other positive with the same 'dataset'" in caplog.text
    drawn: dict[str, Counter] = {}
    for yes, no in zip(rows.select(range(0, len(rows), 2)), rows.select(range(1, len(rows), 2))):
        assert (yes["answer"], no["answer"]) == ("Yes", "No")
        assert yes["query_id"] == no["query_id"] and yes["task"] == no["task"] == PAIRWISE
        query = int(yes["query_id"][1:])
        assert yes["candidate_ids"] == [f"c{query}"]
        (negative,) = no["candidate_ids"]
        drawn.setdefault(yes["query_id"], Counter())[negative] += 1
        item = corpus[int(negative[1:])]
        assert _strip_placeholder(item["text"]).strip() in _texts(no["prompt"])
        assert no["images"] == ([yes["images"][0]] if mined[query]["query_image"] else []) + (
            [item["image"]] if item["image"] else []
        )
    # q0: c2 only (c0 is its positive, c1 a judged false negative); q1, q2: the other two of group A; q6: nothing.
    assert drawn["q0"] == Counter({"c2": 20})
    assert set(drawn["q1"]) == {"c0", "c2"} and set(drawn["q2"]) == {"c0", "c1"}
    assert all(set(drawn[f"q{q}"]) == {"c3", "c4", "c5"} - {f"c{q}"} for q in (3, 4, 5))
    assert all(sum(drawn[f"q{q}"].values()) == 20 for q in range(6)) and "q6" not in drawn


def test_random_negatives_leave_the_paper_rows_as_they_were(grouped_mined):
    mined, corpus = grouped_mined
    paper = build_reranker_rows(mined, corpus, list_size=3, pairwise_ratio=1.5, listwise_ratio=1, seed=3)
    mixed = build_reranker_rows(
        mined, corpus, list_size=3, pairwise_ratio=1.5, listwise_ratio=1, seed=3, random_negative_ratio=2
    )
    positives = set(mined["pos_id"])
    for query in mined["query_id"]:
        before = [r for r in paper if r["query_id"] == query]
        after = [r for r in mixed if r["query_id"] == query]
        pairwise = sum(r["task"] == PAIRWISE for r in before)
        added = after[pairwise : len(after) - (len(before) - pairwise)]
        # Per query: the paper's pairwise rows, then the random groups (Yes, No), then the paper's listwise rows.
        assert after[:pairwise] + after[pairwise + len(added) :] == before
        assert [r["answer"] for r in added] == ["Yes", "No", "Yes", "No"]
        assert all(r["candidate_ids"][0] in positives - {"c" + query[1:]} for r in added[1::2])


def test_random_negative_errors_name_what_is_wrong(grouped_mined):
    mined, corpus = grouped_mined
    with pytest.raises(DataFormatError, match=r"train: `negative_group_column` 'source' is not a column"):
        build_reranker_rows(mined, corpus, random_negative_ratio=1, negative_group_column="source")
    short = mined.map(lambda row, i: {"candidate_scores": [0.5]} if i == 0 else {}, with_indices=True)
    with pytest.raises(DataFormatError, match=r"row 0, column 'candidate_scores': 1 scores for 2 candidates"):
        build_reranker_rows(short, corpus, random_negative_ratio=1)
    unscored = mined.map(lambda row, i: {"pos_score": None} if i == 3 else {}, with_indices=True)
    with pytest.raises(DataFormatError, match=r"row 3, column 'pos_score': None is not a judge score"):
        build_reranker_rows(unscored, corpus, random_negative_ratio=1)
    with pytest.raises(ValueError, match="`random_negative_ratio` must be a number >= 0, got -1"):
        build_reranker_rows(mined, corpus, random_negative_ratio=-1)


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
    with pytest.raises(ValueError, match="are all 0"):
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
