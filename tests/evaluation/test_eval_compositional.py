"""SugarCrepe-style accuracy per subset, group and overall, on hand-built scores and through the runner."""

from __future__ import annotations

import pytest
import torch

from unime_hf.evaluation.compositional import compositional_accuracy, evaluate_compositional, subset_group


def test_accuracy_per_subset_group_and_overall():
    rows = [
        # (positive score, negative score, subset)
        (0.9, 0.1, "replace-obj"),
        (0.2, 0.3, "replace-obj"),  # wrong
        (0.8, 0.7, "replace-att"),
        (0.6, 0.5, "replace-rel"),
        (0.5, 0.5, "replace-rel"),  # a tie is wrong
        (0.4, 0.1, "swap-obj"),
        (0.1, 0.4, "swap-att"),  # wrong
        (0.7, 0.2, "add-obj"),
        (0.7, 0.2, "add-att"),
        (0.1, 0.2, "add-att"),  # wrong
    ]
    scores = compositional_accuracy([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    assert scores["subsets"] == {
        "replace-obj": 0.5,
        "replace-att": 1.0,
        "replace-rel": 0.5,
        "swap-obj": 1.0,
        "swap-att": 0.0,
        "add-obj": 1.0,
        "add-att": 0.5,
    }
    assert scores["groups"] == pytest.approx({"replace": 2 / 3, "swap": 0.5, "add": 0.75})
    assert list(scores["groups"]) == ["replace", "swap", "add"]
    assert scores["overall"] == pytest.approx(4.5 / 7)
    assert scores["num_rows"]["replace-obj"] == 2 and scores["num_rows"]["overall"] == 10
    assert subset_group("swap-att") == "swap" and subset_group("other") == "other"
    with pytest.raises(ValueError, match="one of each"):
        compositional_accuracy([0.1], [], ["add-obj"])


class LookupEmbedder:
    def __init__(self, vectors):
        self.vectors = vectors
        self.seen = []

    def encode(self, items, batch_size=16, **kwargs):
        keys = [item["text"] if item["text"] is not None else item["image"] for item in items]
        self.seen.extend(keys)
        return torch.tensor([self.vectors[k] for k in keys])


def test_runner_embeds_each_image_and_caption_once():
    vectors = {
        "a.png": [1.0, 0.0],
        "b.png": [0.0, 1.0],
        "a red square": [0.9, 0.1],
        "a square red": [0.8, 0.2],  # closer to a.png than nothing, but less than the true caption
        "a blue circle": [0.2, 0.8],
        "a red circle": [0.1, 0.9],  # the altered caption wins for b.png
    }
    rows = [
        {"image": "a.png", "caption": "a red square", "negative_caption": "a square red", "subset": "swap-att"},
        {"image": "b.png", "caption": "a blue circle", "negative_caption": "a red circle", "subset": "replace-att"},
        {"image": "a.png", "caption": "a red square", "negative_caption": "a blue circle", "subset": "replace-att"},
    ]
    embedder = LookupEmbedder(vectors)
    result = evaluate_compositional(rows, embedder)
    assert sorted(embedder.seen) == sorted(vectors)
    assert result.metrics["encoded_items"] == 6
    assert result.metrics["subsets"] == {"replace-att": 0.5, "swap-att": 1.0}
    assert [p["correct"] for p in result.predictions] == [True, False, True]
    assert result.predictions[1]["subset"] == "replace-att"
    with pytest.raises(ValueError, match="row 0"):
        evaluate_compositional([{"image": "a.png", "caption": "x", "subset": "add-obj"}], embedder)
