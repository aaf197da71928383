"""MMEB: Precision@1 and its aggregation on hand-built cases, ties, reranking, and the runner end to end on a tiny
model with small MMEB-format files (candidates embedded once)."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from unime_hf.evaluation.mmeb import (
    MMEB_DATASETS,
    Reranker,
    aggregate_mmeb,
    discover_mmeb_files,
    evaluate_mmeb,
    gold_rank,
    load_mmeb_datasets,
    mmeb_dataset_info,
    precision_at_1,
    rank_candidates,
    read_dataset_info,
)


# ---------------------------------------------------------------------------------------------- the MMEB table
def test_mmeb_table_has_the_papers_36_datasets():
    assert len(MMEB_DATASETS) == 36
    tasks = [task for task, _ in MMEB_DATASETS.values()]
    assert {t: tasks.count(t) for t in set(tasks)} == {
        "classification": 10,
        "vqa": 10,
        "retrieval": 12,
        "grounding": 4,
    }
    splits = [split for _, split in MMEB_DATASETS.values()]
    assert splits.count("ind") == 20 and splits.count("ood") == 16
    assert mmeb_dataset_info("imagenet_1k") == ("classification", "ind")
    assert mmeb_dataset_info("Visual7W-Pointing") == ("grounding", "ood")
    assert mmeb_dataset_info("visual7w") == ("vqa", "ind")
    assert mmeb_dataset_info("shapes_t2i") is None


# ------------------------------------------------------------------------------------------------ pure metrics
def test_precision_at_1_with_known_similarities():
    scores = [
        [0.9, 0.1, 0.3],  # gold best -> hit
        [0.2, 0.8, 0.1],  # candidate 1 best -> miss
        [0.5, 0.5, 0.1],  # tie with a distinct candidate
        [0.7, 0.6, 0.7],  # tie with a duplicate of the gold (candidate 2 is the gold item again)
    ]
    same = [None, None, None, [True, False, True]]
    same_as_gold = [s if s is not None else [True] + [False] * 2 for s in same]
    assert precision_at_1(scores, same_as_gold) == pytest.approx(2 / 4)  # rows 0 and 3
    assert precision_at_1(scores, same_as_gold, ties="first") == pytest.approx(3 / 4)  # argmax: row 2 too
    assert rank_candidates([0.2, 0.8, 0.1]) == [1, 0, 2]
    assert gold_rank([1, 0, 2]) == 2
    assert rank_candidates([0.5, 0.5, 0.5, 0.1]) == [1, 2, 0, 3]
    assert rank_candidates([0.5, 0.5, 0.5, 0.1], ties="first") == [0, 1, 2, 3]
    assert rank_candidates([0.7, 0.6, 0.7], [True, False, True]) == [0, 2, 1]


def test_aggregation_per_meta_task_ind_ood_overall():
    scores = {
        "ImageNet-1K": 0.6,  # classification, IND
        "Place365": 0.2,  # classification, OOD
        "OK-VQA": 0.5,  # vqa, IND
        "MSCOCO_t2i": 0.9,  # retrieval, IND
        "RefCOCO": 0.4,  # grounding, OOD
        "mine": 0.1,  # unknown: overall only, unless mapped
    }
    result = aggregate_mmeb(scores)
    assert result["meta_tasks"] == pytest.approx(
        {"classification": 0.4, "vqa": 0.5, "retrieval": 0.9, "grounding": 0.4}
    )
    assert list(result["meta_tasks"]) == ["classification", "vqa", "retrieval", "grounding"]
    assert result["ind"] == pytest.approx((0.6 + 0.5 + 0.9) / 3)
    assert result["ood"] == pytest.approx((0.2 + 0.4) / 2)
    assert result["overall"] == pytest.approx(2.7 / 6)
    assert result["num_datasets"] == {
        "classification": 2,
        "vqa": 1,
        "retrieval": 1,
        "grounding": 1,
        "ind": 3,
        "ood": 2,
        "overall": 6,
    }
    mapped = aggregate_mmeb(scores, meta_tasks={"mine": "vqa"}, splits={"mine": "ood"})
    assert mapped["meta_tasks"]["vqa"] == pytest.approx(0.3)
    assert mapped["ood"] == pytest.approx((0.2 + 0.4 + 0.1) / 3)
    only_ind = aggregate_mmeb({"VOC2007": 1.0})
    assert only_ind["ood"] is None and only_ind["ind"] == 1.0
    with pytest.raises(ValueError, match="split"):
        aggregate_mmeb(scores, splits={"mine": "test"})


# ------------------------------------------------------------------------------------- runner, fake embedder
VECTORS = {
    "q-cat": [1.0, 0.0, 0.0],
    "q-dog": [0.0, 1.0, 0.0],
    "q-tie": [0.0, 0.0, 1.0],
    "cat": [0.9, 0.1, 0.0],
    "dog": [0.1, 0.9, 0.0],
    "bird": [0.5, 0.5, 0.0],
    "fish": [0.0, 0.3, 0.95],
    "eel": [0.0, 0.3, 0.95],  # exactly as close to q-tie as fish
}


class CountingEmbedder:
    name_or_path = "fake/counting"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def encode(self, items, batch_size=16, instruction=None):
        keys = [item["text"] for item in items]
        self.calls.append((keys, instruction))
        return torch.tensor([VECTORS[key] for key in keys])


def _rows(rows: list[tuple[str, list[str]]], name: str) -> Dataset:
    return Dataset.from_dict(
        {
            "dataset": [name] * len(rows),
            "query_text": [q for q, _ in rows],
            "query_image": [""] * len(rows),
            "candidate_texts": [c for _, c in rows],
            "candidate_images": [[""] * len(c) for _, c in rows],
        }
    )


def test_runner_scores_aggregates_and_embeds_candidates_once():
    data = {
        "VOC2007": _rows([("q-cat", ["cat", "dog", "bird"]), ("q-dog", ["cat", "dog", "bird"])], "VOC2007"),
        "GQA": _rows([("q-dog", ["dog", "cat"]), ("q-tie", ["fish", "eel"]), ("q-tie", ["fish", "dog"])], "GQA"),
    }
    embedder = CountingEmbedder()
    result = evaluate_mmeb(data, embedder, query_instructions={"GQA": "Answer:"}, candidate_instructions="Item:")
    metrics = result.metrics
    assert metrics["datasets"]["VOC2007"]["precision@1"] == 0.5  # q-dog's gold is cat -> miss
    assert metrics["datasets"]["GQA"]["precision@1"] == pytest.approx(2 / 3)  # fish/eel tie -> miss (strict)
    assert metrics["meta_tasks"] == pytest.approx({"classification": 0.5, "vqa": 2 / 3})
    assert metrics["ind"] == 0.5 and metrics["ood"] == pytest.approx(2 / 3)
    assert metrics["overall"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics["datasets"]["GQA"]["meta_task"] == "vqa" and metrics["datasets"]["GQA"]["split"] == "ood"
    # every distinct item of a dataset embedded exactly once, with the dataset's instructions
    assert embedder.calls == [
        (["q-cat", "q-dog"], None),
        (["cat", "dog", "bird"], "Item:"),
        (["q-dog", "q-tie"], "Answer:"),
        (["dog", "cat", "fish", "eel"], "Item:"),
    ]
    assert metrics["encoded_items"] == 2 + 3 + 2 + 4
    assert metrics["num_queries"] == 5
    # predictions
    assert len(result.predictions) == 5
    miss = result.predictions[1]
    assert miss == {
        "dataset": "VOC2007",
        "row": 1,
        "prediction": 1,
        "gold_rank": 3,
        "correct": False,
        "score": pytest.approx(0.9 / (0.1**2 + 0.9**2) ** 0.5),
        "gold_score": pytest.approx(0.1 / (0.1**2 + 0.9**2) ** 0.5),
        "num_candidates": 3,
    }
    tie = result.predictions[3]
    assert (tie["prediction"], tie["gold_rank"], tie["correct"]) == (1, 2, False)
    # MMEB's argmax takes the tie
    first = evaluate_mmeb(data, CountingEmbedder(), ties="first").metrics
    assert first["datasets"]["GQA"]["precision@1"] == 1.0


def test_runner_accepts_one_dataset_with_a_dataset_column_and_max_queries():
    from datasets import concatenate_datasets

    data = concatenate_datasets(
        [_rows([("q-cat", ["cat", "dog"]), ("q-dog", ["dog", "cat"])], "a"), _rows([("q-dog", ["cat", "dog"])], "b")]
    )
    result = evaluate_mmeb(data, CountingEmbedder(), max_queries=1, meta_tasks={"a": "vqa"}, splits={"a": "ind"})
    assert result.metrics["datasets"]["a"]["num_queries"] == 1
    assert result.metrics["datasets"]["b"]["precision@1"] == 0.0
    assert result.metrics["ind"] == 1.0 and result.metrics["ood"] is None
    assert result.metrics["datasets"]["b"]["meta_task"] is None


class ReverseReranker:
    """Puts the embedder's top k in reverse order; records what it saw."""

    def __init__(self) -> None:
        self.seen = []

    def rank(self, query, candidates):
        self.seen.append((query, candidates))
        return list(reversed(range(len(candidates))))


def test_reranker_reorders_the_top_k():
    data = {"VOC2007": _rows([("q-cat", ["cat", "dog", "bird"]), ("q-dog", ["cat", "bird", "dog"])], "VOC2007")}
    reranker = ReverseReranker()
    assert isinstance(reranker, Reranker)
    result = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2)
    # row 0: embedder order cat, bird, dog -> top-2 reversed: bird, cat -> miss
    # row 1: embedder order dog(2), bird(1), cat(0) -> top-2 reversed: bird, dog, then cat -> gold rank 3
    assert [p["embedding_prediction"] for p in result.predictions] == [0, 2]
    assert [p["prediction"] for p in result.predictions] == [2, 1]
    assert [p["gold_rank"] for p in result.predictions] == [2, 3]
    assert result.metrics["datasets"]["VOC2007"]["precision@1_embedding"] == 0.5
    assert result.metrics["datasets"]["VOC2007"]["precision@1"] == 0.0
    assert result.metrics["embedding_only"]["overall"] == 0.5 and result.metrics["overall"] == 0.0
    assert result.metrics["rerank_top_k"] == 2
    query, candidates = reranker.seen[0]
    assert query == {"text": "q-cat", "image": None}
    assert candidates == [{"text": "cat", "image": None}, {"text": "bird", "image": None}]

    class Broken:
        def rank(self, query, candidates):
            return [0, 0]

    with pytest.raises(ValueError, match="VOC2007 row 0.*not a permutation"):
        evaluate_mmeb(data, CountingEmbedder(), reranker=Broken(), rerank_top_k=2)


def test_rerank_mode_is_passed_to_the_reranker():
    class ModalReranker:
        def __init__(self) -> None:
            self.modes = []

        def rank(self, query, candidates, mode="listwise"):
            self.modes.append(mode)
            return list(range(len(candidates))) if mode == "pointwise" else list(reversed(range(len(candidates))))

    data = {"VOC2007": _rows([("q-cat", ["cat", "dog", "bird"])], "VOC2007")}
    reranker = ModalReranker()
    kept = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2, rerank_mode="pointwise")
    flipped = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2)
    assert reranker.modes == ["pointwise", "listwise"]
    assert kept.predictions[0]["prediction"] == 0 and flipped.predictions[0]["prediction"] == 2


class ScoringReranker:
    """Pointwise P(Yes) from a table; `rank` orders by it (the reranker alone)."""

    def __init__(self, probabilities) -> None:
        self.probabilities = probabilities

    def score(self, query, candidates):
        return [self.probabilities[c["text"]] for c in candidates]

    def rank(self, query, candidates):
        scores = self.score(query, candidates)
        return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_rerank_interpolation_keeps_the_embedders_evidence():
    # q-cat's top 2 by cosine: cat (0.994, the gold), bird (0.707). The reranker leans to bird (0.6 vs 0.4): alone it
    # misses. Standardised over the two, the embedding gives (+1, -1) and the log-odds (-1, +1), so weight 0.5 keeps
    # cat first (+0.5 vs -0.5) and weight 2 follows the reranker (-1 vs +1).
    data = {"VOC2007": _rows([("q-cat", ["cat", "dog", "bird"])], "VOC2007")}
    reranker = ScoringReranker({"cat": 0.4, "bird": 0.6, "dog": 0.9})
    alone = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2)
    assert alone.predictions[0]["prediction"] == 2 and alone.metrics["rerank_interpolation"] is None
    low = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2, rerank_interpolation=0.5)
    assert low.predictions[0]["prediction"] == 0 and low.metrics["overall"] == 1.0
    assert low.metrics["rerank_interpolation"] == 0.5
    high = evaluate_mmeb(data, CountingEmbedder(), reranker=reranker, rerank_top_k=2, rerank_interpolation=2.0)
    assert high.predictions[0]["prediction"] == 2 and high.metrics["overall"] == 0.0
    assert [p["gold_rank"] for p in high.predictions] == [2]  # dog (0.9) stays outside the top 2


def test_rerank_interpolation_errors():
    data = {"VOC2007": _rows([("q-cat", ["cat", "dog", "bird"])], "VOC2007")}
    embedder = CountingEmbedder()
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        evaluate_mmeb(data, embedder, reranker=ScoringReranker({}), rerank_interpolation=-1.0)
    with pytest.raises(TypeError, match="needs a reranker with a score"):
        evaluate_mmeb(data, embedder, reranker=ReverseReranker(), rerank_interpolation=1.0)
    assert embedder.calls == []  # both checked before any encoding
    bad = ScoringReranker({"cat": 0.4, "bird": 1.7})
    with pytest.raises(ValueError, match="VOC2007 row 0: Reranker probability 1.7 at position 1"):
        evaluate_mmeb(data, embedder, reranker=bad, rerank_top_k=2, rerank_interpolation=1.0)


# ------------------------------------------------------------------------------------ files + a tiny model
def _write_mmeb_files(root, images):
    """Two MMEB-eval sets in the official column layout with paths relative to `root`."""
    image_item = "<|image_1|>\nRepresent the given image."
    classification = [
        {
            "qry_text": "<|image_1|>\nRepresent the given image for classification",
            "qry_img_path": f"images/{colour}.png",
            "tgt_text": [colour] + [c for c in images if c != colour],
            "tgt_img_path": [""] * len(images),
        }
        for colour in images
    ]
    retrieval = [
        {
            "qry_text": f"Find an image of a {colour} square",
            "qry_img_path": "",
            "tgt_text": [image_item] * len(images),
            "tgt_img_path": [f"images/{colour}.png"] + [f"images/{c}.png" for c in images if c != colour],
        }
        for colour in images
    ]
    (root / "mmeb").mkdir()
    (root / "mmeb" / "VOC2007.jsonl").write_text("".join(json.dumps(r) + "\n" for r in classification))
    (root / "mmeb" / "MSCOCO_t2i").mkdir()
    (root / "mmeb" / "MSCOCO_t2i" / "test-00000-of-00001.json").write_text(json.dumps(retrieval))


@pytest.fixture(scope="module")
def tiny_model(tiny_backbones):
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    return UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])


@pytest.fixture()
def colour_images(tmp_path):
    from PIL import Image

    colours = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}
    (tmp_path / "images").mkdir()
    for name, rgb in colours.items():
        Image.new("RGB", (28, 28), rgb).save(tmp_path / "images" / f"{name}.png")
    return list(colours)


class CountingWrapper:
    """Counts every item a real model is asked to embed."""

    def __init__(self, model) -> None:
        self.model = model
        self.items: list[tuple] = []

    def encode(self, items, batch_size=16, **kwargs):
        self.items.extend((item["text"], item["image"]) for item in items)
        return self.model.encode(items, batch_size=batch_size, **kwargs)


def test_end_to_end_on_tiny_model_with_files(tmp_path, colour_images, tiny_model):
    _write_mmeb_files(tmp_path, colour_images)
    assert sorted(discover_mmeb_files(tmp_path / "mmeb")) == ["MSCOCO_t2i", "VOC2007"]
    data = load_mmeb_datasets(tmp_path / "mmeb", tmp_path)
    embedder = CountingWrapper(tiny_model)
    result = evaluate_mmeb(data, embedder, batch_size=4)
    # VOC2007: 3 image queries + 3 class names; MSCOCO_t2i: 3 text queries + 3 images (each row lists all 3)
    assert len(embedder.items) == 12
    assert len(set(embedder.items)) == 12
    assert result.metrics["encoded_items"] == 12
    assert result.metrics["datasets"]["VOC2007"]["num_candidates"] == 9  # 3 rows x 3 candidates, embedded as 3
    assert result.metrics["num_queries"] == 6
    for name in ("VOC2007", "MSCOCO_t2i"):
        records = [p for p in result.predictions if p["dataset"] == name]
        assert result.metrics["datasets"][name]["precision@1"] == sum(p["correct"] for p in records) / 3
        assert all(1 <= p["gold_rank"] <= 3 and p["correct"] == (p["gold_rank"] == 1) for p in records)
    assert result.metrics["meta_tasks"].keys() == {"classification", "retrieval"}
    assert result.metrics["ood"] is None
    # the deduplicated scores are the scores of embedding each row on its own
    row = data["MSCOCO_t2i"][1]
    query = tiny_model.encode([{"text": row["query_text"], "image": None}])
    candidates = tiny_model.encode(
        [{"text": t, "image": i} for t, i in zip(row["candidate_texts"], row["candidate_images"])]
    )
    record = next(p for p in result.predictions if p["dataset"] == "MSCOCO_t2i" and p["row"] == 1)
    assert record["gold_score"] == pytest.approx(float(candidates[0] @ query[0]), abs=1e-4)


def test_dataset_info_files_and_errors(tmp_path, colour_images):
    _write_mmeb_files(tmp_path, colour_images)
    info_file = tmp_path / "world.json"
    info_file.write_text(
        json.dumps(
            {"eval_sets": {"colours": {"file": "mmeb/VOC2007.jsonl", "meta_task": "classification", "split": "ood"}}}
        )
    )
    info = read_dataset_info(info_file)
    assert info["colours"]["file"] == str(tmp_path / "mmeb" / "VOC2007.jsonl")
    data = load_mmeb_datasets(image_root=tmp_path, dataset_info=info)
    assert list(data) == ["colours"] and len(data["colours"]) == 3
    with pytest.raises(ValueError, match="not found"):
        load_mmeb_datasets(tmp_path / "mmeb", tmp_path, names=["VOC2007", "ImageNet-1K"])
    with pytest.raises(FileNotFoundError):
        load_mmeb_datasets(tmp_path / "missing", tmp_path)
