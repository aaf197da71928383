"""Stage 1 of MLLM-as-a-Judge mining: global retrieval of candidate hard negatives.

Every query of a pairs dataset and every item of a corpus are embedded with an existing embedding model; for each
query the `top_k` most similar corpus items by cosine, its own positive excluded, form its candidate list (METHOD.md
section 2, step 1). Search is exact: faiss `IndexFlatIP` when faiss is installed, else a chunked torch search that
never holds more than one `[query_chunk, corpus_chunk]` block of similarities.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from unime_hf.mining.shards import ShardedRunner, hash_dataset, progress_bar

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

logger = logging.getLogger(__name__)

CANDIDATE_IDS = "candidate_ids"
CANDIDATE_SIMILARITIES = "candidate_similarities"

DEFAULT_QUERY_CHUNK_SIZE = 1024
DEFAULT_CORPUS_CHUNK_SIZE = 16384
RESCORE_MARGIN = 8
_MERGE_EVERY = 16


# ------------------------------------------------------------------------------------------------------- embedders
@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds a list of items `{"text": str | None, "image": str | PIL.Image | None}`.

    [`~unime_hf.UniMEEmbeddingModel`] fits as it is. `encode` receives `batch_size=`, `instruction=` when an
    instruction is given, and any extra `encode_kwargs`, and returns a `[len(items), dim]` tensor or array.
    """

    def encode(self, items: list[dict[str, Any]], batch_size: int = ..., **kwargs: Any) -> Any: ...


class SentenceTransformerEmbedder:
    """Adapts a `sentence_transformers.SentenceTransformer` to the [`Embedder`] protocol.

    Text-only items are passed as strings, image-only items as PIL images (paths are opened), and text+image items
    as `{"text": ..., "image": ...}` dicts (multimodal sentence-transformers models). An instruction becomes the
    sentence-transformers `prompt`.

    Args:
        model (`SentenceTransformer`): The model to wrap.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def name_or_path(self) -> str:
        card = getattr(self.model, "model_card_data", None)
        return getattr(card, "base_model", None) or type(self.model).__name__

    def encode(
        self, items: list[dict[str, Any]], batch_size: int = 32, instruction: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        inputs = [_to_sentence_transformers_input(item) for item in items]
        kwargs.setdefault("show_progress_bar", False)
        return self.model.encode(inputs, batch_size=batch_size, prompt=instruction, convert_to_numpy=True, **kwargs)


def _to_sentence_transformers_input(item: Mapping[str, Any]) -> Any:
    text, image = item.get("text"), item.get("image")
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        with Image.open(image) as opened:
            image = opened.convert("RGB")
    if image is None:
        return text
    if text is None:
        return image
    return {"text": text, "image": image}


def as_embedder(model: Any) -> Embedder:
    """Return `model` itself if it follows [`Embedder`], or a [`SentenceTransformerEmbedder`] around it.

    Example:

    ```python
    >>> from sentence_transformers import SentenceTransformer
    >>> embedder = as_embedder(SentenceTransformer("path/to/model"))
    >>> embedder.encode([{"text": "a red square", "image": None}], batch_size=8).shape
    (1, 384)
    ```
    """
    # sentence_transformers is only imported when the caller already did: an instance can't exist otherwise.
    if "sentence_transformers" in sys.modules:
        from sentence_transformers import SentenceTransformer

        if isinstance(model, SentenceTransformer):
            return SentenceTransformerEmbedder(model)
    if not callable(getattr(model, "encode", None)):
        raise TypeError(
            f"{type(model).__name__} has no encode() method. Pass a UniMEEmbeddingModel, a SentenceTransformer, or "
            "any object with encode(items, batch_size=...) returning a [n, dim] tensor or array."
        )
    return model


def _model_name(model: Any) -> str:
    for candidate in (
        getattr(model, "name_or_path", None),
        getattr(getattr(model, "config", None), "_name_or_path", None),
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return f"{type(model).__module__}.{type(model).__qualname__}"


# ---------------------------------------------------------------------------------------------------------- search
class ExactSearcher:
    """Exact maximum-inner-product search over a fixed corpus, with deterministic ties.

    Results are sorted by similarity (descending), ties broken by corpus index (ascending), and are the same whatever
    the backend or chunk sizes: the backend shortlists the top `k + 8`, and the shortlist is re-scored with a
    computation that depends only on the two vectors (not on BLAS kernels or block shapes) and cut to the top-k
    under the order `(-similarity, index)`. (Only more than 8 items within float32 rounding, about 1e-7, of the
    k-th could make backends differ.) Pass unit vectors for cosine.

    Args:
        corpus (`np.ndarray` or `torch.Tensor`):
            `[n, dim]` corpus embeddings (float32).
        use_faiss (`bool`, *optional*):
            `True` requires faiss, `False` forces the torch search, `None` uses faiss when importable.
        query_chunk_size (`int`, *optional*, defaults to 1024):
            Queries per block of the torch search (and per faiss call).
        corpus_chunk_size (`int`, *optional*, defaults to 16384):
            Corpus rows per block of the torch search; peak extra memory is about
            `query_chunk_size * corpus_chunk_size * 4` bytes, independent of the corpus size.

    Example:

    ```python
    >>> searcher = ExactSearcher(corpus_embeddings)
    >>> similarities, indices = searcher.search(query_embeddings, k=50)
    ```
    """

    def __init__(
        self,
        corpus: np.ndarray | torch.Tensor,
        use_faiss: bool | None = None,
        query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
        corpus_chunk_size: int = DEFAULT_CORPUS_CHUNK_SIZE,
    ) -> None:
        import torch

        if query_chunk_size < 1 or corpus_chunk_size < 1:
            raise ValueError("query_chunk_size and corpus_chunk_size must be >= 1.")
        corpus_tensor = torch.as_tensor(corpus, dtype=torch.float32)
        if corpus_tensor.ndim != 2 or corpus_tensor.shape[0] == 0:
            raise ValueError(f"corpus must be a non-empty [n, dim] matrix, got shape {tuple(corpus_tensor.shape)}.")
        if not bool(torch.isfinite(corpus_tensor.sum())):  # one cheap pass: a NaN or inf anywhere makes the sum so
            raise ValueError("corpus embeddings contain NaN or infinite values.")
        self.corpus = corpus_tensor.contiguous()
        self.query_chunk_size = query_chunk_size
        self.corpus_chunk_size = corpus_chunk_size
        self.index = None
        if use_faiss is None:
            use_faiss = _faiss_available()
        elif use_faiss and not _faiss_available():
            raise ImportError("use_faiss=True but faiss is not installed: `pip install faiss-cpu` (or faiss-gpu).")
        if use_faiss:
            import faiss

            self.index = faiss.IndexFlatIP(self.corpus.shape[1])
            self.index.add(self.corpus.numpy())

    @property
    def backend(self) -> str:
        return "faiss" if self.index is not None else "torch"

    def search(
        self, queries: np.ndarray | torch.Tensor, k: int, progress: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` corpus rows of every query, as `(similarities, indices)`.

        Both are `[q, min(k, n)]` arrays (float32 and int64), best first. `progress`, a tqdm bar, is advanced by
        the number of queries done.
        """
        import torch

        queries_tensor = torch.as_tensor(queries, dtype=torch.float32)
        if queries_tensor.ndim != 2 or queries_tensor.shape[1] != self.corpus.shape[1]:
            raise ValueError(
                f"queries must be a [q, {self.corpus.shape[1]}] matrix, got shape {tuple(queries_tensor.shape)}."
            )
        if not bool(torch.isfinite(queries_tensor.sum())):
            raise ValueError("query embeddings contain NaN or infinite values.")
        k = min(k, self.corpus.shape[0])
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        sims_out = np.empty((queries_tensor.shape[0], k), dtype=np.float32)
        idx_out = np.empty((queries_tensor.shape[0], k), dtype=np.int64)
        # The backends shortlist a few more than k; the shortlist is re-scored canonically so that near-ties (whose
        # float32 rounding differs between BLAS kernels and block shapes) resolve the same way whatever the backend,
        # chunk sizes or number of processes.
        shortlist = min(k + RESCORE_MARGIN, self.corpus.shape[0])
        for start in range(0, queries_tensor.shape[0], self.query_chunk_size):
            block = queries_tensor[start : start + self.query_chunk_size].contiguous()
            if self.index is not None:
                _, idx = self._search_faiss(block, shortlist)
            else:
                _, idx = _torch_top_k(block, self.corpus, shortlist, self.corpus_chunk_size)
            sims, idx = _select_top_k(_rescore(block, self.corpus, idx), k, labels=idx)
            sims_out[start : start + block.shape[0]] = sims.numpy()
            idx_out[start : start + block.shape[0]] = idx.numpy()
            if progress is not None:
                progress.update(block.shape[0])
        return sims_out, idx_out

    def _search_faiss(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        n = self.corpus.shape[0]
        # One extra result shows whether the k-th similarity is tied beyond the window faiss returned; only then is
        # faiss's choice among the tied items unspecified, and those rows are redone exactly.
        fetch = min(k + 1, n)
        sims_np, idx_np = self.index.search(queries.numpy(), fetch)
        sims, idx = torch.from_numpy(sims_np), torch.from_numpy(idx_np).long()
        ambiguous = (sims[:, k] == sims[:, k - 1]).nonzero().squeeze(1) if fetch > k else None
        # Orders ties inside the window by index; rows tied at the boundary are then replaced by an exact search.
        sims, idx = _select_top_k(sims, k, labels=idx)
        if ambiguous is not None and ambiguous.numel():
            sims[ambiguous], idx[ambiguous] = _torch_top_k(queries[ambiguous], self.corpus, k, self.corpus_chunk_size)
        return sims, idx


def search_top_k(
    queries: np.ndarray | torch.Tensor,
    corpus: np.ndarray | torch.Tensor,
    k: int,
    use_faiss: bool | None = None,
    query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
    corpus_chunk_size: int = DEFAULT_CORPUS_CHUNK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`k` inner-product search; see [`ExactSearcher`].

    Example:

    ```python
    >>> similarities, indices = search_top_k(query_embeddings, corpus_embeddings, k=50, use_faiss=False)
    ```
    """
    searcher = ExactSearcher(corpus, use_faiss, query_chunk_size, corpus_chunk_size)
    return searcher.search(queries, k)


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _rescore(queries: torch.Tensor, corpus: torch.Tensor, idx: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Canonical inner products of each query with its shortlisted corpus rows `idx` ([q, w]).

    Multiply-then-sum reduces each (query, item) pair on its own, so a score depends only on the two vectors: not on
    the backend, block shapes, batch or position (equal vectors get bit-equal scores wherever they sit). BLAS
    matrix products give no such guarantee.
    """
    import torch

    out = torch.empty(idx.shape, dtype=queries.dtype)
    for start in range(0, idx.shape[0], batch):
        rows = idx[start : start + batch]
        candidates = torch.index_select(corpus, 0, rows.reshape(-1)).view(*rows.shape, -1)
        candidates.mul_(queries[start : start + batch, None, :])
        torch.sum(candidates, dim=-1, out=out[start : start + batch])
    return out


def _select_top_k(
    values: torch.Tensor, k: int, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` of each row under the order `(-value, label)`, in that order; labels default to column positions.

    Returns `(values, labels)` of shape `[rows, min(k, columns)]`.
    """
    import torch

    columns = values.shape[1]
    k = min(k, columns)
    window = min(k + 1, columns)
    top_values, positions = torch.topk(values, window, dim=1)
    top_labels = positions if labels is None else labels.gather(1, positions)
    # A row whose window (top k plus one) strictly decreases is settled: its top-k set and order are unique. Rows with
    # equal neighbours (a tie inside the top k or at its boundary), where topk's choice is unspecified, are redone
    # with a stable sort. Exact float ties are rare, so this costs one comparison of the [rows, k + 1] window.
    tied = (top_values[:, 1:] == top_values[:, :-1]).any(dim=1).nonzero().squeeze(1)
    if tied.numel():
        row_values = values[tied]
        if labels is None:
            row_labels = torch.arange(columns).expand(len(tied), columns)
        else:
            by_label = torch.argsort(labels[tied], dim=1, stable=True)
            row_values, row_labels = row_values.gather(1, by_label), labels[tied].gather(1, by_label)
        by_value = torch.sort(row_values, dim=1, descending=True, stable=True).indices[:, :window]
        top_values[tied], top_labels[tied] = row_values.gather(1, by_value), row_labels.gather(1, by_value)
    return top_values[:, :k], top_labels[:, :k]


def _merge(sims: list[torch.Tensor], idx: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the union of several per-block top-k lists, ties by corpus index."""
    import torch

    if len(sims) == 1:
        return sims[0], idx[0]
    return _select_top_k(torch.cat(sims, dim=1), k, labels=torch.cat(idx, dim=1))


def _torch_top_k(
    queries: torch.Tensor, corpus: torch.Tensor, k: int, corpus_chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k over `corpus` in column chunks with a running merge; memory is one `[q, chunk]` block."""
    import torch

    # Equal chunks of at most corpus_chunk_size rows (a small ragged last chunk would make topk pick a slower path).
    num_chunks = -(-corpus.shape[0] // corpus_chunk_size)
    chunk_size = -(-corpus.shape[0] // num_chunks)
    # One buffer reused for every block: a fresh large allocation per block costs page faults on every first touch.
    buffer = torch.empty(queries.shape[0] * chunk_size, dtype=queries.dtype)
    kept_sims: list[torch.Tensor] = []
    kept_idx: list[torch.Tensor] = []
    for start in range(0, corpus.shape[0], chunk_size):
        chunk = corpus[start : start + chunk_size]
        block = buffer[: queries.shape[0] * chunk.shape[0]].view(queries.shape[0], chunk.shape[0])
        torch.mm(queries, chunk.T, out=block)
        sims, idx = _select_top_k(block, k)
        kept_sims.append(sims)
        kept_idx.append(idx + start)
        # Merge the per-block winners every few blocks: memory stays O(q * k) and the merges stay few.
        if len(kept_sims) == _MERGE_EVERY:
            merged = _merge(kept_sims, kept_idx, k)
            kept_sims, kept_idx = [merged[0]], [merged[1]]
    return _merge(kept_sims, kept_idx, k)


# -------------------------------------------------------------------------------------------------------- retrieve
def retrieve_candidates(
    pairs: Dataset,
    corpus: Dataset,
    embedder: Any,
    top_k: int = 50,
    similarity_threshold: float | None = None,
    batch_size: int = 64,
    output_dir: str | os.PathLike | None = None,
    shard_size: int = 10_000,
    query_instruction: str | None = None,
    candidate_instruction: str | None = None,
    use_faiss: bool | None = None,
    *,
    image_root: str | os.PathLike | None = None,
    encode_kwargs: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
    corpus_chunk_size: int = DEFAULT_CORPUS_CHUNK_SIZE,
) -> Dataset:
    """Retrieve the `top_k` nearest corpus items of every query, its own positive excluded.

    Corpus items and queries are embedded once, L2-normalised, and searched exactly by cosine. `top_k + 1` items are
    retrieved so that removing the positive still leaves `top_k`; then, when `similarity_threshold` is given, only
    candidates with similarity strictly below it are kept (so a query may end with fewer than `top_k`). Ties are
    broken by corpus row (lower first), so results are deterministic and identical for both search backends.

    With `output_dir`, embeddings and search results are written in shards of `shard_size` rows under
    `output_dir/{corpus_embeddings,query_embeddings,candidates}` together with a manifest of the configuration: a
    rerun skips the shards already written, and under `accelerate launch` each process takes every n-th shard and all
    processes return the same assembled dataset. Without `output_dir`, everything runs in memory in each process.
    (On a machine without GPU, `accelerate launch --cpu` starts several processes only through MPI; use
    `accelerate launch --multi_gpu --num_processes n` or `torchrun --nproc_per_node n`, which the runner joins on
    CPU with gloo.)

    Args:
        pairs (`datasets.Dataset`):
            Rows with `query_text`, `query_image` (`""` when absent) and `pos_id` (a corpus id).
        corpus (`datasets.Dataset`):
            Unique candidate items with columns `id`, `text` and `image` (`""` when absent).
        embedder:
            A [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or any object following [`Embedder`].
        top_k (`int`, *optional*, defaults to 50):
            Candidates per query.
        similarity_threshold (`float`, *optional*):
            The paper's delta: keep only candidates with cosine `< similarity_threshold`. `None` keeps all.
        batch_size (`int`, *optional*, defaults to 64):
            Items per `embedder.encode` call.
        output_dir (`str` or `os.PathLike`, *optional*):
            Directory for resumable shards; see above.
        shard_size (`int`, *optional*, defaults to 10000):
            Rows per shard (corpus items for corpus embeddings, pairs otherwise).
        query_instruction (`str`, *optional*):
            Instruction passed to the embedder for queries.
        candidate_instruction (`str`, *optional*):
            Instruction passed to the embedder for corpus items.
        use_faiss (`bool`, *optional*):
            `None` (default) uses faiss when importable, `False` the chunked torch search, `True` requires faiss.
        image_root (`str` or `os.PathLike`, *optional*):
            Directory that relative image paths are resolved against.
        encode_kwargs (`dict`, *optional*):
            Extra keyword arguments for every `embedder.encode` call (e.g. `{"processor": processor}`).
        model_name (`str`, *optional*):
            Name recorded in the manifest; defaults to the embedder's `name_or_path`.
        overwrite (`bool`, *optional*, defaults to `False`):
            Recompute results found in `output_dir` under another configuration instead of raising.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show tqdm progress bars (on the local main process).
        query_chunk_size (`int`, *optional*, defaults to 1024):
            Queries per search block.
        corpus_chunk_size (`int`, *optional*, defaults to 16384):
            Corpus rows per block of the torch search.

    Returns:
        `datasets.Dataset`: `pairs` with two more columns: `candidate_ids` (`list[str]`, best first) and
        `candidate_similarities` (`list[float]`).

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from unime_hf.mining import retrieve_candidates
    >>> corpus = Dataset.from_dict({"id": ["a", "b", "c"], "text": ["red square", "blue circle", "red circle"],
    ...                             "image": ["", "", ""]})
    >>> pairs = Dataset.from_dict({"query_id": ["q0"], "query_text": ["a red shape"], "query_image": [""],
    ...                            "pos_id": ["a"], "pos_text": ["red square"], "pos_image": [""]})
    >>> mined = retrieve_candidates(pairs, corpus, model, top_k=2)
    >>> mined[0]["candidate_ids"]
    ['c', 'b']
    ```
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if similarity_threshold is not None and not np.isfinite(similarity_threshold):
        raise ValueError(f"similarity_threshold must be a finite number or None, got {similarity_threshold}.")
    _check_columns(corpus, "corpus", required=("id",), one_of=("text", "image"))
    _check_columns(pairs, "pairs", required=("pos_id",), one_of=("query_text", "query_image"))
    if len(corpus) == 0:
        raise ValueError("The corpus is empty: retrieval needs at least one candidate item.")

    corpus_ids = [str(value) for value in corpus["id"]]
    id_to_row = _index_ids(corpus_ids)
    positive_rows = _positive_rows(pairs, id_to_row)

    model = as_embedder(embedder)
    name = model_name or _model_name(model)
    encode_options = dict(encode_kwargs or {})
    corpus_hash = hash_dataset(corpus, ["id", "text", "image"])
    query_hash = hash_dataset(pairs, ["query_text", "query_image"])
    common = {"model": name, "image_root": str(image_root) if image_root is not None else None}
    retrieve_k = min(top_k + 1, len(corpus))

    search_runner = ShardedRunner(
        output_dir,
        "candidates",
        {
            **common,
            "top_k": top_k,
            "similarity_threshold": similarity_threshold,
            "query_instruction": query_instruction,
            "candidate_instruction": candidate_instruction,
            "corpus": corpus_hash,
            "queries": query_hash,
            "positives": _hash_values(corpus_ids[row] for row in positive_rows),
        },
        num_rows=len(pairs),
        shard_size=shard_size,
        overwrite=overwrite,
    )
    show = show_progress and getattr(search_runner.state, "is_local_main_process", True)

    if search_runner.missing_shards():
        corpus_runner = ShardedRunner(
            output_dir,
            "corpus_embeddings",
            {**common, "instruction": candidate_instruction, "data": corpus_hash},
            num_rows=len(corpus),
            shard_size=shard_size,
            overwrite=overwrite,
        )
        _embed_stage(
            corpus_runner, corpus, model, ("text", "image"), "corpus", candidate_instruction, batch_size,
            encode_options, image_root, show,
        )  # fmt: skip
        query_runner = ShardedRunner(
            output_dir,
            "query_embeddings",
            {**common, "instruction": query_instruction, "data": query_hash},
            num_rows=len(pairs),
            shard_size=shard_size,
            overwrite=overwrite,
        )
        _embed_stage(
            query_runner, pairs, model, ("query_text", "query_image"), "pairs", query_instruction, batch_size,
            encode_options, image_root, show,
        )  # fmt: skip
        corpus_runner.wait_for_everyone()
        query_runner.wait_for_everyone()

        pending = search_runner.pending_shards()
        if pending:
            corpus_embeddings = corpus_runner.load_all()["embeddings"]
            searcher = ExactSearcher(corpus_embeddings, use_faiss, query_chunk_size, corpus_chunk_size)
            del corpus_embeddings
            logger.info("Searching %d corpus items with %s (top %d).", len(corpus), searcher.backend, top_k)
            with progress_bar(search_runner.num_pending_rows(), "Searching", show, unit="query") as bar:
                for shard in pending:
                    start, stop = search_runner.shard_range(shard)
                    queries = query_runner.load_shard(shard)["embeddings"]
                    sims, idx = searcher.search(queries, retrieve_k, progress=bar)
                    search_runner.write_shard(
                        shard,
                        _select_candidates(sims, idx, positive_rows[start:stop], top_k, similarity_threshold),
                    )
    search_runner.wait_for_everyone()

    results = search_runner.load_all()
    candidate_ids = [[corpus_ids[i] for i in row.tolist()] for row in results.get("indices", [])]
    candidate_sims = [row.tolist() for row in results.get("similarities", [])]
    short = sum(len(row) < top_k for row in candidate_ids)
    if short:
        logger.info(
            "%d of %d queries have fewer than %d candidates (similarity_threshold=%s, corpus size %d).",
            short, len(pairs), top_k, similarity_threshold, len(corpus),
        )  # fmt: skip
    empty = sum(not row for row in candidate_ids)
    if empty:
        logger.warning("%d queries have no candidate at all; raise similarity_threshold or top_k.", empty)

    from datasets import List, Value

    out = pairs
    for column in (CANDIDATE_IDS, CANDIDATE_SIMILARITIES):
        if column in out.column_names:
            logger.warning("Replacing the existing %r column of pairs.", column)
            out = out.remove_columns(column)
    out = out.add_column(CANDIDATE_IDS, candidate_ids, feature=List(Value("string")))
    return out.add_column(CANDIDATE_SIMILARITIES, candidate_sims, feature=List(Value("float32")))


def _select_candidates(
    sims: np.ndarray,
    idx: np.ndarray,
    positive_rows: Sequence[int],
    top_k: int,
    threshold: float | None,
) -> dict[str, list[np.ndarray]]:
    keep_idx, keep_sims = [], []
    for row_sims, row_idx, positive in zip(sims, idx, positive_rows):
        mask = row_idx != positive
        if threshold is not None:
            mask &= row_sims < threshold
        keep_idx.append(row_idx[mask][:top_k])
        keep_sims.append(row_sims[mask][:top_k])
    return {"indices": keep_idx, "similarities": keep_sims}


# ------------------------------------------------------------------------------------------------------- embedding
def _embed_stage(
    runner: ShardedRunner,
    dataset: Dataset,
    model: Embedder,
    columns: tuple[str, str],
    label: str,
    instruction: str | None,
    batch_size: int,
    encode_kwargs: dict[str, Any],
    image_root: str | os.PathLike | None,
    show: bool,
) -> None:
    pending = runner.pending_shards()
    if not pending:
        return
    text_column, image_column = columns
    present = [column for column in columns if column in dataset.column_names]
    view = dataset.select_columns(present)
    kwargs = dict(encode_kwargs)
    if instruction is not None:
        kwargs["instruction"] = instruction
    dim: int | None = None
    with progress_bar(runner.num_pending_rows(), f"Embedding {label}", show) as bar:
        for shard in pending:
            start, stop = runner.shard_range(shard)
            parts = []
            for batch_start in range(start, stop, batch_size):
                batch_stop = min(batch_start + batch_size, stop)
                rows = view[batch_start:batch_stop]
                texts = rows.get(text_column, [None] * (batch_stop - batch_start))
                images = rows.get(image_column, [None] * (batch_stop - batch_start))
                items = [
                    _make_item(text, image, image_root, label, batch_start + offset, columns)
                    for offset, (text, image) in enumerate(zip(texts, images))
                ]
                vectors = _as_matrix(model.encode(items, batch_size=batch_size, **kwargs), len(items), dim, label)
                dim = vectors.shape[1]
                parts.append(_normalise(vectors, label, batch_start))
                bar.update(len(items))
            runner.write_shard(shard, {"embeddings": np.concatenate(parts, axis=0)})


def _make_item(
    text: Any, image: Any, image_root: str | os.PathLike | None, label: str, row: int, columns: tuple[str, str]
) -> dict[str, Any]:
    text = text if text not in (None, "") else None
    image = image if image is not None and not (isinstance(image, str) and image == "") else None
    if isinstance(image, str) and image_root is not None and not os.path.isabs(image):
        image = os.path.join(image_root, image)
    if text is None and image is None:
        raise ValueError(
            f"Row {row} of {label} has neither text nor image (columns {columns[0]!r}, {columns[1]!r} are both "
            "empty). Every item needs at least one of them."
        )
    return {"text": text, "image": image}


def _as_matrix(output: Any, expected_rows: int, dim: int | None, label: str) -> np.ndarray:
    if hasattr(output, "detach"):  # torch.Tensor, possibly bf16 on an accelerator
        output = output.detach().float().cpu().numpy()
    try:
        matrix = np.asarray(output, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"The embedder returned {type(output).__name__}, not a [n, dim] tensor or array.") from err
    if matrix.ndim != 2 or matrix.shape[0] != expected_rows or (dim is not None and matrix.shape[1] != dim):
        expected = f"({expected_rows}, {dim if dim is not None else 'dim'})"
        raise ValueError(
            f"The embedder returned shape {tuple(matrix.shape)} for {expected_rows} {label} items; expected "
            f"{expected}. encode(items) must return one embedding row per item."
        )
    return matrix


def _normalise(vectors: np.ndarray, label: str, first_row: int) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if bad.size:
        raise ValueError(
            f"The embedder returned a zero or non-finite embedding for row {first_row + int(bad[0])} of {label}; "
            "cosine similarity is undefined for it."
        )
    return vectors / norms


# ------------------------------------------------------------------------------------------------------ validation
def _check_columns(dataset: Dataset, label: str, required: tuple[str, ...], one_of: tuple[str, ...]) -> None:
    missing = [column for column in required if column not in dataset.column_names]
    if missing or not any(column in dataset.column_names for column in one_of):
        needed = list(missing) + ([] if any(c in dataset.column_names for c in one_of) else [" or ".join(one_of)])
        raise ValueError(f"{label} lacks column(s) {needed}; it has {dataset.column_names}.")


def _index_ids(ids: list[str]) -> dict[str, int]:
    id_to_row: dict[str, int] = {}
    for row, item_id in enumerate(ids):
        if item_id in id_to_row:
            raise ValueError(
                f"Corpus id {item_id!r} appears twice (rows {id_to_row[item_id]} and {row}); ids must be unique."
            )
        id_to_row[item_id] = row
    return id_to_row


def _positive_rows(pairs: Dataset, id_to_row: dict[str, int]) -> list[int]:
    query_ids = pairs["query_id"] if "query_id" in pairs.column_names else None
    rows = []
    for row, pos_id in enumerate(pairs["pos_id"]):
        corpus_row = id_to_row.get(str(pos_id)) if pos_id is not None else None
        if corpus_row is None:
            where = f"row {row}" + (f" (query_id {query_ids[row]!r})" if query_ids is not None else "")
            raise ValueError(
                f"pairs {where}: pos_id {pos_id!r} is not a corpus id. Every positive must be an item of the corpus."
            )
        rows.append(corpus_row)
    return rows


# ---------------------------------------------------------------------------------------------------- fingerprints
def _hash_values(values: Iterator[Any] | Sequence[Any]) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for value in values:
        hasher.update(repr(value).encode())
        hasher.update(b"\x1f")
    return hasher.hexdigest()
