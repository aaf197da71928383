"""Training pairs: families of one-attribute-off scenes and one row maker per task (also the gold of eval rows)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from unime_hf.data.shapes.config import CLS_QUERY, CROP_CANDIDATE, GROUND_QUERY, I2T_QUERY, T2I_QUERY, TASKS, VQA_QUERY
from unime_hf.data.shapes.sampling import (
    _spec_key,
    exact_spec,
    one_off_variants,
    sample_partial_spec,
    sample_question,
    unique_refs,
)
from unime_hf.data.shapes.scene import (
    QuerySpec,
    Question,
    Scene,
    ShapeObject,
    answer,
    caption_text,
    class_label,
    largest,
    question_text,
    referring_expression,
)
from unime_hf.data.shapes.world import _Row, _World

logger = logging.getLogger(__name__)


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
