"""Fixtures for trainer tests: synthetic mined data (random coloured images + texts) and a tiny backbone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle", "bar")


def make_synthetic_data(root: str | Path, num_queries: int = 8, num_items: int = 16, seed: int = 0):
    """A corpus of text-only, image-only and image+text items, and mined rows over it (10 hard negatives each).

    Returns `(mined, corpus)` as `datasets.Dataset`s in the canonical layouts; image paths are absolute.
    """
    import datasets
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    corpus = []
    for i in range(num_items):
        colour, shape = names[i % len(names)], SHAPES[(i // len(names)) % len(SHAPES)]
        caption = f"a {colour} {shape} at the {rng.choice(['top', 'bottom', 'left', 'right'])}"
        image_path = ""
        if i % 3 != 0:  # every third item is text-only
            image = Image.new("RGB", (28 + 4 * (i % 3), 28), (255, 255, 255))
            box = [rng.randint(0, 8), rng.randint(0, 8), rng.randint(16, 26), rng.randint(16, 26)]
            ImageDraw.Draw(image).rectangle(box, fill=COLOURS[colour])
            image_path = str(root / f"item{i}.png")
            image.save(image_path)
        text = "" if i % 3 == 1 else (f"<|image_1|>\nRepresent the given image. {caption}" if image_path else caption)
        corpus.append({"id": f"c{i}", "text": text, "image": image_path})
    rows = []
    for q in range(num_queries):
        positive = corpus[q % num_items]
        others = [item["id"] for item in corpus if item["id"] != positive["id"]]
        negatives = [rng.choice(others) for _ in range(10)]
        query_image = corpus[(q + 1) % num_items]["image"] if q % 2 else ""
        query_text = f"Find the item number {q}" if not query_image else "<|image_1|>\nFind a matching item."
        rows.append(
            {
                "query_id": f"q{q}",
                "query_text": query_text,
                "query_image": query_image,
                "pos_id": positive["id"],
                "pos_text": positive["text"],
                "pos_image": positive["image"],
                "pos_score": 0.9,
                "hard_negative_ids": negatives,
                "hard_negative_scores": [round(rng.uniform(0.0, 0.8), 3) for _ in negatives],
            }
        )
    return datasets.Dataset.from_list(rows), datasets.Dataset.from_list(corpus)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """(mined, corpus): 8 mined rows over a 16-item corpus with images on disk."""
    return make_synthetic_data(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def backbone(tiny_backbones) -> str:
    """Folder of the tiny Qwen2-VL backbone."""
    return tiny_backbones["qwen2_vl"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run several times faster on one thread than on two when the CPU is shared."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
