"""Compositional evaluation (SugarCrepe style): does the image prefer its true caption over an altered one?

A row is an image, its true caption, a negative caption differing in one composition (an object, attribute or
relation replaced, two swapped, one added) and the subset naming the alteration (`replace-obj`, `replace-att`,
`replace-rel`, `swap-obj`, `swap-att`, `add-obj`, `add-att`). A row is right when
`sim(image, caption) > sim(image, negative_caption)`, strictly (a tie is wrong).

Reported: accuracy per subset (share of its rows right), per group (the part of the subset name before `-`:
`replace`, `swap`, `add`; the mean of its subsets' accuracies, as papers report SugarCrepe groups) and overall (the
mean over subsets).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unime_hf.evaluation.retrieval import embed_unique

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("image", "caption", "negative_caption", "subset")
SUGARCREPE_SUBSETS: tuple[str, ...] = (
    "replace-obj",
    "replace-att",
    "replace-rel",
    "swap-obj",
    "swap-att",
    "add-obj",
    "add-att",
)
GROUP_ORDER: tuple[str, ...] = ("replace", "swap", "add")


def subset_group(subset: str) -> str:
    """The group of a subset: the part before the first `-` (`"replace-obj"` -> `"replace"`)."""
    return subset.split("-", 1)[0]


def _ordered(names: Sequence[str], reference: Sequence[str]) -> list[str]:
    return [n for n in reference if n in names] + sorted(n for n in names if n not in reference)


def compositional_accuracy(
    positive_scores: Sequence[float], negative_scores: Sequence[float], subsets: Sequence[str]
) -> dict[str, Any]:
    """SugarCrepe accuracies from per-row similarities.

    Args:
        positive_scores (`Sequence[float]`):
            `sim(image, caption)` of every row.
        negative_scores (`Sequence[float]`):
            `sim(image, negative_caption)` of every row.
        subsets (`Sequence[str]`):
            The subset of every row.

    Returns:
        `dict`: `{"subsets": {subset: accuracy}, "groups": {group: mean of its subsets}, "overall": mean of subsets,
        "num_rows": {subset: rows, ..., "overall": rows}}`, subsets and groups in SugarCrepe order.

    Example:

    ```python
    >>> scores = compositional_accuracy([0.9, 0.2, 0.7], [0.1, 0.3, 0.7], ["replace-obj", "replace-obj", "swap-att"])
    >>> scores["subsets"], scores["groups"], scores["overall"]
    ({'replace-obj': 0.5, 'swap-att': 0.0}, {'replace': 0.5, 'swap': 0.0}, 0.25)
    ```
    """
    if not (len(positive_scores) == len(negative_scores) == len(subsets)):
        raise ValueError(
            f"got {len(positive_scores)} positive scores, {len(negative_scores)} negative scores and "
            f"{len(subsets)} subsets; one of each per row"
        )
    if not subsets:
        raise ValueError("no rows")
    hits: dict[str, list[bool]] = {}
    for positive, negative, subset in zip(positive_scores, negative_scores, subsets):
        hits.setdefault(subset, []).append(float(positive) > float(negative))
    names = _ordered(list(hits), SUGARCREPE_SUBSETS)
    per_subset = {name: sum(hits[name]) / len(hits[name]) for name in names}
    by_group: dict[str, list[float]] = {}
    for name in names:
        by_group.setdefault(subset_group(name), []).append(per_subset[name])
    groups = {g: sum(by_group[g]) / len(by_group[g]) for g in _ordered(list(by_group), GROUP_ORDER)}
    return {
        "subsets": per_subset,
        "groups": groups,
        "overall": sum(per_subset.values()) / len(per_subset),
        "num_rows": {**{name: len(hits[name]) for name in names}, "overall": len(subsets)},
    }


@dataclass
class CompositionalResult:
    """Scores and per-row predictions of a compositional run.

    Attributes:
        metrics (`dict`): [`compositional_accuracy`]'s dict plus `"encoded_items"`.
        predictions (`list[dict]`): per row `row, subset, positive_score, negative_score, correct`.
    """

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(repr=False)


def evaluate_compositional(
    dataset: datasets.Dataset | Sequence[Mapping[str, Any]],
    embedder: Any,
    *,
    batch_size: int = 16,
    image_prompt: str | None = None,
    text_prompt: str | None = None,
    max_rows: int | None = None,
    show_progress: bool = False,
    encode_kwargs: Mapping[str, Any] | None = None,
) -> CompositionalResult:
    """SugarCrepe-style accuracy of an embedder, per subset, group and overall.

    Every distinct image and caption is embedded once.

    Args:
        dataset (`datasets.Dataset` or rows):
            Columns `image` (a path), `caption`, `negative_caption`, `subset` (as
            [`~unime_hf.data.read_compositional`] returns them).
        embedder:
            A [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or any object with
            `encode(items, batch_size=...)` returning `[n, dim]`.
        batch_size (`int`, *optional*, defaults to 16):
            Items per forward pass.
        image_prompt (`str`, *optional*):
            Text embedded with every image, e.g. `"<|image_1|>\\nRepresent the given image."`.
        text_prompt (`str`, *optional*):
            Template for every caption with a `{text}` field.
        max_rows (`int`, *optional*):
            Use only the first `max_rows` rows (smoke runs).
        show_progress (`bool`, *optional*, defaults to `False`):
            Progress bars while encoding.
        encode_kwargs (`dict`, *optional*):
            Extra keyword arguments for every `embedder.encode` call.

    Returns:
        [`CompositionalResult`].

    Example:

    ```python
    >>> from unime_hf.data import read_compositional
    >>> result = evaluate_compositional(read_compositional("sugarcrepe/all.jsonl", "coco/val2017"), model)
    >>> result.metrics["groups"]
    ```
    """
    rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise ValueError("the compositional dataset has no rows")
    for index, row in enumerate(rows):
        missing = [c for c in COLUMNS if not row.get(c)]
        if missing:
            raise ValueError(f"row {index}: missing or empty {missing}; expected columns {list(COLUMNS)}")
    options = {"batch_size": batch_size, "show_progress": show_progress, "encode_kwargs": encode_kwargs}
    image_embeddings, image_index, n_images = embed_unique(
        embedder, [(image_prompt or "", row["image"]) for row in rows], **options
    )
    texts = [row[c] for row in rows for c in ("caption", "negative_caption")]
    text_items = [(text_prompt.replace("{text}", t) if text_prompt else t, "") for t in texts]
    text_embeddings, text_index, n_texts = embed_unique(embedder, text_items, **options)
    images = image_embeddings[image_index]
    positives = (images * text_embeddings[text_index[0::2]]).sum(dim=1).tolist()
    negatives = (images * text_embeddings[text_index[1::2]]).sum(dim=1).tolist()
    subsets = [row["subset"] for row in rows]
    metrics = compositional_accuracy(positives, negatives, subsets)
    metrics["encoded_items"] = n_images + n_texts
    predictions = [
        {"row": i, "subset": s, "positive_score": p, "negative_score": n, "correct": p > n}
        for i, (s, p, n) in enumerate(zip(subsets, positives, negatives))
    ]
    logger.info("compositional: overall %.2f over %d rows", 100 * metrics["overall"], len(rows))
    return CompositionalResult(metrics, predictions)


def load_compositional(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, *, check_images: bool = True
) -> datasets.Dataset:
    """Read a compositional set: a file in the canonical layout (`image, caption, negative_caption, subset`, read with
    [`~unime_hf.data.read_compositional`]), or the official SugarCrepe folder: `<subset>.json` files
    (`replace_obj.json`, ..., `add_att.json`), each `{id: {"filename", "caption", "negative_caption"}}`, with the
    images (COCO val2017) under `image_root`.

    Example:

    ```python
    >>> data = load_compositional("sugarcrepe/data", "coco/val2017")
    >>> sorted(set(data["subset"]))[:2]
    ['add-att', 'add-obj']
    ```
    """
    from unime_hf.data.formats import read_compositional

    path = Path(path)
    if not path.is_dir():
        return read_compositional(path, image_root, check_images=check_images)
    rows = []
    for subset in SUGARCREPE_SUBSETS:
        file = path / f"{subset.replace('-', '_')}.json"
        if not file.is_file():
            continue
        for entry in json.loads(file.read_text(encoding="utf-8")).values():
            rows.append(
                {
                    "image": entry["filename"],
                    "caption": entry["caption"],
                    "negative_caption": entry["negative_caption"],
                    "subset": subset,
                }
            )
    if not rows:
        names = ", ".join(s.replace("-", "_") + ".json" for s in SUGARCREPE_SUBSETS)
        raise FileNotFoundError(f"{path}: no SugarCrepe files ({names})")
    return read_compositional(rows, image_root if image_root is not None else path, check_images=check_images)
