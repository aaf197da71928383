"""The statistics of a generated world stored in ``world.json``: sizes, false and hard negatives per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unime_hf.data.shapes.config import TASKS
from unime_hf.data.shapes.sampling import one_off_variants
from unime_hf.data.shapes.scene import ObjectSpec, QuerySpec, Scene, satisfies
from unime_hf.data.shapes.world import _Row, _World


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
