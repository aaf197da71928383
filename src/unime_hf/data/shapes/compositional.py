"""The SugarCrepe-style compositional set: a true caption and a false one per image, one maker per subset."""

from __future__ import annotations

import dataclasses
import random

from unime_hf.data.shapes.config import OPPOSITE, RELATIONS
from unime_hf.data.shapes.scene import ObjectSpec, QuerySpec, Scene, relation_holds, satisfies
from unime_hf.data.shapes.world import _World


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
