"""The world model: objects, scenes, what captions and questions ask of them, the truth predicates, and the texts.

[`satisfies`] and [`answer`] decide what is true of a [`Scene`]; [`caption_text`] and [`question_text`] write the
English every query and candidate of the world is made of.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unime_hf.data.shapes.config import ATTRIBUTES, CELL_NAMES, NUMBER_WORDS, RELATION_PHRASES, SIZES


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


# ---------------------------------------------------------------------------------------------------- truth


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


# ----------------------------------------------------------------------------------------------------- text


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
