"""The world's truth: whether any (query, candidate) pair of a world is a match ([`world_truth`], [`ShapesTruth`])."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unime_hf.data.shapes.layout import _read_jsonl
from unime_hf.data.shapes.scene import ObjectSpec, QuerySpec, Question, Scene, answer, class_label, resolve, satisfies


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
