"""The shapes world's vocabulary, the prompts of its queries and candidates, and [`ShapesWorldConfig`]."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "orange": (236, 118, 28),
    "yellow": (226, 196, 38),
    "green": (56, 160, 64),
    "cyan": (36, 178, 196),
    "blue": (44, 84, 212),
    "purple": (128, 64, 196),
    "pink": (226, 104, 168),
}
SHAPES: tuple[str, ...] = ("circle", "hexagon", "square", "diamond", "triangle", "cross")
SIZES: dict[str, float] = {"small": 0.42, "medium": 0.64, "large": 0.88}  # diameter as a fraction of a cell
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
CELL_NAMES: dict[int, tuple[str, ...]] = {
    2: ("top left", "top right", "bottom left", "bottom right"),
    3: (
        "top left",
        "top middle",
        "top right",
        "middle left",
        "center",
        "middle right",
        "bottom left",
        "bottom middle",
        "bottom right",
    ),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BACKGROUND = (255, 255, 255)

T2I_QUERY = "Find an image that matches the given caption: {caption}"
IMAGE_CANDIDATE = "<|image_1|>\nRepresent the given image."
I2T_QUERY = "<|image_1|>\nFind a caption that describes the given image."
VQA_QUERY = "<|image_1|>\nRepresent the given image with the following question: {question}"
CLS_QUERY = "<|image_1|>\nRepresent the given image for classification: the number of objects and the largest object."
GROUND_QUERY = '<|image_1|>\nSelect the portion of the image that isolates the object described as "{ref}".'
CROP_CANDIDATE = "<|image_1|>\nRepresent the given cropped image of the object."

TASKS: tuple[str, ...] = ("t2i", "i2t", "vqa", "classification", "grounding")
META_TASKS = {"t2i": "retrieval", "i2t": "retrieval", "vqa": "vqa", "classification": "classification"}
META_TASKS.update(grounding="grounding")
EVAL_NAMES = {
    "t2i": "t2i_retrieval",
    "i2t": "i2t_retrieval",
    "vqa": "vqa",
    "classification": "classification",
    "grounding": "grounding",
}
ATTRIBUTES = ("shape", "colour", "size", "cell")


def _default_train_pairs() -> dict[str, int]:
    return {"t2i": 2000, "i2t": 2000, "vqa": 2000, "classification": 1000, "grounding": 1000}


@dataclass
class ShapesWorldConfig:
    """Sizes and vocabulary of a shapes world; the same config and seed give the same bytes in every file.

    Args:
        seed (`int`, *optional*, defaults to 0): Seed of every random choice.
        image_size (`int`, *optional*, defaults to 56): Image side in pixels (a multiple of 28 suits patch 14).
        grid (`int`, *optional*, defaults to 3): Grid side (2 or 3).
        colours, shapes, sizes (`tuple[str, ...]`, *optional*): The vocabulary: subsets of `COLOURS`, `SHAPES`,
            `SIZES`.
        min_objects, max_objects (`int`, *optional*, defaults to 1 and 4): Objects per scene.
        heldout_combos (`int`, *optional*, defaults to 6): (colour, shape) combinations kept out of training.
        train_families (`int`, *optional*, defaults to 500): Training base scenes.
        variants_per_family (`int`, *optional*, defaults to 3): One-attribute-off variants per base used by pairs.
        distractors_per_family (`int`, *optional*, defaults to 2): Further variants written to ``corpus.jsonl`` only.
        train_pairs (`dict[str, int]`, *optional*): Pairs per task (``t2i, i2t, vqa, classification, grounding``).
        eval_queries (`int`, *optional*, defaults to 100): Queries per in-distribution eval set.
        heldout_queries (`int`, *optional*, defaults to 50): Queries per held-out eval set (0: none).
        candidates (`int`, *optional*, defaults to 100): Candidates per eval query, gold included (fewer where the
            task has fewer possible answers, e.g. crops).
        hard_negative_fraction (`float`, *optional*, defaults to 0.4): Share of distractors drawn from the gold's
            one-attribute-off neighbours (the rest are random items, all checked false).
        compositional_per_subset (`int`, *optional*, defaults to 100): Rows per SugarCrepe subset.
        jitter (`int`, *optional*, defaults to 1): Largest shift of an object inside its cell, in pixels.
        supersample (`int`, *optional*, defaults to 4): Drawing scale before the box-filter reduction.
    """

    seed: int = 0
    image_size: int = 56
    grid: int = 3
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = tuple(SIZES)
    min_objects: int = 1
    max_objects: int = 4
    heldout_combos: int = 6
    train_families: int = 500
    variants_per_family: int = 3
    distractors_per_family: int = 2
    train_pairs: dict[str, int] = field(default_factory=_default_train_pairs)
    eval_queries: int = 100
    heldout_queries: int = 50
    candidates: int = 100
    hard_negative_fraction: float = 0.4
    compositional_per_subset: int = 100
    jitter: int = 1
    supersample: int = 4

    def __post_init__(self) -> None:
        self.colours, self.shapes, self.sizes = tuple(self.colours), tuple(self.shapes), tuple(self.sizes)
        for name, values, known in (("colours", self.colours, COLOURS), ("shapes", self.shapes, SHAPES)):
            unknown = [value for value in values if value not in known]
            if unknown or len(set(values)) != len(values) or len(values) < 2:
                raise ValueError(f"{name} must be at least 2 distinct names from {list(known)}, got {list(values)}")
        if any(size not in SIZES for size in self.sizes) or len(set(self.sizes)) != len(self.sizes) or not self.sizes:
            raise ValueError(f"sizes must be distinct names from {list(SIZES)}, got {list(self.sizes)}")
        if self.grid not in CELL_NAMES:
            raise ValueError(f"grid must be one of {sorted(CELL_NAMES)}, got {self.grid}")
        if not 1 <= self.min_objects <= self.max_objects <= min(self.grid**2, 4):
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= {min(self.grid**2, 4)}, "
                f"got {self.min_objects} and {self.max_objects}"
            )
        n_combos = len(self.colours) * len(self.shapes)
        if not 0 <= self.heldout_combos <= n_combos - 2 * self.max_objects:
            raise ValueError(
                f"heldout_combos must be in [0, {n_combos - 2 * self.max_objects}], got {self.heldout_combos}"
            )
        unknown_tasks = sorted(set(self.train_pairs) - set(TASKS))
        if unknown_tasks:
            raise ValueError(f"train_pairs has unknown tasks {unknown_tasks}; tasks are {list(TASKS)}")
        if self.candidates < 2:
            raise ValueError(f"candidates must be >= 2 (the gold and at least one distractor), got {self.candidates}")
        if not 0.0 <= self.hard_negative_fraction <= 1.0:
            raise ValueError(f"hard_negative_fraction must be in [0, 1], got {self.hard_negative_fraction}")
        if self.image_size < 8 or self.supersample < 1 or self.jitter < 0:
            raise ValueError("image_size must be >= 8, supersample >= 1 and jitter >= 0")
        counts = (self.train_families, self.variants_per_family, self.distractors_per_family, self.eval_queries)
        if min(counts) < 0 or self.heldout_queries < 0 or self.compositional_per_subset < 0 or self.train_families < 1:
            raise ValueError("counts must be >= 0 (and train_families >= 1)")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ShapesWorldConfig:
        """A named world (see `PRESETS`): ``"tiny"`` (tests, about 1 s), ``"small"`` (quick runs), ``"easy"`` (the
        small sizes with a coarser vocabulary), ``"default"``.

        Example:

        ```python
        >>> ShapesWorldConfig.preset("small", seed=3).train_families
        150
        ```
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
        return cls(**{**copy.deepcopy(PRESETS[name]), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }


_SMALL: dict[str, Any] = {
    "train_families": 150,
    "train_pairs": {"t2i": 600, "i2t": 600, "vqa": 600, "classification": 300, "grounding": 300},
    "eval_queries": 50,
    "heldout_queries": 25,
    "candidates": 100,
    "compositional_per_subset": 50,
}
# Named worlds for `ShapesWorldConfig.preset(name)`: field overrides of the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "train_families": 10,
        "variants_per_family": 2,
        "distractors_per_family": 1,
        "train_pairs": {"t2i": 12, "i2t": 12, "vqa": 12, "classification": 6, "grounding": 6},
        "eval_queries": 6,
        "heldout_queries": 4,
        "candidates": 16,
        "compositional_per_subset": 3,
    },
    "small": _SMALL,
    # The small sizes with a coarser vocabulary that matches the tiny backbones' 4 image tokens (a 2x2 grid, 1-2
    # objects, 6 well-separated colours, 4 shapes incl. circle/hexagon, 2 sizes). Hard negatives stay one attribute
    # off. Calibrated so that a tiny InfoNCE embedder trained for a few minutes lands inside 0.3-0.8 overall P@1
    # (README: the baseline table); with up to 3 objects the same embedder stays near 0.20.
    "easy": {
        **_SMALL,
        "grid": 2,
        "max_objects": 2,
        "colours": ("red", "yellow", "green", "cyan", "blue", "purple"),
        "shapes": ("circle", "hexagon", "square", "triangle"),
        "sizes": ("small", "large"),
        "heldout_combos": 4,
    },
    "default": {},
}
