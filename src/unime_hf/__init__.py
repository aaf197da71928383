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
    "EmbeddingDistillConfig": "unime_hf.trainer.embedding_config",
    "EmbeddingDistillTrainer": "unime_hf.trainer.embedding_trainer",
    "RerankerSFTConfig": "unime_hf.trainer.reranker_config",
    "RerankerSFTTrainer": "unime_hf.trainer.reranker_trainer",
    "build_reranker_rows": "unime_hf.trainer.reranker_data",
    "UniMEReranker": "unime_hf.rerank.reranker",
    "RetrieveRerankPipeline": "unime_hf.rerank.pipeline",
    "MLLMJudge": "unime_hf.mining.judge",
    "YesNoScorer": "unime_hf.scoring",
}

if TYPE_CHECKING:
    from unime_hf.mining.judge import MLLMJudge as MLLMJudge
    from unime_hf.models.configuration_unime import UniMEConfig as UniMEConfig
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel as UniMEEmbeddingModel
    from unime_hf.models.processing_unime import load_processor as load_processor
    from unime_hf.rerank.pipeline import RetrieveRerankPipeline as RetrieveRerankPipeline
    from unime_hf.rerank.reranker import UniMEReranker as UniMEReranker
    from unime_hf.scoring import YesNoScorer as YesNoScorer
    from unime_hf.testing.tiny import build_tiny_backbone as build_tiny_backbone
    from unime_hf.trainer.embedding_config import EmbeddingDistillConfig as EmbeddingDistillConfig
    from unime_hf.trainer.embedding_trainer import EmbeddingDistillTrainer as EmbeddingDistillTrainer
    from unime_hf.trainer.reranker_config import RerankerSFTConfig as RerankerSFTConfig
    from unime_hf.trainer.reranker_data import build_reranker_rows as build_reranker_rows
    from unime_hf.trainer.reranker_trainer import RerankerSFTTrainer as RerankerSFTTrainer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
