# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Evidence crops: the image regions a T-CoT's `bbox_2d` boxes point at, as extra inputs for the Embedder.

Boxes are converted to pixels (absolute coordinates, or normalised to `[0, scale]` as Qwen2-VL / Qwen3-VL write
them: `scale=1000`), clamped to the image, and cropped. A box that is malformed, or that lies outside the image or
is smaller than `min_size` once clamped, is reported in `errors` and skipped; nothing raises.

The UniME processor takes one image per item, so crops reach the Embedder folded into that one image:
[`fold_crops`] pastes them in a column to the right of the input image. (Giving them as separate images needs the
processor to accept several images per item; see the `unime_hf.reasoning` docstring.)

Example:

```python
>>> from PIL import Image
>>> from unime_hf.reasoning.crops import crop_evidence, fold_crops
>>> image = Image.new("RGB", (200, 100))
>>> result = crop_evidence(image, [[0, 0, 500, 1000], [900, 0, 1200, 500], [5, 5, 1, 1]], coords="normalized")
>>> result.boxes, len(result.errors)
([(0, 0, 100, 100), (180, 0, 200, 50)], 1)
>>> fold_crops(image, result.crops).size
(250, 100)

```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unime_hf.reasoning.tcot import BOX_COORDS, EvidenceBox, check_box

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class CropResult:
    """Crops of the valid boxes and the reasons the others were skipped.

    Attributes:
        crops (`list[PIL.Image.Image]`): One crop per valid box, in input order.
        boxes (`list[tuple[int, int, int, int]]`): The clamped pixel box `(left, top, right, bottom)` of each crop.
        indices (`list[int]`): Position in the input of each cropped box.
        errors (`list[str]`): One message per skipped box, naming its position.
    """

    crops: list[Image.Image] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def to_pixel_box(
    box: EvidenceBox | Sequence[float], image_size: tuple[int, int], coords: str = "absolute", scale: float = 1000
) -> tuple[float, float, float, float]:
    """A box in pixels of an image of `image_size = (width, height)`, not clamped.

    Example:

    ```python
    >>> to_pixel_box([0, 0, 500, 1000], (200, 100), coords="normalized")
    (0.0, 0.0, 100.0, 100.0)

    ```
    """
    if coords not in BOX_COORDS:
        raise ValueError(f"`coords` must be one of {BOX_COORDS}, got {coords!r}.")
    x1, y1, x2, y2 = box.as_list() if isinstance(box, EvidenceBox) else (float(v) for v in box)
    if coords == "absolute":
        return (x1, y1, x2, y2)
    if not scale > 0:
        raise ValueError(f"`scale` must be > 0, got {scale!r}.")
    width, height = image_size
    return (x1 * width / scale, y1 * height / scale, x2 * width / scale, y2 * height / scale)


def clamp_box(box: Sequence[float], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Round a pixel box outwards to whole pixels and clamp it to the image; the result may be empty.

    Example:

    ```python
    >>> clamp_box((-3.5, 10.2, 80.1, 300), (64, 48))
    (0, 10, 64, 48)

    ```
    """
    width, height = image_size
    left = min(max(math.floor(box[0]), 0), width)
    top = min(max(math.floor(box[1]), 0), height)
    right = min(max(math.ceil(box[2]), 0), width)
    bottom = min(max(math.ceil(box[3]), 0), height)
    return (left, top, right, bottom)


def crop_evidence(
    image: Image.Image,
    boxes: Sequence[Any],
    *,
    coords: str = "absolute",
    scale: float = 1000,
    min_size: int = 2,
    max_crops: int | None = None,
) -> CropResult:
    """Crop the evidence boxes of a T-CoT from its input image.

    Args:
        image (`PIL.Image.Image`):
            The input image the boxes refer to.
        boxes (`Sequence`):
            [`EvidenceBox`]es (e.g. `parse_tcot(text).boxes`), `[x1, y1, x2, y2]` lists or `{"bbox_2d": ...}`
            dicts; malformed entries are reported, not raised.
        coords (`str`, *optional*, defaults to `"absolute"`):
            `"absolute"` (pixels) or `"normalized"` (`[0, scale]` of the width and height).
        scale (`float`, *optional*, defaults to 1000):
            The normalised range (Qwen2-VL / Qwen3-VL: 1000).
        min_size (`int`, *optional*, defaults to 2):
            Smallest width and height in pixels of a clamped box to crop.
        max_crops (`int`, *optional*):
            Crop at most this many (the first valid boxes).

    Returns:
        [`CropResult`]
    """
    if coords not in BOX_COORDS:
        raise ValueError(f"`coords` must be one of {BOX_COORDS}, got {coords!r}.")
    result = CropResult()
    size = image.size
    for index, entry in enumerate(boxes):
        if max_crops is not None and len(result.crops) >= max_crops:
            break
        box = check_box(entry, f"box {index}")
        if isinstance(box, str):
            result.errors.append(box)
            continue
        clamped = clamp_box(to_pixel_box(box, size, coords, scale), size)
        left, top, right, bottom = clamped
        if right - left < min_size or bottom - top < min_size:
            result.errors.append(
                f"box {index} {box.as_list()} ({coords}) covers {right - left}x{bottom - top} pixels of the "
                f"{size[0]}x{size[1]} image once clamped, under min_size={min_size}"
            )
            continue
        result.crops.append(image.crop(clamped))
        result.boxes.append(clamped)
        result.indices.append(index)
    return result


def fold_crops(
    image: Image.Image,
    crops: Sequence[Image.Image],
    *,
    max_crops: int = 4,
    background: tuple[int, int, int] = (255,) * 3,
) -> Image.Image:
    """One image holding the input and its evidence crops: the crops, each fitted into a square slot, stacked in a
    column to the right of the input (slot side = image height / number of crops). No crops: the image unchanged.

    This is how crops reach an Embedder whose processor takes one image per item; train the Embedder on folded
    images too, since it changes what the image looks like.

    Args:
        image (`PIL.Image.Image`):
            The input image.
        crops (`Sequence[PIL.Image.Image]`):
            Its evidence crops ([`crop_evidence`]).
        max_crops (`int`, *optional*, defaults to 4):
            Fold at most this many (the first ones).
        background (`tuple`, *optional*, defaults to white):
            Colour of the unused parts of the column.
    """
    from PIL import Image

    crops = list(crops)[:max_crops]
    if not crops:
        return image
    base = image.convert("RGB")
    width, height = base.size
    side = max(1, height // len(crops))
    canvas = Image.new("RGB", (width + side, height), background)
    canvas.paste(base, (0, 0))
    for slot, crop in enumerate(crops):
        crop = crop.convert("RGB")
        ratio = min(side / crop.width, side / crop.height)
        fitted = crop.resize((max(1, round(crop.width * ratio)), max(1, round(crop.height * ratio))))
        x = width + (side - fitted.width) // 2
        y = slot * side + (side - fitted.height) // 2
        canvas.paste(fitted, (x, y))
    return canvas
