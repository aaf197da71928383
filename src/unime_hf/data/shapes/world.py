"""The world being built: [`_World`] registers images (rendered at once) and texts (with their meaning)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unime_hf.data.shapes.config import CELL_NAMES, CROP_CANDIDATE, IMAGE_CANDIDATE, NUMBER_WORDS, ShapesWorldConfig
from unime_hf.data.shapes.render import _save_png, render_crop, render_scene
from unime_hf.data.shapes.sampling import _object_count, _Vocab, sample_scene
from unime_hf.data.shapes.scene import QuerySpec, Scene, ShapeObject, caption_text, describe

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
