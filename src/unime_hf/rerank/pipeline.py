# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""[`RetrieveRerankPipeline`]: embed, keep the top `k` of a corpus by cosine, rerank them (UniME-V2 inference)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def _item(value: Any) -> dict[str, Any]:
    """An embedder / reranker item `{"text": str | None, "image": path | PIL | None}` from a dict or a string."""
    if isinstance(value, Mapping):
        return {"text": value.get("text") or None, "image": value.get("image") or None}
    from PIL import Image

    from unime_hf.models.processing_unime import looks_like_image_path

    if isinstance(value, Image.Image) or looks_like_image_path(value):
        return {"text": None, "image": value}
    if isinstance(value, str):
        return {"text": value, "image": None}
    raise TypeError(f"An item must be a dict, a string, a PIL image or an image path, got {type(value).__name__}.")


class RetrieveRerankPipeline:
    """Retrieve-then-rerank over a fixed corpus: the top `top_k` items by embedding cosine, reordered by a reranker.

    The corpus is embedded once, on the first call (or by [`embed_corpus`]), and cached.

    Args:
        embedder:
            A [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or any object with
            `encode(items, batch_size=...)` returning `[n, dim]` (items are `{"text", "image"}` dicts).
        reranker:
            A [`UniMEReranker`] or any object with `rank(query, candidates) -> list[int]`; with
            `rank_many(queries, candidate_lists, mode=...)` and `score_many(...)` queries are batched and pointwise
            scores are reported. `None` returns the retrieval order.
        corpus (`datasets.Dataset` or `list`):
            The candidates: a corpus `Dataset` (`id, text, image`, `""` = absent) or a list of items (dicts with
            optional `id`, strings, image paths).
        top_k (`int`, *optional*, defaults to 10):
            Candidates retrieved and reranked per query (the paper reranks the top 10).
        batch_size (`int`, *optional*, defaults to 16):
            Items per `encode` call batch.
        mode (`str`, *optional*, defaults to `"listwise"`):
            Reranking mode passed to the reranker (`"listwise"` or `"pointwise"`).
        interpolation (`float`, *optional*):
            With `mode="pointwise"`: order the top `k` by `z(embedding score) + interpolation * z(log-odds of
            P(Yes))` ([`~unime_hf.rerank.interpolate_scores`]) instead of by `P(Yes)` alone, keeping what the
            embedder knows. `None` (the default, UniME-V2): the reranker's order alone.
        query_instruction, candidate_instruction (`str`, *optional*):
            Instructions for the embedder (passed as `instruction=` to `encode`).
        encode_kwargs (`dict`, *optional*):
            More keyword arguments for every `encode` call (e.g. `{"processor": processor}`).
        show_progress (`bool`, *optional*, defaults to `False`):
            Progress bars while embedding.

    Example:

    ```python
    >>> from transformers import AutoModel
    >>> from unime_hf.rerank import RetrieveRerankPipeline, UniMEReranker
    >>> embedder = AutoModel.from_pretrained("runs/embedding", trust_remote_code=True)
    >>> pipeline = RetrieveRerankPipeline(embedder, UniMEReranker.from_pretrained("runs/reranker"), corpus, top_k=10)
    >>> results = pipeline([{"text": "a red circle above a blue square", "image": None}])
    >>> results[0][0]["id"], results[0][0]["embedding_score"], results[0][0]["retrieval_rank"]
    ('c3f1...', 0.83, 2)
    ```
    """

    def __init__(
        self,
        embedder: Any,
        reranker: Any,
        corpus: Any,
        top_k: int = 10,
        batch_size: int = 16,
        mode: str = "listwise",
        interpolation: float | None = None,
        query_instruction: str | None = None,
        candidate_instruction: str | None = None,
        encode_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"`top_k` must be >= 1, got {top_k}.")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        if reranker is not None and not callable(getattr(reranker, "rank", None)):
            raise TypeError(f"{type(reranker).__name__} has no rank(query, candidates) method.")
        if interpolation is not None:
            from unime_hf.rerank.interpolation import check_interpolation_weight

            check_interpolation_weight(interpolation)
            if mode != "pointwise":
                raise ValueError(
                    f"`interpolation` combines pointwise P(Yes) scores; it needs mode='pointwise', not {mode!r}."
                )
            if reranker is None or not callable(getattr(reranker, "score_many", None)):
                raise TypeError(
                    "`interpolation` needs a reranker with score_many(queries, candidate_lists); got "
                    f"{type(reranker).__name__}."
                )
        from unime_hf.mining.retrieve import as_embedder

        self.embedder = as_embedder(embedder)
        self.reranker = reranker
        self.ids, self.items = self._read_corpus(corpus)
        if not self.items:
            raise ValueError("The corpus is empty.")
        self.top_k = min(top_k, len(self.items))
        self.batch_size = batch_size
        self.mode = mode
        self.interpolation = interpolation
        self.query_instruction = query_instruction
        self.candidate_instruction = candidate_instruction
        self.encode_kwargs = dict(encode_kwargs or {})
        self.show_progress = show_progress
        self._corpus_embeddings: torch.Tensor | None = None

    @staticmethod
    def _read_corpus(corpus: Any) -> tuple[list[str], list[dict[str, Any]]]:
        if hasattr(corpus, "column_names"):
            missing = {"text", "image"} - set(corpus.column_names)
            if missing:
                raise ValueError(f"The corpus dataset needs 'text' and 'image' columns; missing {sorted(missing)}.")
            ids = corpus["id"] if "id" in corpus.column_names else [str(i) for i in range(len(corpus))]
            items = [_item({"text": t, "image": i}) for t, i in zip(corpus["text"], corpus["image"])]
            return [str(i) for i in ids], items
        items, ids = [], []
        for index, value in enumerate(corpus):
            ids.append(str(value["id"]) if isinstance(value, Mapping) and "id" in value else str(index))
            items.append(_item(value))
        return ids, items

    def _encode(self, items: list[dict[str, Any]], instruction: str | None) -> torch.Tensor:
        import numpy as np
        import torch
        import torch.nn.functional as F

        kwargs = dict(self.encode_kwargs)
        if instruction:
            kwargs["instruction"] = instruction
        if self.show_progress:
            kwargs.setdefault("show_progress_bar", True)
        output = self.embedder.encode(items, batch_size=self.batch_size, **kwargs)
        if not isinstance(output, torch.Tensor):
            output = torch.from_numpy(np.asarray(output))
        output = output.detach().to("cpu", torch.float32)
        if output.ndim != 2 or output.shape[0] != len(items):
            raise ValueError(f"encode returned shape {tuple(output.shape)} for {len(items)} items; expected (n, dim).")
        return F.normalize(output, dim=-1)

    def embed_corpus(self) -> torch.Tensor:
        """The L2-normalised corpus embeddings `[len(corpus), dim]`, computed once and cached."""
        if self._corpus_embeddings is None:
            logger.info("Embedding the corpus (%d items)", len(self.items))
            self._corpus_embeddings = self._encode(self.items, self.candidate_instruction)
        return self._corpus_embeddings

    def retrieve(self, queries: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scores, indices)` of the top `top_k` corpus items per query by cosine, best first, each `[n, top_k]`."""
        import torch

        corpus = self.embed_corpus()
        query_embeddings = self._encode([_item(query) for query in queries], self.query_instruction)
        scores, indices = [], []
        for start in range(0, len(query_embeddings), 1024):
            similarity = query_embeddings[start : start + 1024] @ corpus.T
            top = torch.topk(similarity, self.top_k, dim=-1)
            scores.append(top.values)
            indices.append(top.indices)
        return torch.cat(scores), torch.cat(indices)

    def __call__(self, queries: Any) -> list[list[dict[str, Any]]] | list[dict[str, Any]]:
        """Retrieve and rerank.

        Args:
            queries: One item or a list of items (`{"text", "image"}` dicts, strings, image paths).

        Returns:
            Per query, its `top_k` results in the final order, each `{"id", "text", "image", "embedding_score",
            "retrieval_rank", "rerank_score", "rank"}` (`rerank_score`: the pointwise `P(Yes)` when the reranker
            computed it, else `None`; ranks are 0-based; with `interpolation` the order is by the interpolated
            score). A single query gives a single list.
        """
        single = isinstance(queries, (str, Mapping)) or not isinstance(queries, Sequence)
        query_list = [queries] if single else list(queries)
        if not query_list:
            return []
        scores, indices = self.retrieve(query_list)
        candidate_indices = indices.tolist()
        candidate_lists = [[self.items[j] for j in row] for row in candidate_indices]
        items = [_item(query) for query in query_list]
        orders, rerank_scores = self._rerank(items, candidate_lists, scores.tolist())
        results = []
        for q, order in enumerate(orders):
            rows = []
            for rank, position in enumerate(order):
                j = candidate_indices[q][position]
                rows.append(
                    {
                        "id": self.ids[j],
                        "text": self.items[j]["text"],
                        "image": self.items[j]["image"],
                        "embedding_score": float(scores[q, position]),
                        "retrieval_rank": position,
                        "rerank_score": rerank_scores[q][position] if rerank_scores is not None else None,
                        "rank": rank,
                    }
                )
            results.append(rows)
        return results[0] if single else results

    def _rerank(
        self,
        queries: list[dict[str, Any]],
        candidate_lists: list[list[dict[str, Any]]],
        embedding_scores: list[list[float]],
    ) -> tuple[list[list[int]], list[list[float]] | None]:
        size = len(candidate_lists[0])
        if self.reranker is None:
            return [list(range(size)) for _ in queries], None
        if self.interpolation is not None:
            from unime_hf.rerank.interpolation import interpolated_order

            scores = self.reranker.score_many(queries, candidate_lists)
            orders = [
                interpolated_order(row_embedding, row, self.interpolation)
                for row_embedding, row in zip(embedding_scores, scores, strict=True)
            ]
            return orders, scores
        if self.mode == "pointwise" and hasattr(self.reranker, "score_many"):
            from unime_hf.rerank.reranker import pointwise_order

            scores = self.reranker.score_many(queries, candidate_lists)
            return [pointwise_order(row) for row in scores], scores
        if hasattr(self.reranker, "rank_many"):
            return self.reranker.rank_many(queries, candidate_lists, mode=self.mode), None
        return [self.reranker.rank(query, candidates) for query, candidates in zip(queries, candidate_lists)], None
