"""Data: canonical dataset layouts (`schema`), readers of public formats (`formats`) and the shapes world (`shapes`).

Names are imported lazily, so `import unime_hf.data` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "DataFormatError": "unime_hf.data.schema",
    "item_id": "unime_hf.data.schema",
    "merge_corpora": "unime_hf.data.schema",
    "validate_training_dataset": "unime_hf.data.schema",
    "validate_eval": "unime_hf.data.schema",
    "read_mmeb_train": "unime_hf.data.formats",
    "read_mmeb_eval": "unime_hf.data.formats",
    "read_unime_v2_mined": "unime_hf.data.formats",
    "write_unime_v2_mined": "unime_hf.data.formats",
    "read_corpus": "unime_hf.data.formats",
    "read_compositional": "unime_hf.data.formats",
    "read_image_caption_folder": "unime_hf.data.formats",
    "ShapesWorldConfig": "unime_hf.data.shapes",
    "generate_shapes_world": "unime_hf.data.shapes",
    "load_shapes_train": "unime_hf.data.shapes",
    "load_shapes_eval": "unime_hf.data.shapes",
    "load_shapes_compositional": "unime_hf.data.shapes",
    "load_shapes_gallery": "unime_hf.data.shapes",
    "ShapesTruth": "unime_hf.data.shapes",
    "satisfies": "unime_hf.data.shapes",
}

if TYPE_CHECKING:
    from unime_hf.data.formats import (
        read_compositional,
        read_corpus,
        read_image_caption_folder,
        read_mmeb_eval,
        read_mmeb_train,
        read_unime_v2_mined,
        write_unime_v2_mined,
    )
    from unime_hf.data.schema import (
        DataFormatError,
        item_id,
        merge_corpora,
        validate_eval,
        validate_training_dataset,
    )
    from unime_hf.data.shapes import (
        ShapesTruth,
        ShapesWorldConfig,
        generate_shapes_world,
        load_shapes_compositional,
        load_shapes_eval,
        load_shapes_gallery,
        load_shapes_train,
        satisfies,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DataFormatError",
    "item_id",
    "merge_corpora",
    "validate_training_dataset",
    "validate_eval",
    "read_mmeb_train",
    "read_mmeb_eval",
    "read_unime_v2_mined",
    "write_unime_v2_mined",
    "read_corpus",
    "read_compositional",
    "read_image_caption_folder",
    "ShapesWorldConfig",
    "generate_shapes_world",
    "load_shapes_train",
    "load_shapes_eval",
    "load_shapes_compositional",
    "load_shapes_gallery",
    "ShapesTruth",
    "satisfies",
]
