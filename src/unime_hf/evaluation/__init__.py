"""Evaluation of embedding models: MMEB (`mmeb`), image-text retrieval (`retrieval`), compositional (`compositional`),
the results layout (`results`) and pictures (`plots`).

Every evaluation is model-agnostic: an embedder is a [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or
anything with `encode(items, batch_size=...)` returning a `[n, dim]` tensor or array. Names are imported lazily, so
`import unime_hf.evaluation` stays cheap (no torch, no matplotlib).

Example:

```python
>>> from unime_hf.evaluation import evaluate_mmeb, load_mmeb_datasets
>>> result = evaluate_mmeb(load_mmeb_datasets("runs/shapes/eval", "runs/shapes"), model)
>>> result.metrics["overall"]
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "MMEB_DATASETS": "unime_hf.evaluation.mmeb",
    "MMEBResult": "unime_hf.evaluation.mmeb",
    "Reranker": "unime_hf.evaluation.mmeb",
    "aggregate_mmeb": "unime_hf.evaluation.mmeb",
    "evaluate_mmeb": "unime_hf.evaluation.mmeb",
    "load_mmeb_datasets": "unime_hf.evaluation.mmeb",
    "mmeb_dataset_info": "unime_hf.evaluation.mmeb",
    "precision_at_1": "unime_hf.evaluation.mmeb",
    "rank_candidates": "unime_hf.evaluation.mmeb",
    "ImageTextGallery": "unime_hf.evaluation.retrieval",
    "RetrievalResult": "unime_hf.evaluation.retrieval",
    "evaluate_retrieval": "unime_hf.evaluation.retrieval",
    "first_relevant_ranks": "unime_hf.evaluation.retrieval",
    "load_gallery": "unime_hf.evaluation.retrieval",
    "recall_at_k": "unime_hf.evaluation.retrieval",
    "CompositionalResult": "unime_hf.evaluation.compositional",
    "compositional_accuracy": "unime_hf.evaluation.compositional",
    "evaluate_compositional": "unime_hf.evaluation.compositional",
    "modality_gap": "unime_hf.evaluation.plots",
    "plot_judge_scores": "unime_hf.evaluation.plots",
    "plot_modality_gap": "unime_hf.evaluation.plots",
    "format_summary": "unime_hf.evaluation.results",
    "read_results": "unime_hf.evaluation.results",
    "write_results": "unime_hf.evaluation.results",
}

if TYPE_CHECKING:
    from unime_hf.evaluation.compositional import (
        CompositionalResult,
        compositional_accuracy,
        evaluate_compositional,
    )
    from unime_hf.evaluation.mmeb import (
        MMEB_DATASETS,
        MMEBResult,
        Reranker,
        aggregate_mmeb,
        evaluate_mmeb,
        load_mmeb_datasets,
        mmeb_dataset_info,
        precision_at_1,
        rank_candidates,
    )
    from unime_hf.evaluation.plots import modality_gap, plot_judge_scores, plot_modality_gap
    from unime_hf.evaluation.results import format_summary, read_results, write_results
    from unime_hf.evaluation.retrieval import (
        ImageTextGallery,
        RetrievalResult,
        evaluate_retrieval,
        first_relevant_ranks,
        load_gallery,
        recall_at_k,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "MMEB_DATASETS",
    "MMEBResult",
    "Reranker",
    "aggregate_mmeb",
    "evaluate_mmeb",
    "load_mmeb_datasets",
    "mmeb_dataset_info",
    "precision_at_1",
    "rank_candidates",
    "ImageTextGallery",
    "RetrievalResult",
    "evaluate_retrieval",
    "first_relevant_ranks",
    "load_gallery",
    "recall_at_k",
    "CompositionalResult",
    "compositional_accuracy",
    "evaluate_compositional",
    "modality_gap",
    "plot_judge_scores",
    "plot_modality_gap",
    "format_summary",
    "read_results",
    "write_results",
]
