"""The files of a generated world: JSON-lines helpers, removing an earlier world, and the readers."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


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


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


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
