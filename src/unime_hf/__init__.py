"""unime-hf: universal multimodal embeddings (UniME-V2, Embed-RL) for the Hugging Face ecosystem.

The public API is imported lazily, so `import unime_hf` does no heavy work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "UniMEConfig": "unime_hf.models.configuration_unime",
    "UniMEEmbeddingModel": "unime_hf.models.modeling_unime",
    "load_processor": "unime_hf.models.processing_unime",
    "build_tiny_backbone": "unime_hf.testing.tiny",
}

if TYPE_CHECKING:
    from unime_hf.models.configuration_unime import UniMEConfig as UniMEConfig
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel as UniMEEmbeddingModel
    from unime_hf.models.processing_unime import load_processor as load_processor
    from unime_hf.testing.tiny import build_tiny_backbone as build_tiny_backbone


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
