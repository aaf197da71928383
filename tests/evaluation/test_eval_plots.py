"""Pictures: valid PNG files, the modality-gap numbers on hand-built embeddings, clear errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from datasets import Dataset

from unime_hf.evaluation.plots import (
    is_png,
    judge_score_lists,
    matched_pairs,
    modality_gap,
    plot_judge_scores,
    plot_modality_gap,
    similarity_distributions,
)


def _png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_judge_score_plot_is_a_png(tmp_path):
    generator = torch.Generator().manual_seed(0)
    mined = Dataset.from_dict(
        {
            "pos_score": (0.8 + 0.2 * torch.rand(50, generator=generator)).tolist(),
            "hard_negative_scores": (0.6 * torch.rand(50, 10, generator=generator)).tolist(),
        }
    )
    path = plot_judge_scores(mined, tmp_path / "plots" / "judge_scores.png", threshold=0.5)
    assert is_png(path) and _png_size(path) == (640, 400)
    # a judged dataset with candidate_scores works too, as does a dict of columns
    path = plot_judge_scores({"pos_score": [0.9, 0.8], "candidate_scores": [[0.1], [0.95, 0.2]]}, tmp_path / "j.png")
    assert is_png(path)
    both = {"pos_score": [0.9], "candidate_scores": [[0.1, 0.2]], "hard_negative_scores": [[0.2]]}
    assert judge_score_lists(both) == ([0.9], [0.1, 0.2], "candidate_scores")
    assert judge_score_lists(both, "hard_negative_scores") == ([0.9], [0.2], "hard_negative_scores")
    with pytest.raises(ValueError, match="hard_negative_scores"):
        plot_judge_scores({"pos_score": [0.9]}, tmp_path / "x.png")


def test_modality_gap_numbers_on_hand_built_embeddings():
    # images along +x, texts along +y, each image matched with one text: a maximal gap
    images = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [1.0, 0.0, 0.1]])
    texts = torch.tensor([[0.1, 1.0, 0.0], [-0.1, 1.0, 0.0], [0.0, 1.0, 0.1]])
    gap = modality_gap(images, texts)
    assert gap["centroid_distance"] > 1.3
    assert gap["mean_cos_image_image"] > 0.9 and gap["mean_cos_text_text"] > 0.9
    assert abs(gap["mean_cos_matched_image_text"]) < 0.2
    same = modality_gap(images, images)
    assert same["centroid_distance"] == pytest.approx(0.0, abs=1e-6)
    assert same["mean_cos_matched_image_text"] == pytest.approx(1.0)
    distributions = similarity_distributions(images, texts)
    assert {k: len(v) for k, v in distributions.items()} == {
        "image-image": 3,
        "text-text": 3,
        "matched image-text": 3,
        "unmatched image-text": 6,
    }
    with pytest.raises(ValueError, match="aligned"):
        modality_gap(images, texts[:2])


def test_modality_gap_plot_is_a_png_and_compares_models(tmp_path):
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(120, 32, generator=generator)
    # "CLIP-like": the two modalities offset along separate directions; "UniME-like": mixed together
    offset = torch.zeros(32)
    offset[0] = 4.0
    clip_images, clip_texts = shared + offset, shared - offset + 0.5 * torch.randn(120, 32, generator=generator)
    unime_images, unime_texts = shared, shared + 0.5 * torch.randn(120, 32, generator=generator)
    path = plot_modality_gap(
        {"CLIP-like": (clip_images, clip_texts), "UniME-like": (unime_images, unime_texts)},
        tmp_path / "modality_gap.png",
        title="Representation distributions",
    )
    assert is_png(path)
    width, height = _png_size(path)
    assert (width, height) == (920, 800)
    assert (
        modality_gap(clip_images, clip_texts)["centroid_distance"]
        > modality_gap(unime_images, unime_texts)["centroid_distance"]
    )
    single = plot_modality_gap((unime_images[:5], unime_texts[:5]), tmp_path / "single.png", max_points=3)
    assert is_png(single)


def test_matched_pairs_takes_each_images_first_caption():
    images = torch.arange(6.0).reshape(3, 2)
    captions = torch.arange(10.0, 18.0).reshape(4, 2)
    first_images, first_texts = matched_pairs(images, captions, [0, 0, 2, 1])
    assert torch.equal(first_images, images)
    assert torch.equal(first_texts, captions[[0, 3, 2]])


def test_no_work_at_import_and_no_pyplot(tmp_path):
    code = (
        "import sys\n"
        "import unime_hf.evaluation as ev\n"
        "assert not {'torch', 'matplotlib', 'datasets'} & set(sys.modules), sorted(sys.modules)\n"
        "ev.plot_judge_scores({'pos_score': [0.9], 'hard_negative_scores': [[0.1]]}, sys.argv[1])\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "j.png")], check=True)
    assert is_png(tmp_path / "j.png")
