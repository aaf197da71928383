"""Random scenes, their one-attribute-off variants, partial captions and questions, all seeded by the caller."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from unime_hf.data.shapes.config import ATTRIBUTES, RELATIONS, ShapesWorldConfig
from unime_hf.data.shapes.scene import (
    ObjectSpec,
    QuerySpec,
    Question,
    Scene,
    ShapeObject,
    answer,
    relation_holds,
    resolve,
    satisfies,
)


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


def _spec_allowed(spec: QuerySpec, allowed: set[tuple[str, str]]) -> bool:
    return all(o.colour is None or o.shape is None or (o.colour, o.shape) in allowed for o in spec.objects)


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
