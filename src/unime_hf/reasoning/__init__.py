# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Embed-RL: reasoning-driven embeddings (METHOD.md §6), imported lazily so `import unime_hf.reasoning` is cheap.

- [`parse_tcot`], [`format_tcot`], [`build_tcot_messages`] (`tcot.py`): the traceability chain of thought (T-CoT).
- [`crop_evidence`], [`fold_crops`] (`crops.py`): the image regions of a T-CoT's evidence boxes.
- [`format_reward`], [`outcome_rewards`], [`process_rewards`], [`EmbedderGuidedRewards`] (`rewards.py`).
- [`EmbedRLConfig`], [`EmbedRLTrainer`], [`build_reasoner_dataset`] (`grpo.py`): EG-RL, GRPO on the Reasoner with a
  frozen Embedder; `unime-hf train-reasoner --config ...` runs it.

The Embedder embeds `[input, T-CoT]`: an item `{"text", "image", "cot"}` given to `UniMEEmbeddingModel.encode` has
its T-CoT appended after its text, and the last token (the end of the T-CoT) is pooled. To train the Embedder on
(input + T-CoT) pairs with `EmbeddingDistillTrainer`, fold the T-CoT into the text column with [`attach_cot`].

Evidence crops: the UniME processor takes one image per item, so crops are folded into the input image
([`fold_crops`], `EmbedRLConfig.embed_crops`). Crops as separate images would need `processing_unime` to accept
several images per item (a list under `"image"`, `<|image_k|>` markers, per-item image counts in `prepare_items`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "ParsedTCoT": "unime_hf.reasoning.tcot",
    "EvidenceBox": "unime_hf.reasoning.tcot",
    "parse_tcot": "unime_hf.reasoning.tcot",
    "format_tcot": "unime_hf.reasoning.tcot",
    "build_tcot_prompt": "unime_hf.reasoning.tcot",
    "build_tcot_messages": "unime_hf.reasoning.tcot",
    "tcot_embedding_text": "unime_hf.reasoning.tcot",
    "attach_cot": "unime_hf.reasoning.tcot",
    "append_cot": "unime_hf.reasoning.tcot",
    "crop_evidence": "unime_hf.reasoning.crops",
    "fold_crops": "unime_hf.reasoning.crops",
    "format_reward": "unime_hf.reasoning.rewards",
    "outcome_terms": "unime_hf.reasoning.rewards",
    "outcome_rewards": "unime_hf.reasoning.rewards",
    "process_rewards": "unime_hf.reasoning.rewards",
    "hardest_negatives": "unime_hf.reasoning.rewards",
    "EmbedderGuidedRewards": "unime_hf.reasoning.rewards",
    "EmbedderDiscriminator": "unime_hf.reasoning.rewards",
    "RerankerDiscriminator": "unime_hf.reasoning.rewards",
    "RewardColumns": "unime_hf.reasoning.rewards",
    "EmbedRLConfig": "unime_hf.reasoning.grpo",
    "EmbedRLTrainer": "unime_hf.reasoning.grpo",
    "build_reasoner_dataset": "unime_hf.reasoning.grpo",
}

if TYPE_CHECKING:
    from unime_hf.reasoning.crops import crop_evidence as crop_evidence
    from unime_hf.reasoning.crops import fold_crops as fold_crops
    from unime_hf.reasoning.grpo import EmbedRLConfig as EmbedRLConfig
    from unime_hf.reasoning.grpo import EmbedRLTrainer as EmbedRLTrainer
    from unime_hf.reasoning.grpo import build_reasoner_dataset as build_reasoner_dataset
    from unime_hf.reasoning.rewards import EmbedderDiscriminator as EmbedderDiscriminator
    from unime_hf.reasoning.rewards import EmbedderGuidedRewards as EmbedderGuidedRewards
    from unime_hf.reasoning.rewards import RerankerDiscriminator as RerankerDiscriminator
    from unime_hf.reasoning.rewards import RewardColumns as RewardColumns
    from unime_hf.reasoning.rewards import format_reward as format_reward
    from unime_hf.reasoning.rewards import hardest_negatives as hardest_negatives
    from unime_hf.reasoning.rewards import outcome_rewards as outcome_rewards
    from unime_hf.reasoning.rewards import outcome_terms as outcome_terms
    from unime_hf.reasoning.rewards import process_rewards as process_rewards
    from unime_hf.reasoning.tcot import EvidenceBox as EvidenceBox
    from unime_hf.reasoning.tcot import ParsedTCoT as ParsedTCoT
    from unime_hf.reasoning.tcot import append_cot as append_cot
    from unime_hf.reasoning.tcot import attach_cot as attach_cot
    from unime_hf.reasoning.tcot import build_tcot_messages as build_tcot_messages
    from unime_hf.reasoning.tcot import build_tcot_prompt as build_tcot_prompt
    from unime_hf.reasoning.tcot import format_tcot as format_tcot
    from unime_hf.reasoning.tcot import parse_tcot as parse_tcot
    from unime_hf.reasoning.tcot import tcot_embedding_text as tcot_embedding_text


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.reasoning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
