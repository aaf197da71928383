"""Evidence crops: coordinates, clamping, invalid boxes reported (not raised), folding into one image."""

from __future__ import annotations

import pytest
from PIL import Image

from unime_hf.reasoning.crops import clamp_box, crop_evidence, fold_crops, to_pixel_box
from unime_hf.reasoning.tcot import EvidenceBox, parse_tcot


@pytest.fixture
def image() -> Image.Image:
    picture = Image.new("RGB", (200, 100), (255, 255, 255))
    picture.paste((255, 0, 0), (0, 0, 100, 50))  # red top-left quarter
    return picture


def test_absolute_and_normalized_coordinates():
    assert to_pixel_box([10, 20, 30, 40], (200, 100)) == (10, 20, 30, 40)
    assert to_pixel_box([0, 0, 500, 500], (200, 100), coords="normalized") == (0, 0, 100, 50)
    assert to_pixel_box(EvidenceBox(0, 0, 0.5, 1), (200, 100), coords="normalized", scale=1) == (0, 0, 100, 100)
    with pytest.raises(ValueError, match="coords"):
        to_pixel_box([0, 0, 1, 1], (10, 10), coords="relative")


def test_clamp_rounds_outwards():
    assert clamp_box((-3.5, 10.2, 80.1, 300), (64, 48)) == (0, 10, 64, 48)
    assert clamp_box((70, 50, 90, 60), (64, 48)) == (64, 48, 64, 48)  # empty: wholly outside


def test_crop_evidence_absolute(image):
    result = crop_evidence(image, [[0, 0, 100, 50], [150, 60, 400, 400]])
    assert result.errors == []
    assert result.boxes == [(0, 0, 100, 50), (150, 60, 200, 100)]  # the second clamped to the image
    assert result.indices == [0, 1]
    assert result.crops[0].size == (100, 50) and result.crops[0].getpixel((50, 25)) == (255, 0, 0)
    assert result.crops[1].size == (50, 40)


def test_crop_evidence_normalized_and_invalid_boxes(image):
    boxes = [
        [0, 0, 500, 500],  # top-left quarter
        [5, 5, 1, 1],  # x1 > x2
        [1, 2, 3],  # not four numbers
        {"bbox_2d": [900, 900, 1000, 1000], "label": "corner"},
        [1100, 0, 1300, 100],  # outside the image
        "nonsense",
        [0, 0, 1, 1],  # 0.2 x 0.1 pixels: under min_size
    ]
    result = crop_evidence(image, boxes, coords="normalized")
    assert result.boxes == [(0, 0, 100, 50), (180, 90, 200, 100)]
    assert result.indices == [0, 3]
    assert len(result.errors) == 5
    for index in (1, 2, 4, 5, 6):
        assert any(error.startswith(f"box {index} ") for error in result.errors), result.errors
    assert result.crops[0].getpixel((10, 10)) == (255, 0, 0)


def test_crop_evidence_from_parsed_tcot_and_max_crops(image):
    parsed = parse_tcot(
        '<thinking>{"bbox_2d": [[0, 0, 250, 250], [500, 500, 1000, 1000]]}</thinking><rethink></rethink>'
        "<answer>x</answer>"
    )
    result = crop_evidence(image, parsed.boxes, coords="normalized", max_crops=1)
    assert result.boxes == [(0, 0, 50, 25)] and result.errors == []


def test_fold_crops(image):
    crops = crop_evidence(image, [[0, 0, 100, 50], [0, 0, 10, 100]]).crops
    folded = fold_crops(image, crops)
    assert folded.size == (250, 100)  # two slots of 50x50 to the right
    assert folded.getpixel((10, 10)) == (255, 0, 0)  # the input is unchanged at the left
    assert folded.getpixel((225, 25)) == (255, 0, 0)  # first crop (all red) fills slot 1
    assert fold_crops(image, []) is image
    assert fold_crops(image, crops * 5, max_crops=4).size == (225, 100)
