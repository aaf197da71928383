"""Reranking at inference: [`UniMEReranker`] (pointwise `P(Yes)` and listwise answers), [`RetrieveRerankPipeline`]
(embed, keep the top k, rerank) and [`interpolate_scores`] (reranker and embedding scores combined). Names are
imported lazily, so `import unime_hf.rerank` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "UniMEReranker": "unime_hf.rerank.reranker",
    "parse_listwise_answer": "unime_hf.rerank.reranker",
    "pointwise_order": "unime_hf.rerank.reranker",
    "RetrieveRerankPipeline": "unime_hf.rerank.pipeline",
    "interpolate_scores": "unime_hf.rerank.interpolation",
}

if TYPE_CHECKING:
    from unime_hf.rerank.interpolation import interpolate_scores as interpolate_scores
    from unime_hf.rerank.pipeline import RetrieveRerankPipeline as RetrieveRerankPipeline
    from unime_hf.rerank.reranker import UniMEReranker as UniMEReranker
    from unime_hf.rerank.reranker import parse_listwise_answer as parse_listwise_answer
    from unime_hf.rerank.reranker import pointwise_order as pointwise_order


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.rerank' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
