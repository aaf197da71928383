"""The shapes world: a deterministic synthetic multimodal world (coloured shapes on a grid) generated offline.

A scene is 1-4 objects, each a shape, a colour and a size in its own cell of a 3x3 grid. The vocabulary is made of
near neighbours (red/orange/pink, blue/cyan/purple; circle/hexagon, square/diamond), so one attribute off is hard
to see. From scenes the generator writes:

- training pairs in the MMEB-train layout (text->image, image->text, VQA, classification, grounding), where partial
  captions ("an image with a red circle above a blue triangle") are true of several images: real false negatives;
  images come in families of one-attribute-off variants: real hard negatives;
- MMEB-eval sets (retrieval both ways, classification, VQA, grounding), each query with ``candidates`` candidates
  dense in one-attribute-off items, every distractor checked false; ``heldout_*`` sets whose gold involves
  (colour, shape) combinations that training never shows;
- a SugarCrepe-style compositional set, and the world's truth (``truth/``) so any (query, candidate) pair of the
  world can be judged yes/no ([`ShapesTruth`], [`satisfies`]).

Layout of ``out_dir``::

    world.json                  config, vocabulary, held-out combos, eval sets, statistics
    train.jsonl                 MMEB-train pairs (qry, qry_image_path, pos_text, pos_image_path); paths relative to
                                out_dir, like every image path in these files
    corpus.jsonl                extra candidates (text, image) that no pair uses: one-attribute-off distractors
    eval/<name>.jsonl           MMEB-eval sets (qry_text, qry_img_path, tgt_text, tgt_img_path), gold at index 0
    compositional.jsonl         image, caption, negative_caption, subset
    gallery.jsonl               image, caption: every in-distribution eval image with its full caption
    images/{train,distractors,eval,heldout,crops}/*.png
    meta/train.jsonl, meta/eval/<name>.jsonl   per row (aligned): task, scene image, query meaning, hard negatives
    truth/scenes.jsonl, truth/crops.jsonl, truth/texts.jsonl   what every image shows and every text means

Example:

```python
>>> from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world, load_shapes_train
>>> stats = generate_shapes_world("runs/shapes", ShapesWorldConfig.preset("small", seed=0))
>>> data = load_shapes_train("runs/shapes")  # DatasetDict(train=pairs, corpus=positives + distractors)
```
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------- vocabulary

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
        """A named size: ``"tiny"`` (tests, about 1 s), ``"small"`` (quick runs), ``"default"``.

        Example:

        ```python
        >>> ShapesWorldConfig.preset("small", seed=3).train_families
        150
        ```
        """
        presets: dict[str, dict[str, Any]] = {
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
            "small": {
                "train_families": 150,
                "train_pairs": {"t2i": 600, "i2t": 600, "vqa": 600, "classification": 300, "grounding": 300},
                "eval_queries": 50,
                "heldout_queries": 25,
                "candidates": 100,
                "compositional_per_subset": 50,
            },
            "default": {},
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {list(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }


# ------------------------------------------------------------------------------------------------ the world model


@dataclass(frozen=True, order=True)
class ShapeObject:
    """One object: its grid cell (row-major index), shape, colour, size, and a rendering-only shift in pixels."""

    cell: int
    shape: str
    colour: str
    size: str
    dx: int = 0
    dy: int = 0

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.cell, self.shape, self.colour, self.size)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scene:
    """A scene: objects in distinct cells with distinct (colour, shape), kept sorted by cell."""

    objects: tuple[ShapeObject, ...]
    grid: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(sorted(self.objects)))
        if len({o.cell for o in self.objects}) != len(self.objects):
            raise ValueError(f"two objects share a cell: {self.objects}")
        if len({(o.colour, o.shape) for o in self.objects}) != len(self.objects):
            raise ValueError(f"two objects share a (colour, shape): {self.objects}")

    @property
    def signature(self) -> tuple[tuple[int, str, str, str], ...]:
        """What the scene shows, without the rendering shifts: equal signatures are the same scene."""
        return tuple(o.key for o in self.objects)

    def to_json(self) -> dict[str, Any]:
        return {"grid": self.grid, "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scene:
        return cls(tuple(ShapeObject(**o) for o in data["objects"]), data["grid"])


@dataclass(frozen=True)
class ObjectSpec:
    """A partial description of one object; `None` attributes are unconstrained."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    cell: int | None = None

    def matches(self, obj: ShapeObject) -> bool:
        return all(getattr(self, name) in (None, getattr(obj, name)) for name in ATTRIBUTES)

    def given(self) -> tuple[str, ...]:
        return tuple(name for name in ATTRIBUTES if getattr(self, name) is not None)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ATTRIBUTES}

    @classmethod
    def of(cls, obj: ShapeObject, attributes: Iterable[str] = ATTRIBUTES) -> ObjectSpec:
        return cls(**{name: getattr(obj, name) for name in attributes})


@dataclass(frozen=True)
class QuerySpec:
    """What a caption or query asks of a scene (see [`satisfies`]).

    Args:
        objects (`tuple[ObjectSpec, ...]`): Each must match a distinct object of the scene.
        relations (`tuple[tuple[int, str, int], ...]`): ``(i, relation, j)``: matched object i is `relation` j.
        count (`int`, *optional*): The scene has exactly this many objects.
        exact (`bool`): The objects are all of the scene (a full caption).
    """

    objects: tuple[ObjectSpec, ...] = ()
    relations: tuple[tuple[int, str, int], ...] = ()
    count: int | None = None
    exact: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": [o.to_json() for o in self.objects],
            "relations": [list(r) for r in self.relations],
            "count": self.count,
            "exact": self.exact,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuerySpec:
        objects = tuple(ObjectSpec(**o) for o in data["objects"])
        relations = tuple((int(a), str(r), int(b)) for a, r, b in data["relations"])
        return cls(objects, relations, data["count"], bool(data["exact"]))


@dataclass(frozen=True)
class Question:
    """A VQA question: ``kind`` in colour/shape/size/where (of the object `target` refers to), count/exists (of
    objects matching `target`) or relation (the unique object that is `relation` the object `target` refers to)."""

    kind: str
    target: ObjectSpec
    relation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target.to_json(), "relation": self.relation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Question:
        return cls(data["kind"], ObjectSpec(**data["target"]), data["relation"])


def relation_holds(a: ShapeObject, relation: str, b: ShapeObject, grid: int) -> bool:
    """Whether `a` is `relation` `b`: comparing grid columns (left/right) or rows (above/below) only."""
    (row_a, col_a), (row_b, col_b) = divmod(a.cell, grid), divmod(b.cell, grid)
    return {
        "left of": col_a < col_b,
        "right of": col_a > col_b,
        "above": row_a < row_b,
        "below": row_a > row_b,
    }[relation]


def satisfies(scene: Scene, spec: QuerySpec) -> bool:
    """The world's truth: whether `scene` satisfies `spec` (a caption or a text query).

    Each object spec must match a distinct object of the scene such that the relations hold; ``count`` fixes the
    number of objects and ``exact`` requires the objects to be the whole scene.

    Example:

    ```python
    >>> red = ShapeObject(cell=1, shape="circle", colour="red", size="small")
    >>> blue = ShapeObject(cell=7, shape="triangle", colour="blue", size="large")
    >>> spec = QuerySpec((ObjectSpec("circle", "red"), ObjectSpec("triangle", "blue")), ((0, "above", 1),))
    >>> satisfies(Scene((red, blue)), spec)
    True
    ```
    """
    n = len(scene.objects)
    if (spec.count is not None and n != spec.count) or (spec.exact and n != len(spec.objects)):
        return False
    return _assign(scene, spec, [])


def _assign(scene: Scene, spec: QuerySpec, chosen: list[ShapeObject]) -> bool:
    if len(chosen) == len(spec.objects):
        return all(relation_holds(chosen[a], rel, chosen[b], scene.grid) for a, rel, b in spec.relations)
    wanted = spec.objects[len(chosen)]
    return any(
        _assign(scene, spec, [*chosen, obj]) for obj in scene.objects if obj not in chosen and wanted.matches(obj)
    )


def resolve(scene: Scene, ref: ObjectSpec) -> list[ShapeObject]:
    """The objects of `scene` that a referring expression matches."""
    return [obj for obj in scene.objects if ref.matches(obj)]


def answer(scene: Scene, question: Question) -> str | None:
    """The answer text of `question` about `scene`, or `None` when the question has no single answer."""
    found = resolve(scene, question.target)
    if question.kind == "count":
        return NUMBER_WORDS[len(found)]
    if question.kind == "exists":
        return "yes" if found else "no"
    if len(found) != 1:
        return None
    obj = found[0]
    if question.kind == "where":
        return CELL_NAMES[scene.grid][obj.cell]
    if question.kind in ("colour", "shape", "size"):
        return getattr(obj, question.kind)
    if question.kind == "relation":
        others = [o for o in scene.objects if o != obj and relation_holds(o, question.relation, obj, scene.grid)]
        return describe(others[0]) if len(others) == 1 else None
    raise ValueError(f"unknown question kind {question.kind!r}")


def largest(scene: Scene) -> ShapeObject | None:
    """The single largest object, or `None` when several share the largest size."""
    top = max(SIZES[o.size] for o in scene.objects)
    biggest = [o for o in scene.objects if SIZES[o.size] == top]
    return biggest[0] if len(biggest) == 1 else None


def class_label(scene: Scene) -> str | None:
    """The classification label: the number of objects and the largest one (`None` without a single largest)."""
    big = largest(scene)
    if big is None:
        return None
    n = len(scene.objects)
    return f"{NUMBER_WORDS[n]} object{'s' if n > 1 else ''}; the largest: {big.colour} {big.shape}"


# ------------------------------------------------------------------------------------------------------- text


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def _noun_phrase(spec: ObjectSpec, grid: int) -> str:
    words = [w for w in (spec.size, spec.colour) if w is not None] + [spec.shape or "object"]
    phrase = " ".join(words)
    return phrase if spec.cell is None else f"{phrase} at the {CELL_NAMES[grid][spec.cell]}"


def describe(obj: ShapeObject) -> str:
    """The answer naming an object: ``"a small red circle"``."""
    return _article(f"{obj.size} {obj.colour} {obj.shape}")


def referring_expression(ref: ObjectSpec, grid: int) -> str:
    """``"the red circle"``, ``"the object at the top left"``."""
    return "the " + _noun_phrase(ref, grid)


def caption_text(spec: QuerySpec, grid: int) -> str:
    """The text of a caption or text query.

    Full captions (``exact``) list every object with all attributes: ``"a small red circle at the top left and a
    large blue square at the center"``. Partial ones start with ``"an image with"``: ``"an image with a red circle
    above a blue triangle"``.
    """
    phrases = [_article(_noun_phrase(o, grid)) for o in spec.objects]
    if spec.exact:
        if spec.relations or spec.count is not None or any(len(o.given()) < len(ATTRIBUTES) for o in spec.objects):
            raise ValueError(f"a full caption lists whole objects only: {spec}")
        return _join(phrases)
    for a, relation, b in spec.relations:
        if (a, b) != (0, 1) or len(spec.relations) > 1:
            raise ValueError(f"captions express one relation, between the first two objects: {spec}")
        phrases = [f"{phrases[0]} {RELATION_PHRASES[relation]} {phrases[1]}", *phrases[2:]]
    text = "an image with "
    if spec.count is not None:
        count = f"exactly {NUMBER_WORDS[spec.count]} object{'s' if spec.count != 1 else ''}"
        return text + count + (", including " + _join(phrases) if phrases else "")
    return text + _join(phrases)


def question_text(question: Question, grid: int) -> str:
    """``"What colour is the circle at the top left?"``, ``"How many red objects are there?"``."""
    ref = referring_expression(question.target, grid)
    if question.kind in ("colour", "shape", "size"):
        return f"What {question.kind} is {ref}?"
    if question.kind == "where":
        return f"Where is {ref}?"
    if question.kind == "relation":
        return f"What is {RELATION_PHRASES[question.relation]} {ref}?"
    noun = _noun_phrase(question.target, grid)
    if question.kind == "count":
        head, _, tail = noun.partition(" at the ")
        return f"How many {_plural(head)}{' at the ' + tail if tail else ''} are there?"
    if question.kind == "exists":
        return f"Is there {_article(noun)}?"
    raise ValueError(f"unknown question kind {question.kind!r}")


# --------------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class _Vocab:
    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]
    grid: int

    @property
    def cells(self) -> range:
        return range(self.grid * self.grid)

    def values(self, attribute: str) -> Sequence[Any]:
        return {"shape": self.shapes, "colour": self.colours, "size": self.sizes, "cell": self.cells}[attribute]


def _object_count(rng: random.Random, config: ShapesWorldConfig) -> int:
    """Scenes of n objects are drawn with weight min(n, 3): busy scenes are the hard ones."""
    counts = range(config.min_objects, config.max_objects + 1)
    return rng.choices(counts, weights=[min(n, 3) for n in counts])[0]


def sample_scene(
    rng: random.Random,
    vocab: _Vocab,
    combos: Sequence[tuple[str, str]],
    n_objects: int,
    jitter: int,
    focus: Sequence[tuple[str, str]] = (),
) -> Scene:
    """A random scene of `n_objects` with (colour, shape) from `combos`; with `focus`, one object is from it."""
    cells = rng.sample(list(vocab.cells), n_objects)
    chosen = rng.sample(list(combos), n_objects)
    if focus:
        pick = rng.choice(list(focus))
        chosen = [pick, *[c for c in chosen if c != pick]][:n_objects]
    objects = [
        ShapeObject(
            cell, shape, colour, rng.choice(vocab.sizes), rng.randint(-jitter, jitter), rng.randint(-jitter, jitter)
        )
        for cell, (colour, shape) in zip(cells, chosen)
    ]
    return Scene(tuple(objects), vocab.grid)


def one_off_variants(scene: Scene, vocab: _Vocab, allowed: set[tuple[str, str]]) -> list[Scene]:
    """Every scene one attribute off `scene`: one object's colour, shape, size or cell changed (in a fixed order)."""
    variants = []
    used_cells = {o.cell for o in scene.objects}
    for index, obj in enumerate(scene.objects):
        others = [o for i, o in enumerate(scene.objects) if i != index]
        taken = {(o.colour, o.shape) for o in others}
        changes = [dataclasses.replace(obj, colour=c) for c in vocab.colours if c != obj.colour]
        changes += [dataclasses.replace(obj, shape=s) for s in vocab.shapes if s != obj.shape]
        changes += [dataclasses.replace(obj, size=s) for s in vocab.sizes if s != obj.size]
        changes += [dataclasses.replace(obj, cell=c) for c in vocab.cells if c not in used_cells]
        for changed in changes:
            combo = (changed.colour, changed.shape)
            if combo in allowed and combo not in taken:
                variants.append(Scene((*others, changed), scene.grid))
    return variants


def is_one_off(a: Any, b: Any) -> bool:
    """Whether two candidate keys (see `_candidate_key`) differ in exactly one attribute."""
    if a[0] != b[0]:
        return False
    if a[0] == "scene":
        only_a, only_b = set(a[1]) - set(b[1]), set(b[1]) - set(a[1])
        if len(only_a) != 1 or len(only_b) != 1:
            return False
        return sum(x != y for x, y in zip(next(iter(only_a)), next(iter(only_b)))) == 1
    leaves_a, leaves_b = a[1], b[1]
    if leaves_a.keys() != leaves_b.keys():
        return False
    return sum(leaves_a[k] != leaves_b[k] for k in leaves_a) == 1


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        return {k: v for key, value in data.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    if isinstance(data, list | tuple):
        return {k: v for i, value in enumerate(data) for k, v in _leaves(value, f"{prefix}{i}.").items()}
    return {prefix: data}


def _spec_key(spec: QuerySpec) -> tuple[str, Any]:
    if spec.exact:
        return ("scene", tuple(sorted((o.cell, o.shape, o.colour, o.size) for o in spec.objects)))
    return ("leaves", _leaves(spec.to_json()))


def exact_spec(scene: Scene) -> QuerySpec:
    """The full caption's spec of a scene."""
    return QuerySpec(tuple(ObjectSpec.of(o) for o in scene.objects), exact=True)


def _pick_attributes(rng: random.Random, required: Sequence[str] = (), at_least: int = 1) -> tuple[str, ...]:
    weights = {"shape": 0.8, "colour": 0.8, "size": 0.35, "cell": 0.12}
    picked = [name for name in ATTRIBUTES if name in required or rng.random() < weights[name]]
    for name in rng.sample(["shape", "colour"], 2):  # too few: add the colour or the shape
        if len(picked) < at_least and name not in picked:
            picked.append(name)
    return tuple(name for name in ATTRIBUTES if name in picked)


def sample_partial_spec(
    rng: random.Random, scene: Scene, focus: ShapeObject | None = None, rich: bool = False
) -> QuerySpec:
    """A partial query true of `scene` (one or two objects, maybe a relation or a count). `rich`: every object has
    its colour and shape; `focus`: that object is mentioned with its colour and shape."""
    objects = list(scene.objects)
    first = focus or rng.choice(objects)
    rest = [o for o in objects if o != first]
    kind = rng.choices(("one", "and", "relation", "count"), weights=(0.3, 0.25, 0.35, 0.1))[0]
    if not rest and kind in ("and", "relation"):
        kind = "one"
    chosen = [first] if kind in ("one", "count") else [first, rng.choice(rest)]
    if focus is None:
        rng.shuffle(chosen)
    required = ("shape", "colour") if rich else ()
    at_least = 2 if kind == "one" else 1  # a lone "an image with a circle" would hold for a third of the world
    specs = tuple(
        ObjectSpec.of(o, _pick_attributes(rng, ("shape", "colour") if o is focus else required, at_least))
        for o in chosen
    )
    relations: tuple[tuple[int, str, int], ...] = ()
    if kind == "relation":
        holding = [r for r in RELATIONS if relation_holds(chosen[0], r, chosen[1], scene.grid)]
        relations = ((0, rng.choice(holding), 1),)
    spec = QuerySpec(specs, relations, len(objects) if kind == "count" else None)
    assert satisfies(scene, spec), (scene, spec)  # noqa: S101 - an internal invariant, not user input
    return spec


def spec_perturbations(spec: QuerySpec, vocab: _Vocab) -> list[QuerySpec]:
    """Every spec one value off `spec` (an object attribute, a relation or the count), in a fixed order."""
    found = []
    for index, obj in enumerate(spec.objects):
        for name in obj.given():
            for value in vocab.values(name):
                if value != getattr(obj, name):
                    objects = list(spec.objects)
                    objects[index] = dataclasses.replace(obj, **{name: value})
                    found.append(dataclasses.replace(spec, objects=tuple(objects)))
    for index, (a, relation, b) in enumerate(spec.relations):
        for other in RELATIONS:
            if other != relation:
                relations = list(spec.relations)
                relations[index] = (a, other, b)
                found.append(dataclasses.replace(spec, relations=tuple(relations)))
    if spec.count is not None:
        found += [dataclasses.replace(spec, count=n) for n in range(1, 5) if n != spec.count]
    return found


def unique_refs(scene: Scene, obj: ShapeObject, exclude: str | None = None) -> list[ObjectSpec]:
    """The shortest referring expressions (attribute subsets, without `exclude`) that pick out `obj` alone."""
    names = [name for name in ATTRIBUTES if name != exclude]
    for length in range(1, len(names) + 1):
        found = [ObjectSpec.of(obj, subset) for subset in combinations(names, length)]
        found = [ref for ref in found if resolve(scene, ref) == [obj]]
        if found:
            return found
    return []


def sample_question(
    rng: random.Random,
    scene: Scene,
    vocab: _Vocab,
    allowed: set[tuple[str, str]],
    focus: ShapeObject | None = None,
) -> Question:
    """A question with a single answer about `scene` (about `focus` when given), naming only `allowed` combos."""
    kinds = ("colour", "shape", "size", "where", "count", "exists", "relation")
    for _ in range(100):
        kind = rng.choices(kinds, weights=(2, 2, 1, 1, 1.5, 1.5, 1.5))[0]
        obj = focus or rng.choice(scene.objects)
        if kind == "count":
            attributes = rng.choice((("colour",), ("shape",), ("colour", "shape"), ("size",)))
            if rng.random() < 0.25 and focus is None:  # a count that may be zero
                target = ObjectSpec(**{name: rng.choice(list(vocab.values(name))) for name in attributes})
                if not _spec_allowed(QuerySpec((target,)), allowed):
                    continue
            else:
                target = ObjectSpec.of(obj, attributes if focus is None else ("colour", "shape"))
            question = Question(kind, target)
        elif kind == "exists":
            target = ObjectSpec.of(obj, ("colour", "shape") if rng.random() < 0.7 else ("size", "colour", "shape"))
            if rng.random() < 0.5:  # ask for a one-off object that may be absent
                others = [p for p in spec_perturbations(QuerySpec((target,)), vocab) if _spec_allowed(p, allowed)]
                target = rng.choice(others).objects[0]
            question = Question(kind, target)
        else:
            exclude = kind if kind in ("colour", "shape", "size") else ("cell" if kind == "where" else None)
            refs = unique_refs(scene, obj, exclude)
            if not refs:
                continue
            question = Question(kind, rng.choice(refs), rng.choice(RELATIONS) if kind == "relation" else None)
        if answer(scene, question) is not None:
            return question
    raise RuntimeError(f"no answerable question found for {scene}")


# -------------------------------------------------------------------------------------------------- rendering


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


# ------------------------------------------------------------------------------------------------ world writer


Candidate = tuple[str, str, Any]  # (text, image, key for the one-attribute-off test)


@dataclass
class _Row:
    """One pair or eval row before writing: query (text, image) and candidates (text, image, key) gold first."""

    task: str
    query_text: str
    query_image: str
    candidates: list[tuple[str, str, Any]]
    meta: dict[str, Any]


class _World:
    """Registers images (rendered at once) and texts (with their meaning), keeping every name unique."""

    def __init__(self, config: ShapesWorldConfig, out_dir: Path) -> None:
        self.config, self.out_dir = config, out_dir
        self.vocab = _Vocab(config.colours, config.shapes, config.sizes, config.grid)
        self.scenes: dict[str, Scene] = {}
        self.crops: dict[str, tuple[str, str, str]] = {}
        self.texts: dict[str, dict[str, Any]] = {}
        self.signatures: dict[tuple, str] = {}
        self.counters: dict[str, int] = {}
        self._specs: dict[str, QuerySpec] = {}
        self._pools: dict[tuple, list[Candidate]] = {}
        combos = [(c, s) for s in config.shapes for c in config.colours]
        self.heldout = sorted(_pick_heldout(config, random.Random(f"shapes-{config.seed}-heldout")), key=combos.index)
        self.seen = [c for c in combos if c not in self.heldout]
        self.all_combos = combos

    def is_new(self, scene: Scene) -> bool:
        return scene.signature not in self.signatures

    def add_scene(self, scene: Scene, folder: str) -> str:
        if scene.signature in self.signatures:
            return self.signatures[scene.signature]
        index = self.counters.get(folder, 0)
        self.counters[folder] = index + 1
        path = f"images/{folder}/{index:05d}.png"
        _save_png(render_scene(scene, self.config.image_size, self.config.supersample), self.out_dir / path)
        self.scenes[path] = scene
        self.signatures[scene.signature] = path
        return path

    def add_crop(self, shape: str, colour: str, size: str) -> str:
        path = f"images/crops/{size}_{colour}_{shape}.png"
        if path not in self.crops:
            _save_png(
                render_crop(shape, colour, size, self.config.image_size, self.config.supersample), self.out_dir / path
            )
            self.crops[path] = (shape, colour, size)
        return path

    def text(self, text: str, meaning: dict[str, Any]) -> str:
        known = self.texts.setdefault(text, meaning)
        if known != meaning:
            raise RuntimeError(f"the text {text!r} would mean both {known} and {meaning}")
        return text

    def caption(self, spec: QuerySpec) -> str:
        text = self.text(caption_text(spec, self.vocab.grid), {"kind": "caption", "spec": spec.to_json()})
        self._specs[text] = spec
        return text

    def spec(self, caption: str) -> QuerySpec:
        """The spec of a registered caption."""
        if caption not in self._specs:
            self._specs[caption] = QuerySpec.from_json(self.texts[caption]["spec"])
        return self._specs[caption]

    def pool(self, task: str, allowed: set[tuple[str, str]]) -> list[Candidate]:
        """The (cached) answers, labels or crops of a task over the `allowed` combinations."""
        key = (task, tuple(sorted(allowed)))
        if key not in self._pools:
            self._pools[key] = _eval_pool(self, task, allowed)
        return self._pools[key]

    def image_candidate(self) -> str:
        return self.text(IMAGE_CANDIDATE, {"kind": "image"})

    def new_scene(
        self, rng: random.Random, combos: Sequence, focus: Sequence = (), accept: Callable[[Scene], bool] | None = None
    ) -> Scene:
        """A scene not yet in the world, with one object from `focus` if given, that `accept` accepts."""
        cfg = self.config
        for _ in range(1000):
            scene = sample_scene(rng, self.vocab, combos, _object_count(rng, cfg), cfg.jitter, focus)
            if self.is_new(scene) and (accept is None or accept(scene)):
                return scene
        raise RuntimeError("could not sample a new scene: the world is too small for the requested counts")


def _pick_heldout(config: ShapesWorldConfig, rng: random.Random) -> list[tuple[str, str]]:
    """Held-out (colour, shape) combinations spread over colours and shapes (each used as rarely as possible)."""
    colours, shapes = list(config.colours), list(config.shapes)
    rng.shuffle(colours)
    rng.shuffle(shapes)
    picked: list[tuple[str, str]] = []
    offset = 0
    while len(picked) < config.heldout_combos:
        for i in range(len(colours)):
            combo = (colours[i], shapes[(i + offset) % len(shapes)])
            if len(picked) < config.heldout_combos and combo not in picked:
                picked.append(combo)
        offset += 1
    return picked


# --------------------------------------------------------------------------------------------- training pairs


def _train_scenes(world: _World, rng: random.Random) -> tuple[list[str], list[str]]:
    """Families of a base scene and its one-attribute-off variants (positives) plus distractor variants."""
    cfg, allowed = world.config, set(world.seen)
    positives, distractors = [], []
    for _ in range(cfg.train_families):
        base = world.new_scene(rng, world.seen)
        positives.append(world.add_scene(base, "train"))
        variants = [v for v in one_off_variants(base, world.vocab, allowed) if world.is_new(v)]
        rng.shuffle(variants)
        take = variants[: cfg.variants_per_family + cfg.distractors_per_family]
        positives += [world.add_scene(v, "train") for v in take[: cfg.variants_per_family]]
        distractors += [world.add_scene(v, "distractors") for v in take[cfg.variants_per_family :]]
    return positives, distractors


def _pair(
    world: _World, rng: random.Random, task: str, image: str, evaluation: bool = False, heldout: bool = False
) -> _Row | None:
    """One training pair (or the gold of an eval row) of `task` on the scene `image`; None if the scene can't serve.

    Eval queries more often use full captions and name colour and shape of every object they mention (more
    one-attribute-off distractors); held-out ones are about the scene's held-out object."""
    makers: dict[str, Callable[..., _Row | None]] = {"t2i": _t2i_row, "i2t": _i2t_row, "vqa": _vqa_row}
    makers.update(classification=_classification_row, grounding=_grounding_row)
    if task not in makers:
        raise ValueError(f"unknown task {task!r}; tasks are {list(TASKS)}")
    scene = world.scenes[image]
    focus = _focus(world, scene) if heldout else None
    return makers[task](world, rng, image, scene, focus, evaluation, heldout)


def _caption_spec(rng: random.Random, scene: Scene, focus: ShapeObject | None, evaluation: bool) -> QuerySpec:
    if rng.random() < (0.5 if evaluation else 0.35):
        return exact_spec(scene)
    return sample_partial_spec(rng, scene, focus, rich=evaluation)


def _t2i_row(
    world: _World,
    rng: random.Random,
    image: str,
    scene: Scene,
    focus: ShapeObject | None,
    evaluation: bool,
    heldout: bool,
) -> _Row:
    spec = _caption_spec(rng, scene, focus, evaluation)
    caption = caption_text(spec, world.vocab.grid)
    query = world.text(T2I_QUERY.format(caption=caption), {"kind": "find_image", "spec": spec.to_json()})
    gold = (world.image_candidate(), image, ("scene", scene.signature))
    return _Row("t2i", query, "", [gold], {"spec": spec.to_json()})


def _i2t_row(
    world: _World,
    rng: random.Random,
    image: str,
    scene: Scene,
    focus: ShapeObject | None,
    evaluation: bool,
    heldout: bool,
) -> _Row:
    spec = _caption_spec(rng, scene, focus, evaluation)
    query = world.text(I2T_QUERY, {"kind": "describe"})
    return _Row("i2t", query, image, [(world.caption(spec), "", _spec_key(spec))], {"spec": spec.to_json()})


def _vqa_row(
    world: _World,
    rng: random.Random,
    image: str,
    scene: Scene,
    focus: ShapeObject | None,
    evaluation: bool,
    heldout: bool,
) -> _Row:
    question = sample_question(rng, scene, world.vocab, set(world.all_combos if heldout else world.seen), focus)
    reply = answer(scene, question)
    text = VQA_QUERY.format(question=question_text(question, world.vocab.grid))
    query = world.text(text, {"kind": "question", "question": question.to_json()})
    gold = (world.text(reply, {"kind": "answer"}), "", _answer_key(question, reply))
    return _Row("vqa", query, image, [gold], {"question": question.to_json(), "answer": reply})


def _classification_row(
    world: _World,
    rng: random.Random,
    image: str,
    scene: Scene,
    focus: ShapeObject | None,
    evaluation: bool,
    heldout: bool,
) -> _Row | None:
    label, big = class_label(scene), largest(scene)
    if label is None:
        return None
    key = ("leaves", {"count": len(scene.objects), "colour": big.colour, "shape": big.shape})
    gold = (world.text(label, {"kind": "label"}), "", key)
    return _Row("classification", world.text(CLS_QUERY, {"kind": "classify"}), image, [gold], {"label": label})


def _grounding_row(
    world: _World,
    rng: random.Random,
    image: str,
    scene: Scene,
    focus: ShapeObject | None,
    evaluation: bool,
    heldout: bool,
) -> _Row:
    obj = focus or rng.choice(scene.objects)
    ref = rng.choice(unique_refs(scene, obj))
    text = GROUND_QUERY.format(ref=referring_expression(ref, world.vocab.grid))
    query = world.text(text, {"kind": "ground", "ref": ref.to_json()})
    key = ("leaves", {"shape": obj.shape, "colour": obj.colour, "size": obj.size})
    gold = (world.text(CROP_CANDIDATE, {"kind": "crop"}), world.add_crop(obj.shape, obj.colour, obj.size), key)
    return _Row("grounding", query, image, [gold], {"ref": ref.to_json()})


def _focus(world: _World, scene: Scene) -> ShapeObject | None:
    held = [o for o in scene.objects if (o.colour, o.shape) in world.heldout]
    return held[0] if held else None


def _answer_key(question: Question, reply: str) -> tuple[str, dict[str, Any]]:
    """Answers are one attribute off when they name the same kind of thing with one value changed."""
    if question.kind == "relation":  # "a small red circle"
        size, colour, shape = reply.split(" ")[1:]
        return ("leaves", {"size": size, "colour": colour, "shape": shape})
    category = {"where": "cell", "exists": "yes_no"}.get(question.kind, question.kind)
    return ("leaves", {category: reply})


def _training_pairs(world: _World, rng: random.Random, images: list[str]) -> list[_Row]:
    rows = []
    for task in TASKS:
        wanted = world.config.train_pairs.get(task, 0)
        order, made, tries = list(images), 0, 0
        rng.shuffle(order)
        while made < wanted and tries < 4 * len(order) + wanted:
            row = _pair(world, rng, task, order[tries % len(order)])
            tries += 1
            if row is not None:
                rows.append(row)
                made += 1
        if made < wanted:
            logger.warning("task %s: %d of %d training pairs (too few suitable scenes)", task, made, wanted)
    rng.shuffle(rows)
    return rows


# ------------------------------------------------------------------------------------------------- eval sets


def _eval_pool(world: _World, task: str, allowed: set[tuple[str, str]]) -> list[Candidate]:
    """Every text or crop candidate a set of `task` may draw distractors from (t2i/i2t draw from scenes instead)."""
    vocab, combos = world.vocab, [combo for combo in world.all_combos if combo in allowed]
    pool: list[tuple[str, str, dict[str, Any]]] = []
    if task == "vqa":
        cells = CELL_NAMES[vocab.grid]
        pool += [(c, "", {"colour": c}) for c in vocab.colours] + [(s, "", {"shape": s}) for s in vocab.shapes]
        pool += [(z, "", {"size": z}) for z in vocab.sizes] + [(cells[c], "", {"cell": cells[c]}) for c in vocab.cells]
        pool += [(NUMBER_WORDS[n], "", {"count": NUMBER_WORDS[n]}) for n in range(world.config.max_objects + 1)]
        pool += [("yes", "", {"yes_no": "yes"}), ("no", "", {"yes_no": "no"})]
        pool += [
            (describe(ShapeObject(0, s, c, z)), "", {"size": z, "colour": c, "shape": s})
            for c, s in combos
            for z in vocab.sizes
        ]
        meaning = {"kind": "answer"}
    elif task == "classification":
        for n in range(world.config.min_objects, world.config.max_objects + 1):
            label = f"{NUMBER_WORDS[n]} object{'s' if n > 1 else ''}; the largest: {{}} {{}}"
            pool += [(label.format(c, s), "", {"count": n, "colour": c, "shape": s}) for c, s in combos]
        meaning = {"kind": "label"}
    elif task == "grounding":
        pool += [
            (CROP_CANDIDATE, world.add_crop(s, c, z), {"shape": s, "colour": c, "size": z})
            for c, s in combos
            for z in vocab.sizes
        ]
        meaning = {"kind": "crop"}
    else:
        raise ValueError(f"task {task!r} draws its distractors from scenes")
    return [(world.text(text, meaning), image, ("leaves", key)) for text, image, key in pool]


def _fill(
    rng: random.Random,
    gold: Candidate,
    hard: Sequence[Candidate],
    pool: Sequence[Candidate],
    is_false: Callable[[Candidate], bool],
    wanted: int,
    fraction: float,
) -> list[Candidate]:
    """Gold first, then up to ``fraction`` of the distractors from `hard`, the rest from `pool`, in random order;
    every distractor unique and `is_false`."""
    seen = {gold[:2]}
    hard = [c for c in _unique(hard) if c[:2] not in seen]
    rng.shuffle(hard)
    chosen = hard[: int(round(fraction * (wanted - 1)))]
    seen |= {c[:2] for c in chosen}
    rest = list(pool)
    rng.shuffle(rest)
    for candidate in rest:
        if len(chosen) >= wanted - 1:
            break
        if candidate[:2] not in seen and is_false(candidate):
            chosen.append(candidate)
            seen.add(candidate[:2])
    rng.shuffle(chosen)
    return [gold, *chosen]


def _unique(items: Iterable[Candidate]) -> Iterator[Candidate]:
    seen: set[tuple[str, str]] = set()
    for item in items:
        if item[:2] not in seen:
            seen.add(item[:2])
            yield item


def _eval_scene_filter(world: _World, task: str, heldout: bool) -> Callable[[Scene], bool] | None:
    """Classification needs a single largest object (held out: of a held-out combination)."""
    if task != "classification":
        return None

    def accept(scene: Scene) -> bool:
        big = largest(scene)
        return big is not None and (not heldout or (big.colour, big.shape) in world.heldout)

    return accept


def _eval_set(world: _World, rng: random.Random, task: str, heldout: bool, n_queries: int) -> list[_Row]:
    """`n_queries` rows of `task`, each with its gold at index 0 and distractors all false for the query."""
    cfg = world.config
    combos = world.all_combos if heldout else world.seen
    allowed, folder = set(combos), ("heldout" if heldout else "eval")
    accept = _eval_scene_filter(world, task, heldout)
    pending: list[tuple[_Row, Scene, list[Candidate]]] = []
    for _ in range(n_queries):
        scene = world.new_scene(rng, combos, world.heldout if heldout else (), accept)
        row = _pair(world, rng, task, world.add_scene(scene, folder), evaluation=True, heldout=heldout)
        pending.append((row, scene, _hard_candidates(world, rng, task, row, scene, allowed, folder)))
    pool = _shared_pool(world, task, pending, allowed)
    rows = []
    for row, scene, hard in pending:
        gold = row.candidates[0]
        is_false = _falsifier(world, task, row, scene)
        row.candidates = _fill(rng, gold, hard, pool, is_false, cfg.candidates, cfg.hard_negative_fraction)
        _check_eval_row(world, row)
        row.meta["hard_negatives"] = [i for i, c in enumerate(row.candidates) if i and is_one_off(gold[2], c[2])]
        rows.append(row)
    return rows


def _falsifier(world: _World, task: str, row: _Row, scene: Scene) -> Callable[[Candidate], bool]:
    """A fast test that a candidate is false for the row's query (every eval row is re-checked by the truth)."""
    if task == "t2i":
        spec = QuerySpec.from_json(row.meta["spec"])
        return lambda candidate: not satisfies(world.scenes[candidate[1]], spec)
    if task == "i2t":
        return lambda candidate: not satisfies(scene, world.spec(candidate[0]))
    gold = row.candidates[0]
    return lambda candidate: candidate[:2] != gold[:2]  # one answer, label or crop is right


def _hard_candidates(
    world: _World, rng: random.Random, task: str, row: _Row, scene: Scene, allowed: set, folder: str
) -> list[Candidate]:
    """The gold's one-attribute-off neighbours that are false for the query."""
    gold = row.candidates[0]
    if task == "t2i":
        spec = QuerySpec.from_json(row.meta["spec"])
        variants = [v for v in one_off_variants(scene, world.vocab, allowed) if not satisfies(v, spec)]
        # eval images stay apart from training images (a variant may already be another eval image)
        variants = [
            v for v in variants if world.is_new(v) or world.signatures[v.signature].startswith(f"images/{folder}")
        ]
        rng.shuffle(variants)
        budget = int(round(world.config.hard_negative_fraction * (world.config.candidates - 1)))
        return [
            (world.image_candidate(), world.add_scene(v, folder), ("scene", v.signature)) for v in variants[:budget]
        ]
    if task == "i2t":
        spec = QuerySpec.from_json(row.meta["spec"])
        if spec.exact:
            others = [exact_spec(v) for v in one_off_variants(scene, world.vocab, allowed)]
        else:
            others = [s for s in spec_perturbations(spec, world.vocab) if _spec_allowed(s, allowed)]
        return [(world.caption(s), "", _spec_key(s)) for s in others if not satisfies(scene, s)]
    return [c for c in world.pool(task, allowed) if is_one_off(gold[2], c[2])]


def _spec_allowed(spec: QuerySpec, allowed: set[tuple[str, str]]) -> bool:
    return all(o.colour is None or o.shape is None or (o.colour, o.shape) in allowed for o in spec.objects)


def _shared_pool(world: _World, task: str, pending: list, allowed: set) -> list[Candidate]:
    """Distractors any query of the set may use: the set's images (t2i), its captions (i2t), or the task's pool."""
    if task == "t2i":
        return list(_unique(c for row, _, hard in pending for c in (row.candidates[0], *hard)))
    if task == "i2t":
        items = []
        for row, scene, hard in pending:
            items.append((world.caption(exact_spec(scene)), "", _spec_key(exact_spec(scene))))
            items += [row.candidates[0], *hard]
        return list(_unique(items))
    return world.pool(task, allowed)


def _check_eval_row(world: _World, row: _Row) -> None:
    query = (row.query_text, row.query_image)
    verdicts = [world_truth(world.scenes, world.crops, world.texts, query, c[:2]) for c in row.candidates]
    if not verdicts[0] or any(verdicts[1:]):
        raise RuntimeError(f"eval row {row.query_text!r}: truth of candidates {verdicts}")  # a generator bug


# ------------------------------------------------------------------------------------------------ compositional


def _compositional(world: _World, rng: random.Random, images: list[str]) -> list[dict[str, str]]:
    """SugarCrepe-style rows on in-distribution eval images; every caption is checked true, every negative false."""
    rows = []
    makers = {
        "replace-obj": _replace("shape"),
        "replace-att": _replace("colour", "size"),
        "replace-rel": _replace_relation,
        "swap-obj": _swap("shape"),
        "swap-att": _swap("colour", "size"),
        "add-obj": _add_object,
        "add-att": _add_attribute,
    }
    for subset, maker in makers.items():
        made, order = 0, list(images)
        rng.shuffle(order)
        for image in order * 3:
            if made == world.config.compositional_per_subset:
                break
            scene = world.scenes[image]
            pair = maker(rng, scene, world)
            if pair is None or not satisfies(scene, pair[0]) or satisfies(scene, pair[1]):
                continue
            rows.append(
                {"image": image, "caption": world.caption(pair[0]), "negative_caption": world.caption(pair[1])}
            )
            rows[-1]["subset"] = subset
            made += 1
    return rows


def _two_objects(rng: random.Random, scene: Scene, relation: bool = False) -> QuerySpec | None:
    if len(scene.objects) < 2:
        return None
    a, b = rng.sample(list(scene.objects), 2)
    specs = (ObjectSpec(a.shape, a.colour), ObjectSpec(b.shape, b.colour))
    if not relation:
        return QuerySpec(specs)
    holding = [r for r in RELATIONS if relation_holds(a, r, b, scene.grid)]
    return QuerySpec(specs, ((0, rng.choice(holding), 1),))


def _replace(*attributes: str):
    def make(rng: random.Random, scene: Scene, world: _World) -> tuple[QuerySpec, QuerySpec] | None:
        obj = rng.choice(scene.objects)
        spec = QuerySpec((ObjectSpec.of(obj, ("shape", "colour", *[a for a in attributes if a == "size"])),))
        name = rng.choice(attributes)
        values = [v for v in world.vocab.values(name) if v != getattr(obj, name)]
        changed = dataclasses.replace(spec.objects[0], **{name: rng.choice(values)})
        return spec, QuerySpec((changed,))

    return make


def _replace_relation(rng: random.Random, scene: Scene, world: _World) -> tuple[QuerySpec, QuerySpec] | None:
    spec = _two_objects(rng, scene, relation=True)
    if spec is None:
        return None
    a, relation, b = spec.relations[0]
    return spec, dataclasses.replace(spec, relations=((a, OPPOSITE[relation], b),))


def _swap(*attributes: str):
    def make(rng: random.Random, scene: Scene, world: _World) -> tuple[QuerySpec, QuerySpec] | None:
        if len(scene.objects) < 2:
            return None
        a, b = rng.sample(list(scene.objects), 2)
        name = rng.choice(attributes)
        keep = ("shape", "colour", "size") if name == "size" else ("shape", "colour")
        spec = QuerySpec((ObjectSpec.of(a, keep), ObjectSpec.of(b, keep)))
        if getattr(a, name) == getattr(b, name):
            return None
        first = dataclasses.replace(spec.objects[0], **{name: getattr(b, name)})
        second = dataclasses.replace(spec.objects[1], **{name: getattr(a, name)})
        return spec, QuerySpec((first, second))

    return make


def _add_object(rng: random.Random, scene: Scene, world: _World) -> tuple[QuerySpec, QuerySpec] | None:
    obj = rng.choice(scene.objects)
    present = {(o.colour, o.shape) for o in scene.objects}
    absent = [c for c in world.seen if c not in present]
    colour, shape = rng.choice(absent)
    spec = QuerySpec((ObjectSpec(obj.shape, obj.colour),))
    return spec, QuerySpec((*spec.objects, ObjectSpec(shape, colour)))


def _add_attribute(rng: random.Random, scene: Scene, world: _World) -> tuple[QuerySpec, QuerySpec] | None:
    obj = rng.choice(scene.objects)
    spec = QuerySpec((ObjectSpec(obj.shape, obj.colour),))
    wrong = rng.choice([s for s in world.vocab.sizes if s != obj.size] or [None])
    if wrong is None:
        return None
    return spec, QuerySpec((ObjectSpec(obj.shape, obj.colour, wrong),))


# ------------------------------------------------------------------------------------------------------- truth


def world_truth(
    scenes: Mapping[str, Scene],
    crops: Mapping[str, tuple[str, str, str]],
    texts: Mapping[str, Mapping[str, Any]],
    query: tuple[str, str],
    candidate: tuple[str, str],
) -> bool:
    """Whether `candidate` (text, image) meets `query` (text, image) in the world described by the tables.

    Raises:
        `KeyError`: when a text or image is not part of the world.
    """
    (q_text, q_image), (c_text, c_image) = query, candidate
    q_meaning, c_meaning = texts[q_text], texts[c_text] if c_text else {"kind": "image"}
    kind, c_kind = q_meaning["kind"], c_meaning["kind"]
    if kind == "find_image" and c_kind == "image" and c_image in scenes:
        return satisfies(scenes[c_image], QuerySpec.from_json(q_meaning["spec"]))
    if not q_image:
        return False
    scene = scenes[q_image]
    if kind == "describe" and c_kind == "caption":
        return satisfies(scene, QuerySpec.from_json(c_meaning["spec"]))
    if kind == "question" and c_kind == "answer":
        return answer(scene, Question.from_json(q_meaning["question"])) == c_text
    if kind == "classify" and c_kind == "label":
        return class_label(scene) == c_text
    if kind == "ground" and c_kind == "crop" and c_image in crops:
        found = resolve(scene, ObjectSpec(**q_meaning["ref"]))
        return len(found) == 1 and (found[0].shape, found[0].colour, found[0].size) == crops[c_image]
    return False


class ShapesTruth:
    """The yes/no truth of any (query, candidate) pair of a generated world: the judge's ground truth.

    Items are ``{"text": ..., "image": ...}`` mappings (or (text, image) tuples) as they appear in the world's
    files or in the datasets the readers return (absolute image paths).

    Example:

    ```python
    >>> truth = ShapesTruth.from_dir("runs/shapes")
    >>> row = load_shapes_train("runs/shapes")["train"][0]
    >>> query = {"text": row["query_text"], "image": row["query_image"]}
    >>> truth(query, {"text": row["pos_text"], "image": row["pos_image"]})
    True
    ```
    """

    def __init__(
        self,
        root: str | os.PathLike,
        scenes: Mapping[str, Scene],
        crops: Mapping[str, tuple[str, str, str]],
        texts: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.root = Path(root).absolute()
        self.scenes, self.crops, self.texts = dict(scenes), dict(crops), dict(texts)

    @classmethod
    def from_dir(cls, out_dir: str | os.PathLike) -> ShapesTruth:
        out_dir = Path(out_dir)
        scenes = {r["image"]: Scene.from_json(r["scene"]) for r in _read_jsonl(out_dir / "truth" / "scenes.jsonl")}
        crops = {
            r["image"]: (r["shape"], r["colour"], r["size"]) for r in _read_jsonl(out_dir / "truth" / "crops.jsonl")
        }
        texts = {r["text"]: r["meaning"] for r in _read_jsonl(out_dir / "truth" / "texts.jsonl")}
        return cls(out_dir, scenes, crops, texts)

    def _key(self, image: str) -> str:
        if not image or not os.path.isabs(image):
            return image
        return Path(os.path.relpath(image, self.root)).as_posix()

    def _item(self, item: Mapping[str, str] | tuple[str, str]) -> tuple[str, str]:
        text, image = (item["text"], item["image"]) if isinstance(item, Mapping) else item
        return text or "", self._key(image or "")

    def __call__(
        self, query: Mapping[str, str] | tuple[str, str], candidate: Mapping[str, str] | tuple[str, str]
    ) -> bool:
        try:
            return world_truth(self.scenes, self.crops, self.texts, self._item(query), self._item(candidate))
        except KeyError as error:
            raise KeyError(f"{error.args[0]!r} is not a text or image of the shapes world at {self.root}") from None

    def scene(self, image: str) -> Scene:
        """The scene an image shows."""
        return self.scenes[self._key(image)]

    def crop(self, image: str) -> tuple[str, str, str]:
        """The (shape, colour, size) a grounding crop shows."""
        return self.crops[self._key(image)]

    def meaning(self, text: str) -> dict[str, Any]:
        """What a text of the world means (its kind and structured spec, question or reference)."""
        return dict(self.texts[text])


# --------------------------------------------------------------------------------------------------- statistics


def _combo_key(spec: ObjectSpec) -> tuple[str, str] | None:
    return (spec.colour, spec.shape) if spec.colour and spec.shape else None


def _false_negatives(world: _World, rows: list[_Row], corpus_images: list[str], corpus_captions: list[str]) -> dict:
    """Per task, [training queries for which more than one corpus item is true, true items in total]
    (t2i: corpus images; i2t: corpus captions). Indexes by (colour, shape) skip items that cannot be true."""
    images_by_combo: dict[tuple[str, str], list[Scene]] = {}
    for image in corpus_images:
        for obj in world.scenes[image].objects:
            images_by_combo.setdefault((obj.colour, obj.shape), []).append(world.scenes[image])
    all_scenes = [world.scenes[image] for image in corpus_images]
    captions_by_combo: dict[tuple[str, str] | None, list[QuerySpec]] = {}
    for text in corpus_captions:
        spec = world.spec(text)
        key = next((k for k in map(_combo_key, spec.objects) if k), None)
        captions_by_combo.setdefault(key, []).append(spec)
    found = {"t2i": [0, 0], "i2t": [0, 0]}
    for row in rows:
        if row.task == "t2i":
            spec = QuerySpec.from_json(row.meta["spec"])
            key = next((k for k in map(_combo_key, spec.objects) if k), None)
            scenes = images_by_combo.get(key, []) if key else all_scenes
            true = sum(satisfies(scene, spec) for scene in scenes)
        elif row.task == "i2t":
            scene = world.scenes[row.query_image]
            specs = [*captions_by_combo.get(None, [])]
            for obj in scene.objects:
                specs += captions_by_combo.get((obj.colour, obj.shape), [])
            true = sum(satisfies(scene, spec) for spec in specs)
        else:
            continue
        found[row.task][0] += true > 1
        found[row.task][1] += true
    return found


def _one_off_neighbours(world: _World, images: list[str]) -> float:
    """Mean number of corpus images one attribute off each training positive image."""
    present = {world.scenes[i].signature for i in images}
    allowed = set(world.seen)
    counts = [
        sum(v.signature in present for v in one_off_variants(world.scenes[i], world.vocab, allowed)) for i in images
    ]
    return sum(counts) / max(len(counts), 1)


# ------------------------------------------------------------------------------------------------------ writing


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _train_record(row: _Row) -> dict[str, str]:
    text, image, _ = row.candidates[0]
    return {"qry": row.query_text, "qry_image_path": row.query_image, "pos_text": text, "pos_image_path": image}


def _eval_record(row: _Row) -> dict[str, Any]:
    return {
        "qry_text": row.query_text,
        "qry_img_path": row.query_image,
        "tgt_text": [c[0] for c in row.candidates],
        "tgt_img_path": [c[1] for c in row.candidates],
    }


def _row_meta(row: _Row) -> dict[str, Any]:
    image = row.query_image or row.candidates[0][1]
    return {"task": row.task, "image": image, **row.meta}


def generate_shapes_world(out_dir: str | os.PathLike, config: ShapesWorldConfig | None = None) -> dict[str, Any]:
    """Generates a shapes world into `out_dir` (see the module docstring for the layout) and returns its statistics.

    Args:
        out_dir (`str` or `os.PathLike`):
            The folder to write (created; an earlier world there is replaced, other files are left alone).
        config (`ShapesWorldConfig`, *optional*, defaults to `ShapesWorldConfig()`):
            Sizes, vocabulary and seed.

    Returns:
        `dict`: the statistics also stored in ``world.json`` (images, texts, pairs per task, false negatives, hard
        negatives per eval query, held-out combos), plus ``seconds`` (wall time, not stored).

    Example:

    ```python
    >>> stats = generate_shapes_world("/tmp/shapes", ShapesWorldConfig.preset("tiny"))
    >>> stats["train_pairs"]["total"]
    48
    ```
    """
    start = time.perf_counter()
    config = config or ShapesWorldConfig()
    out_dir = Path(out_dir)
    _remove_previous_world(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = _World(config, out_dir)
    rng = lambda part: random.Random(f"shapes-{config.seed}-{part}")  # noqa: E731 - one stream per part

    logger.info("shapes world: %d training families", config.train_families)
    positives, distractors = _train_scenes(world, rng("train-scenes"))
    pairs = _training_pairs(world, rng("train-pairs"), positives)
    distractor_items = [(world.image_candidate(), image) for image in distractors]
    distractor_items += [(world.caption(exact_spec(world.scenes[image])), "") for image in distractors]

    eval_rows: dict[str, tuple[list[_Row], str]] = {}
    for task in TASKS:
        logger.info("shapes world: eval sets for %s", task)
        eval_rows[EVAL_NAMES[task]] = (_eval_set(world, rng(f"eval-{task}"), task, False, config.eval_queries), "ind")
        if config.heldout_queries and world.heldout:
            rows = _eval_set(world, rng(f"heldout-{task}"), task, True, config.heldout_queries)
            eval_rows["heldout_" + EVAL_NAMES[task]] = (rows, "ood")
    eval_images = sorted(i for i in world.scenes if i.startswith("images/eval/"))
    compositional = _compositional(world, rng("compositional"), eval_images)

    logger.info("shapes world: writing files")
    _write_jsonl(out_dir / "train.jsonl", (_train_record(r) for r in pairs))
    _write_jsonl(out_dir / "meta" / "train.jsonl", (_row_meta(r) for r in pairs))
    _write_jsonl(out_dir / "corpus.jsonl", ({"text": t, "image": i} for t, i in distractor_items))
    for name, (rows, _) in eval_rows.items():
        _write_jsonl(out_dir / "eval" / f"{name}.jsonl", (_eval_record(r) for r in rows))
        _write_jsonl(out_dir / "meta" / "eval" / f"{name}.jsonl", (_row_meta(r) for r in rows))
    _write_jsonl(out_dir / "compositional.jsonl", compositional)
    gallery = [{"image": i, "caption": world.caption(exact_spec(world.scenes[i]))} for i in eval_images]
    _write_jsonl(out_dir / "gallery.jsonl", gallery)
    _write_jsonl(
        out_dir / "truth" / "scenes.jsonl", ({"image": i, "scene": s.to_json()} for i, s in world.scenes.items())
    )
    crops = ({"image": i, "shape": s, "colour": c, "size": z} for i, (s, c, z) in world.crops.items())
    _write_jsonl(out_dir / "truth" / "crops.jsonl", crops)
    _write_jsonl(out_dir / "truth" / "texts.jsonl", ({"text": t, "meaning": m} for t, m in world.texts.items()))

    stats = _statistics(world, pairs, positives, distractors, distractor_items, eval_rows, compositional)
    eval_sets = {
        name: {"file": f"eval/{name}.jsonl", "meta_task": META_TASKS[rows[0].task], "split": split}
        for name, (rows, split) in eval_rows.items()
        if rows
    }
    info = {
        "config": config.to_dict(),
        "vocabulary": {
            "colours": {c: list(COLOURS[c]) for c in config.colours},
            "shapes": list(config.shapes),
            "sizes": list(config.sizes),
            "cells": list(CELL_NAMES[config.grid]),
            "relations": list(RELATIONS),
        },
        "heldout_combos": [list(c) for c in world.heldout],
        "eval_sets": eval_sets,
        "statistics": stats,
    }
    (out_dir / "world.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    stats = {**stats, "seconds": round(time.perf_counter() - start, 2)}
    logger.info("shapes world written to %s in %.1f s", out_dir, stats["seconds"])
    return stats


WORLD_FILES = ("world.json", "train.jsonl", "corpus.jsonl", "compositional.jsonl", "gallery.jsonl")
WORLD_FOLDERS = ("images", "eval", "meta", "truth")


def _remove_previous_world(out_dir: Path) -> None:
    """Removes the files and folders of a world generated there before (recognised by its world.json), so that no
    stale image or eval set survives a smaller world."""
    if not (out_dir / "world.json").is_file():
        return
    logger.info("replacing the shapes world in %s", out_dir)
    for name in WORLD_FOLDERS:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for name in WORLD_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _statistics(
    world: _World,
    pairs: list[_Row],
    positives: list[str],
    distractors: list[str],
    distractor_items: list[tuple[str, str]],
    eval_rows: Mapping[str, tuple[list[_Row], str]],
    compositional: list[dict[str, str]],
) -> dict[str, Any]:
    per_task = {task: sum(r.task == task for r in pairs) for task in TASKS}
    corpus_images = sorted({c[1] for r in pairs for c in r.candidates if c[1] in world.scenes} | set(distractors))
    corpus_captions = sorted(
        {c[0] for r in pairs if r.task == "i2t" for c in r.candidates} | {t for t, i in distractor_items if not i}
    )
    false_negatives = _false_negatives(world, pairs, corpus_images, corpus_captions)
    corpus_items = {(c[0], c[1]) for r in pairs for c in r.candidates} | set(distractor_items)
    folders: dict[str, int] = {}
    for image in [*world.scenes, *world.crops]:
        folders[image.split("/")[1]] = folders.get(image.split("/")[1], 0) + 1
    evals = {}
    for name, (rows, split) in eval_rows.items():
        hard = [len(r.meta["hard_negatives"]) for r in rows]
        evals[name] = {
            "split": split,
            "queries": len(rows),
            "candidates_per_query": round(sum(len(r.candidates) for r in rows) / max(len(rows), 1), 2),
            "hard_negatives_per_query": round(sum(hard) / max(len(hard), 1), 2),
            "false_negatives": 0,  # every distractor is checked false by the world's truth
        }
    return {
        "images": {**folders, "total": sum(folders.values())},
        "texts": len(world.texts),
        "train_pairs": {**per_task, "total": len(pairs)},
        "train_corpus": {
            "items": len(corpus_items),
            "distractor_items": len(distractor_items),
            "one_off_neighbours_per_image": round(_one_off_neighbours(world, corpus_images), 2),
        },
        "train_queries_with_several_true_items": {
            task: {
                "queries": count,
                "share": round(count / max(per_task[task], 1), 3),
                "true_items_per_query": round(total / max(per_task[task], 1), 2),
            }
            for task, (count, total) in false_negatives.items()
        },
        "eval": evals,
        "compositional": {s: sum(r["subset"] == s for r in compositional) for s in _subsets(compositional)},
        "heldout_combos": [f"{c} {s}" for c, s in world.heldout],
    }


def _subsets(rows: list[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(r["subset"] for r in rows))


# ------------------------------------------------------------------------------------------------------ loading


def load_shapes_train(
    out_dir: str | os.PathLike, *, distractors: bool = True, check_images: bool = True
) -> datasets.DatasetDict:
    """The world's training pairs and corpus (positives, plus the ``corpus.jsonl`` distractors by default)."""
    from unime_hf.data.formats import read_corpus, read_mmeb_train
    from unime_hf.data.schema import CORPUS_SPLIT, merge_corpora

    out_dir = Path(out_dir)
    data = read_mmeb_train(out_dir / "train.jsonl", out_dir, check_images=check_images)
    if distractors and (out_dir / "corpus.jsonl").is_file():
        extra = read_corpus(out_dir / "corpus.jsonl", out_dir, check_images=check_images)
        data[CORPUS_SPLIT] = merge_corpora(data[CORPUS_SPLIT], extra)
    return data


def load_shapes_eval(
    out_dir: str | os.PathLike, split: str | None = None, *, check_images: bool = True
) -> dict[str, datasets.Dataset]:
    """The world's eval sets by name (``split``: ``"ind"``, ``"ood"`` or all), read with [`read_mmeb_eval`]."""
    from unime_hf.data.formats import read_mmeb_eval

    out_dir = Path(out_dir)
    sets = json.loads((out_dir / "world.json").read_text(encoding="utf-8"))["eval_sets"]
    return {
        name: read_mmeb_eval(out_dir / info["file"], out_dir, name, check_images=check_images)
        for name, info in sets.items()
        if split is None or info["split"] == split
    }


def load_shapes_gallery(out_dir: str | os.PathLike, *, check_images: bool = True) -> datasets.Dataset:
    """Every in-distribution eval image with its full caption (``image``, ``caption``), for gallery-wide retrieval
    (Recall@K over the whole gallery, dense in one-attribute-off families)."""
    import datasets

    out_dir = Path(out_dir).absolute()
    rows = [
        {"image": os.path.normpath(out_dir / row["image"]), "caption": row["caption"]}
        for row in _read_jsonl(out_dir / "gallery.jsonl")
    ]
    missing = [row["image"] for row in rows if check_images and not os.path.isfile(row["image"])]
    if missing:
        raise FileNotFoundError(f"{out_dir / 'gallery.jsonl'}: {len(missing)} image files missing, first {missing[0]}")
    return datasets.Dataset.from_list(rows)


def load_shapes_compositional(out_dir: str | os.PathLike, *, check_images: bool = True) -> datasets.Dataset:
    """The world's SugarCrepe-style set, read with [`read_compositional`]."""
    from unime_hf.data.formats import read_compositional

    return read_compositional(Path(out_dir) / "compositional.jsonl", out_dir, check_images=check_images)
