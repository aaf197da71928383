"""[`generate_shapes_world`]: builds a world (training pairs, eval sets, compositional set, truth) and writes it."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from unime_hf.data.shapes.compositional import _compositional
from unime_hf.data.shapes.config import (
    CELL_NAMES,
    COLOURS,
    EVAL_NAMES,
    META_TASKS,
    RELATIONS,
    TASKS,
    ShapesWorldConfig,
)
from unime_hf.data.shapes.eval_sets import _eval_set
from unime_hf.data.shapes.layout import _remove_previous_world, _write_jsonl
from unime_hf.data.shapes.pairs import _train_scenes, _training_pairs
from unime_hf.data.shapes.sampling import exact_spec
from unime_hf.data.shapes.statistics import _statistics
from unime_hf.data.shapes.world import _Row, _World

logger = logging.getLogger(__name__)


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
    """Generates a shapes world into `out_dir` (layout: see `unime_hf.data.shapes`) and returns its statistics.

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
