"""Trainers and their configs, collators and helpers; imported lazily so `import unime_hf.trainer` is cheap.

- [`EmbeddingDistillConfig`] / [`EmbeddingDistillTrainer`]: UniME-V2 embedding training (judge-score distillation,
  InfoNCE and hard-negative baselines, GradCache, LoRA).
- [`EmbeddingCollator`]: pairs or mined rows -> query batch + deduplicated candidate batch.
- [`grad_cache_step`]: one GradCache forward/backward.
- [`RerankerSFTConfig`] / [`RerankerSFTTrainer`]: the pairwise + listwise reranker (TRL SFT).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "EmbeddingDistillConfig": "unime_hf.trainer.embedding_config",
    "EmbeddingDistillTrainer": "unime_hf.trainer.embedding_trainer",
    "load_embedding_model": "unime_hf.trainer.embedding_trainer",
    "EmbeddingCollator": "unime_hf.trainer.collator",
    "grad_cache_step": "unime_hf.trainer.grad_cache",
    "apply_lora": "unime_hf.trainer.lora",
    "build_lora_config": "unime_hf.trainer.lora",
    "merged_state_dict": "unime_hf.trainer.lora",
    "RerankerSFTConfig": "unime_hf.trainer.reranker_config",
    "RerankerSFTTrainer": "unime_hf.trainer.reranker_trainer",
    "RerankerCollator": "unime_hf.trainer.reranker_trainer",
}

if TYPE_CHECKING:
    from unime_hf.trainer.collator import EmbeddingCollator as EmbeddingCollator
    from unime_hf.trainer.embedding_config import EmbeddingDistillConfig as EmbeddingDistillConfig
    from unime_hf.trainer.embedding_trainer import EmbeddingDistillTrainer as EmbeddingDistillTrainer
    from unime_hf.trainer.embedding_trainer import load_embedding_model as load_embedding_model
    from unime_hf.trainer.grad_cache import grad_cache_step as grad_cache_step
    from unime_hf.trainer.lora import apply_lora as apply_lora
    from unime_hf.trainer.lora import build_lora_config as build_lora_config
    from unime_hf.trainer.lora import merged_state_dict as merged_state_dict
    from unime_hf.trainer.reranker_config import RerankerSFTConfig as RerankerSFTConfig
    from unime_hf.trainer.reranker_trainer import RerankerCollator as RerankerCollator
    from unime_hf.trainer.reranker_trainer import RerankerSFTTrainer as RerankerSFTTrainer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.trainer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
