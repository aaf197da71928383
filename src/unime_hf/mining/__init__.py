"""MLLM-as-a-Judge hard-negative mining (UniME-V2): retrieve -> judge -> sample, each a `Dataset` in and out.

Names are imported lazily, so `import unime_hf.mining` does no heavy work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "Embedder": "unime_hf.mining.retrieve",
    "ExactSearcher": "unime_hf.mining.retrieve",
    "SentenceTransformerEmbedder": "unime_hf.mining.retrieve",
    "as_embedder": "unime_hf.mining.retrieve",
    "retrieve_candidates": "unime_hf.mining.retrieve",
    "search_top_k": "unime_hf.mining.retrieve",
    "MLLMJudge": "unime_hf.mining.judge",
    "judge_candidates": "unime_hf.mining.judge",
    "SamplingStats": "unime_hf.mining.sample",
    "sample_hard_negatives": "unime_hf.mining.sample",
    "select_hard_negatives": "unime_hf.mining.sample",
    "ShardedRunner": "unime_hf.mining.shards",
}

if TYPE_CHECKING:
    from unime_hf.mining.judge import MLLMJudge, judge_candidates
    from unime_hf.mining.retrieve import (
        Embedder,
        ExactSearcher,
        SentenceTransformerEmbedder,
        as_embedder,
        retrieve_candidates,
        search_top_k,
    )
    from unime_hf.mining.sample import SamplingStats, sample_hard_negatives, select_hard_negatives
    from unime_hf.mining.shards import ShardedRunner


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.mining' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Embedder",
    "ExactSearcher",
    "MLLMJudge",
    "SamplingStats",
    "SentenceTransformerEmbedder",
    "ShardedRunner",
    "as_embedder",
    "judge_candidates",
    "retrieve_candidates",
    "sample_hard_negatives",
    "search_top_k",
    "select_hard_negatives",
]
