"""Drawing scenes and grounding crops: supersampled and box-filtered, so the same scene gives the same bytes."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from unime_hf.data.shapes.config import BACKGROUND, COLOURS, SIZES
from unime_hf.data.shapes.scene import Scene


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "hexagon":
        return [(cx + r * math.cos(math.pi * k / 3), cy + r * math.sin(math.pi * k / 3)) for k in range(6)]
    if shape == "triangle":  # pointing up, its box centred on (cx, cy)
        angles = (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        return [(cx + r * math.cos(a), cy + r / 4 + r * math.sin(a)) for a in angles]
    raise ValueError(f"{shape!r} is not a polygon")


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, colour: str, cx: float, cy: float, diameter: float) -> None:
    fill, r = COLOURS[colour], diameter / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        half = r * 0.86  # about the circle's area
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif shape == "cross":
        arm = r / 3
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fill)
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=fill)


def render_scene(scene: Scene, image_size: int = 56, supersample: int = 4) -> Image.Image:
    """Draws a scene at `supersample` times the size and box-filters it down (deterministic anti-aliasing)."""
    side = image_size * supersample
    image = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell = side / scene.grid
    for obj in scene.objects:
        row, col = divmod(obj.cell, scene.grid)
        diameter = SIZES[obj.size] * cell
        room = (cell - diameter) / 2  # a shift keeps the object inside its cell
        dx = max(-room, min(room, obj.dx * supersample))
        dy = max(-room, min(room, obj.dy * supersample))
        _draw_object(draw, obj.shape, obj.colour, (col + 0.5) * cell + dx, (row + 0.5) * cell + dy, diameter)
    return image.reduce(supersample) if supersample > 1 else image


def render_crop(shape: str, colour: str, size: str, image_size: int = 56, supersample: int = 4) -> Image.Image:
    """The crop of one object's cell, scaled to the whole image: what grounding candidates show."""
    side = image_size * supersample
    image = Image.new("RGB", (side, side), BACKGROUND)
    _draw_object(ImageDraw.Draw(image), shape, colour, side / 2, side / 2, SIZES[size] * side)
    return image.reduce(supersample) if supersample > 1 else image


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False, compress_level=6)
