"""Image-text retrieval (Flickr30K, MS-COCO, ShareGPT4V, Urban1K style): Recall@K both ways over a whole gallery.

A gallery is a list of images, each with one or more captions. Every image is a query against all captions
(image->text) and every caption a query against all images (text->image). A query is right at K when one of its
relevant items is ranked at K or better: an image's relevant captions are its own; a caption's relevant image is
its own. Relevance is by content, so a caption text that two images share is relevant to both and a caption query
finds either image.

Ties (exactly equal similarities, e.g. a collapsed model) count against the query by default (`ties="strict"`): the
rank of the first relevant item is 1 + the number of irrelevant items scoring at least as high. `ties="first"`
breaks ties by gallery index instead, as `argsort`-based reference code does.

Similarities are computed in `[query_chunk, gallery_chunk]` blocks, so no `n x n` matrix is ever held.

This module also holds the embedding helpers that every evaluation shares: items are deduplicated and each distinct
item is embedded once ([`embed_unique`]).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datasets
    import torch

logger = logging.getLogger(__name__)

Ties = Literal["strict", "first"]
TIES: tuple[str, ...] = ("strict", "first")
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_QUERY_CHUNK_SIZE = 1024
DEFAULT_GALLERY_CHUNK_SIZE = 16384

#: An item to embed: (text, image path), ``""`` where absent.
Item = tuple[str, str]


# ------------------------------------------------------------------------------------------------ embedding items
def check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")


def unique_items(items: Iterable[Item]) -> tuple[list[Item], list[int]]:
    """Distinct items in first-seen order, and for every input item the index of its distinct item.

    Example:

    ```python
    >>> unique_items([("a cat", ""), ("", "dog.png"), ("a cat", "")])
    ([('a cat', ''), ('', 'dog.png')], [0, 1, 0])
    ```
    """
    index: dict[Item, int] = {}
    inverse = [index.setdefault(item, len(index)) for item in items]
    return list(index), inverse


def to_embedder_item(item: Item) -> dict[str, Any]:
    """The `{"text", "image"}` dict an embedder receives (`None` where absent)."""
    text, image = item
    return {"text": text or None, "image": image or None}


def _accepts(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def encode(
    embedder: Any,
    items: Sequence[Item],
    *,
    batch_size: int = 16,
    instruction: str | None = None,
    show_progress: bool = False,
    encode_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Embed items with any embedder in one `encode` call; returns L2-normalised float32 rows `[len(items), dim]`.

    `embedder` is a [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer` (adapted with
    [`~unime_hf.mining.retrieve.as_embedder`]) or any object with `encode(items, batch_size=..., **kwargs)` returning a
    `[n, dim]` tensor or array. `instruction=` and `show_progress_bar=` are passed only when set and accepted.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from unime_hf.mining.retrieve import as_embedder

    embedder = as_embedder(embedder)
    if not items:
        raise ValueError("nothing to embed: the item list is empty")
    kwargs = dict(encode_kwargs or {})
    if instruction:
        kwargs["instruction"] = instruction
    if show_progress and _accepts(embedder.encode, "show_progress_bar"):
        kwargs.setdefault("show_progress_bar", True)
    output = embedder.encode([to_embedder_item(item) for item in items], batch_size=batch_size, **kwargs)
    if not isinstance(output, torch.Tensor):
        output = torch.from_numpy(np.asarray(output))
    output = output.detach().to("cpu", torch.float32)
    if output.ndim != 2 or output.shape[0] != len(items):
        raise ValueError(
            f"{type(embedder).__name__}.encode returned shape {tuple(output.shape)} for {len(items)} items; "
            f"expected ({len(items)}, dim)"
        )
    if not bool(torch.isfinite(output).all()):
        raise ValueError(f"{type(embedder).__name__}.encode returned NaN or infinite values")
    return F.normalize(output, p=2, dim=-1)


def embed_unique(embedder: Any, items: Sequence[Item], **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Embed each distinct item once.

    Returns:
        `(embeddings, inverse, n_unique)`: `embeddings[inverse[i]]` is the embedding of `items[i]`; `embeddings` has
        one row per distinct item. Keyword arguments go to [`encode`].
    """
    import torch

    distinct, inverse = unique_items(items)
    embeddings = encode(embedder, distinct, **kwargs)
    return embeddings, torch.tensor(inverse, dtype=torch.long), len(distinct)


# ------------------------------------------------------------------------------------------------------- metrics
def _relevance_pairs(relevant: Any, num_queries: int, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query index, item index) of every relevant pair, from index lists or a boolean `[q, n]` matrix."""
    import torch

    if isinstance(relevant, torch.Tensor) or hasattr(relevant, "dtype"):
        mask = torch.as_tensor(relevant)
        if mask.shape != (num_queries, num_items):
            raise ValueError(f"relevant mask has shape {tuple(mask.shape)}; expected ({num_queries}, {num_items})")
        rows, cols = mask.bool().nonzero(as_tuple=True)
    else:
        relevant = list(relevant)
        if len(relevant) != num_queries:
            raise ValueError(f"got relevance for {len(relevant)} queries; expected {num_queries}")
        rows_list, cols_list = [], []
        for query, items in enumerate(relevant):
            for item in sorted({int(i) for i in items}):
                if not 0 <= item < num_items:
                    raise ValueError(f"query {query}: relevant index {item} is outside [0, {num_items})")
                rows_list.append(query)
                cols_list.append(item)
        rows, cols = torch.tensor(rows_list, dtype=torch.long), torch.tensor(cols_list, dtype=torch.long)
    missing = torch.ones(num_queries, dtype=torch.bool)
    missing[rows] = False
    if bool(missing.any()):
        raise ValueError(f"query {int(missing.nonzero()[0])} has no relevant item; every query needs at least one")
    return rows, cols


def _block_ranks(
    block: Callable[[int, int, int, int], torch.Tensor],
    num_queries: int,
    num_items: int,
    relevant: Any,
    ties: str,
    query_chunk_size: int,
    gallery_chunk_size: int,
    top_k: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rank (1-based) of the first relevant item of every query, and optionally each query's `top_k` items.

    `block(q0, q1, g0, g1)` returns the similarities of queries `q0:q1` against items `g0:g1`. Two passes over the
    blocks: the first finds each query's best relevant similarity (and its lowest index), the second counts the
    irrelevant items ranked above it. Both passes see bit-identical blocks, so comparisons are exact.
    """
    import torch

    check_ties(ties)
    if query_chunk_size < 1 or gallery_chunk_size < 1:
        raise ValueError("query_chunk_size and gallery_chunk_size must be >= 1")
    rows, cols = _relevance_pairs(relevant, num_queries, num_items)
    ranks = torch.empty(num_queries, dtype=torch.long)
    tops = torch.empty(num_queries, min(top_k, num_items), dtype=torch.long) if top_k else None
    for q0 in range(0, num_queries, query_chunk_size):
        q1 = min(q0 + query_chunk_size, num_queries)
        in_chunk = (rows >= q0) & (rows < q1)
        r, c = rows[in_chunk] - q0, cols[in_chunk]
        n = q1 - q0
        # pass 1: similarity of every relevant pair -> best per query, and the lowest index reaching it
        pair_sims = torch.empty(len(r))
        for g0 in range(0, num_items, gallery_chunk_size):
            g1 = min(g0 + gallery_chunk_size, num_items)
            sims = block(q0, q1, g0, g1)
            here = (c >= g0) & (c < g1)
            pair_sims[here] = sims[r[here], c[here] - g0]
        best = torch.full((n,), float("-inf")).scatter_reduce(0, r, pair_sims, reduce="amax")
        at_best = pair_sims == best[r]
        best_index = torch.full((n,), num_items, dtype=torch.long).scatter_reduce(
            0, r[at_best], c[at_best], reduce="amin"
        )
        # pass 2: irrelevant items ranked above the best relevant one
        above = torch.zeros(n, dtype=torch.long)
        top_values = top_indices = None
        for g0 in range(0, num_items, gallery_chunk_size):
            g1 = min(g0 + gallery_chunk_size, num_items)
            sims = block(q0, q1, g0, g1)
            here = (c >= g0) & (c < g1)
            is_relevant = torch.zeros_like(sims, dtype=torch.bool)
            is_relevant[r[here], c[here] - g0] = True
            if ties == "strict":
                beats = sims >= best[:, None]
            else:
                position = torch.arange(g0, g1)
                beats = (sims > best[:, None]) | ((sims == best[:, None]) & (position[None, :] < best_index[:, None]))
            above += (beats & ~is_relevant).sum(dim=1)
            if tops is not None:
                values, indices = torch.topk(sims, min(top_k, g1 - g0), dim=1)
                indices = indices + g0
                if top_values is not None:
                    values, order = torch.topk(torch.cat([top_values, values], 1), min(top_k, g1), dim=1)
                    indices = torch.cat([top_indices, indices], 1).gather(1, order)
                top_values, top_indices = values, indices
        ranks[q0:q1] = above + 1
        if tops is not None:
            tops[q0:q1] = top_indices
    return ranks, tops


def first_relevant_ranks(similarities: Any, relevant: Any, ties: Ties = "strict") -> torch.Tensor:
    """Rank (1 = best) of the best-ranked relevant item of every query, from a full similarity matrix.

    Args:
        similarities (`torch.Tensor` or `np.ndarray` of shape `(num_queries, num_items)`):
            Query-item similarities.
        relevant (`Sequence[Iterable[int]]` or boolean matrix of shape `(num_queries, num_items)`):
            The relevant items of every query (at least one each).
        ties (`str`, *optional*, defaults to `"strict"`):
            `"strict"`: an irrelevant item tied with the best relevant one ranks above it; `"first"`: ties are
            broken by item index.

    Returns:
        `torch.LongTensor` of shape `(num_queries,)`.

    Example:

    ```python
    >>> first_relevant_ranks([[0.9, 0.2, 0.5], [0.1, 0.3, 0.8]], [[2], [0, 2]]).tolist()
    [2, 1]
    ```
    """
    import torch

    sims = torch.as_tensor(similarities, dtype=torch.float32)
    if sims.ndim != 2:
        raise ValueError(f"similarities must be a [num_queries, num_items] matrix, got shape {tuple(sims.shape)}")
    num_queries, num_items = sims.shape
    ranks, _ = _block_ranks(
        lambda q0, q1, g0, g1: sims[q0:q1, g0:g1],
        num_queries,
        num_items,
        relevant,
        ties,
        max(num_queries, 1),
        max(num_items, 1),
    )
    return ranks


def recall_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """`{"recall@k": share of queries whose first relevant item ranks <= k}` for every k."""
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    if len(ranks) == 0:
        raise ValueError("no queries")
    return {f"recall@{k}": int((ranks <= k).sum()) / len(ranks) for k in ks}


def recall_at_k(
    similarities: Any, relevant: Any, ks: Sequence[int] = DEFAULT_KS, ties: Ties = "strict"
) -> dict[str, float]:
    """Recall@K as cross-modal retrieval reports it: the share of queries with a relevant item in the top K.

    (This is sentence-transformers' `accuracy@k`; with one relevant item per query it equals its `recall@k` too.)

    Args:
        similarities (`torch.Tensor` or `np.ndarray` of shape `(num_queries, num_items)`):
            Query-item similarities.
        relevant (`Sequence[Iterable[int]]` or boolean matrix):
            The relevant item indices of every query (at least one each).
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10)`):
            Cut-offs.
        ties (`str`, *optional*, defaults to `"strict"`):
            See [`first_relevant_ranks`].

    Returns:
        `dict[str, float]`: `{"recall@1": ..., "recall@5": ..., ...}`, fractions in [0, 1].

    Example:

    ```python
    >>> recall_at_k([[0.9, 0.2, 0.5], [0.1, 0.3, 0.8]], [[2], [0, 2]], ks=(1, 2))
    {'recall@1': 0.5, 'recall@2': 1.0}
    ```
    """
    return recall_from_ranks(first_relevant_ranks(similarities, relevant, ties), ks)


def chunked_ranks(
    queries: torch.Tensor,
    items: torch.Tensor,
    relevant: Any,
    *,
    ties: Ties = "strict",
    query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
    gallery_chunk_size: int = DEFAULT_GALLERY_CHUNK_SIZE,
    top_k: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[`first_relevant_ranks`] of `queries @ items.T` without building it: at most one
    `[query_chunk_size, gallery_chunk_size]` block at a time. With `top_k`, also every query's `top_k` item indices
    (best first)."""
    if queries.shape[1] != items.shape[1]:
        raise ValueError(f"queries have dim {queries.shape[1]} but items have dim {items.shape[1]}")
    return _block_ranks(
        lambda q0, q1, g0, g1: queries[q0:q1] @ items[g0:g1].T,
        queries.shape[0],
        items.shape[0],
        relevant,
        ties,
        query_chunk_size,
        gallery_chunk_size,
        top_k,
    )


# ------------------------------------------------------------------------------------------------------- galleries
@dataclass
class ImageTextGallery:
    """Images (absolute paths) and the captions of each, aligned by index.

    Example:

    ```python
    >>> gallery = ImageTextGallery(["a.png", "b.png"], [["a cat", "a kitten"], ["a dog"]])
    >>> gallery.num_captions
    3
    ```
    """

    images: list[str]
    captions: list[list[str]]
    name: str = "gallery"

    def __post_init__(self) -> None:
        if len(self.images) != len(self.captions):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.captions)} caption lists")
        if not self.images:
            raise ValueError(f"{self.name}: the gallery is empty")
        for index, (image, captions) in enumerate(zip(self.images, self.captions)):
            if not image:
                raise ValueError(f"{self.name}: image {index} has an empty path")
            if not captions or not all(isinstance(c, str) and c for c in captions):
                raise ValueError(f"{self.name}: image {index} ({image}) needs one or more non-empty captions")
        if len(set(self.images)) != len(self.images):
            raise ValueError(f"{self.name}: an image appears twice; group its captions into one entry")

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def flat_captions(self) -> tuple[list[str], list[int]]:
        """Every caption once per occurrence, and the index of its image."""
        texts = [caption for captions in self.captions for caption in captions]
        owners = [index for index, captions in enumerate(self.captions) for _ in captions]
        return texts, owners

    @classmethod
    def from_rows(
        cls, rows: Iterable[Mapping[str, Any]], name: str = "gallery", image_root: str | os.PathLike | None = None
    ) -> ImageTextGallery:
        """Group rows with an image column (`image`, `file_name`, `filename` or `image_path`) and a caption column
        (`caption`, `text`, a `captions` list, Karpathy-style `sentences`, or ShareGPT4V `conversations`, whose first
        `gpt` turn is the caption) by image, keeping first-seen order."""
        grouped: dict[str, list[str]] = {}
        for index, row in enumerate(rows):
            image = next((row[k] for k in ("image", "file_name", "filename", "image_path") if row.get(k)), None)
            if not isinstance(image, str):
                raise ValueError(
                    f"{name}: row {index} has no image path (columns 'image', 'file_name', 'filename' or 'image_path')"
                )
            captions = _row_captions(row)
            if not captions:
                raise ValueError(
                    f"{name}: row {index} has no caption (columns 'caption', 'text', 'captions' or 'sentences')"
                )
            grouped.setdefault(_resolve(image, image_root), []).extend(captions)
        return cls(list(grouped), list(grouped.values()), name)


def _row_captions(row: Mapping[str, Any]) -> list[str]:
    conversations = row.get("conversations")
    if isinstance(conversations, list):  # ShareGPT4V: the caption is the model's turn
        return [turn["value"] for turn in conversations if turn.get("from") == "gpt" and turn.get("value")][:1]
    for key in ("captions", "sentences"):
        value = row.get(key)
        if isinstance(value, list):
            return [s["raw"] if isinstance(s, Mapping) else s for s in value]
    for key in ("caption", "text"):
        value = row.get(key)
        if isinstance(value, str) and value:
            return [value]
    return []


def _resolve(image: str, root: str | os.PathLike | None) -> str:
    path = Path(image)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    return str(path.absolute()) if root is not None or path.is_absolute() else image


def load_gallery(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    split: str | None = "test",
    name: str | None = None,
    max_images: int | None = None,
    check_images: bool = True,
) -> ImageTextGallery:
    """Read an image-caption gallery from one of three layouts.

    - a `.json`, `.jsonl` or `.parquet` file of rows `image` + `caption` (one caption a row, images repeated),
      `image` + `captions` (a list), or ShareGPT4V records (`image` + `conversations`);
    - a Karpathy split file (`dataset_flickr30k.json`, `dataset_coco.json`: `{"images": [{"filename", "filepath",
      "split", "sentences": [{"raw"}]}]}`), keeping the rows of `split` (`"test"`: the 1k / 5k test sets);
    - a folder with `image/` and `caption/` subfolders whose files pair by stem (`caption/x.txt` describes
      `image/x.jpg`), as Urban1K ships.

    Relative image paths start at `image_root` (default: the file's folder, or the folder itself). `max_images` keeps
    the first images only (ShareGPT4V-1k: the first 1,000 records).

    Example:

    ```python
    >>> gallery = load_gallery("/data/flickr30k/dataset_flickr30k.json", "/data/flickr30k/flickr30k-images")
    >>> len(gallery.images), gallery.num_captions
    (1000, 5000)
    ```
    """
    import json

    path = Path(path)
    name = name or path.stem
    if path.is_dir():
        gallery = _load_folder_gallery(path, name)
    else:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, Mapping) and "images" in data:
                root = Path(image_root) if image_root is not None else path.parent
                rows = [
                    {
                        "image": str(Path(entry.get("filepath", "")) / entry["filename"]),
                        "sentences": entry["sentences"],
                    }
                    for entry in data["images"]
                    if split is None or entry.get("split") == split
                ]
                if not rows:
                    raise ValueError(f"{path}: no images in split {split!r}")
                gallery = ImageTextGallery.from_rows(rows, name, root)
                return _checked(_first(gallery, max_images), check_images)
        from unime_hf.data.formats import load_records

        records = load_records(path)
        root = Path(image_root) if image_root is not None else path.absolute().parent
        gallery = ImageTextGallery.from_rows(records.rows, name, root)
    return _checked(_first(gallery, max_images), check_images)


def _first(gallery: ImageTextGallery, max_images: int | None) -> ImageTextGallery:
    if max_images is None or max_images >= len(gallery.images):
        return gallery
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    return ImageTextGallery(gallery.images[:max_images], gallery.captions[:max_images], gallery.name)


def _load_folder_gallery(folder: Path, name: str) -> ImageTextGallery:
    image_dir, caption_dir = folder / "image", folder / "caption"
    if not image_dir.is_dir() or not caption_dir.is_dir():
        raise FileNotFoundError(f"{folder}: a gallery folder needs 'image/' and 'caption/' subfolders")
    images, captions = [], []
    for image in sorted(p for p in image_dir.iterdir() if p.is_file()):
        caption_file = caption_dir / f"{image.stem}.txt"
        if not caption_file.is_file():
            raise FileNotFoundError(f"{caption_file}: missing caption for {image}")
        images.append(str(image.absolute()))
        captions.append([caption_file.read_text(encoding="utf-8").strip()])
    return ImageTextGallery(images, captions, name)


def _checked(gallery: ImageTextGallery, check_images: bool) -> ImageTextGallery:
    if check_images:
        for index, image in enumerate(gallery.images):
            if not Path(image).is_file():
                raise FileNotFoundError(f"{gallery.name}: image {index} does not exist: {image}")
    return gallery


# -------------------------------------------------------------------------------------------------------- runner
@dataclass
class RetrievalResult:
    """Metrics, per-query predictions and the embeddings of one gallery.

    Attributes:
        metrics (`dict`): `{"image_to_text": {"recall@1": ...}, "text_to_image": {...}, "num_images": ...,
            "num_captions": ..., "encoded_items": ...}`.
        predictions (`list[dict]`): one record per query: `direction`, `query` (image or caption index), `rank` (of
            the first relevant item) and `top` (best item indices).
        image_embeddings (`torch.Tensor`): `[num_images, dim]`.
        caption_embeddings (`torch.Tensor`): `[num_captions, dim]`, in [`ImageTextGallery.flat_captions`] order.
        caption_images (`list[int]`): the image of each caption.
    """

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(repr=False)
    image_embeddings: torch.Tensor = field(repr=False)
    caption_embeddings: torch.Tensor = field(repr=False)
    caption_images: list[int] = field(repr=False)


def _prompted(text: str, template: str | None) -> str:
    return template.replace("{text}", text) if template else text


def evaluate_retrieval(
    gallery: ImageTextGallery | datasets.Dataset | Sequence[Mapping[str, Any]],
    embedder: Any,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 16,
    image_prompt: str | None = None,
    text_prompt: str | None = None,
    ties: Ties = "strict",
    query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
    gallery_chunk_size: int = DEFAULT_GALLERY_CHUNK_SIZE,
    predictions_top_k: int = 10,
    show_progress: bool = False,
    encode_kwargs: Mapping[str, Any] | None = None,
) -> RetrievalResult:
    """Recall@K in both directions over a whole image-caption gallery.

    Args:
        gallery ([`ImageTextGallery`], `datasets.Dataset` or rows):
            The images and their captions (rows are grouped with [`ImageTextGallery.from_rows`]).
        embedder:
            A [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or any object with
            `encode(items, batch_size=...)` returning `[n, dim]`.
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10)`):
            Recall cut-offs.
        batch_size (`int`, *optional*, defaults to 16):
            Items per forward pass.
        image_prompt (`str`, *optional*):
            Text embedded with every image, e.g. `"<|image_1|>\\nRepresent the given image."` (the placeholder marks
            where the image goes). Default: the image alone.
        text_prompt (`str`, *optional*):
            Template for every caption with a `{text}` field, e.g. `"Find an image that matches: {text}"`.
        ties (`str`, *optional*, defaults to `"strict"`):
            Tie policy, see the module docstring.
        query_chunk_size, gallery_chunk_size (`int`, *optional*):
            Block sizes of the similarity computation.
        predictions_top_k (`int`, *optional*, defaults to 10):
            Item indices kept per query in the predictions.
        show_progress (`bool`, *optional*, defaults to `False`):
            Progress bars while encoding.
        encode_kwargs (`dict`, *optional*):
            Extra keyword arguments for every `embedder.encode` call (e.g. `{"processor": processor}`).

    Returns:
        [`RetrievalResult`].

    Example:

    ```python
    >>> from unime_hf.evaluation.retrieval import evaluate_retrieval, load_gallery
    >>> result = evaluate_retrieval(load_gallery("flickr30k/dataset_flickr30k.json"), model, batch_size=32)
    >>> result.metrics["image_to_text"]["recall@1"]
    ```
    """
    if not isinstance(gallery, ImageTextGallery):
        gallery = ImageTextGallery.from_rows(gallery if not hasattr(gallery, "to_list") else gallery.to_list())
    check_ties(ties)
    texts, owners = gallery.flat_captions()
    encode_options = {
        "batch_size": batch_size,
        "show_progress": show_progress,
        "encode_kwargs": encode_kwargs,
    }
    logger.info("%s: embedding %d images and %d captions", gallery.name, len(gallery.images), len(texts))
    image_items = [(image_prompt or "", image) for image in gallery.images]
    image_embeddings, image_inverse, n_images = embed_unique(embedder, image_items, **encode_options)
    caption_items = [(_prompted(text, text_prompt), "") for text in texts]
    caption_unique, caption_inverse, n_captions = embed_unique(embedder, caption_items, **encode_options)
    images = image_embeddings[image_inverse]
    captions = caption_unique[caption_inverse]

    # Relevance by content: a caption text belongs to every image that has it.
    images_of_text: dict[str, list[int]] = {}
    for text, owner in zip(texts, owners):
        images_of_text.setdefault(text, []).append(owner)
    positions_of_text: dict[str, list[int]] = {}
    for position, text in enumerate(texts):
        positions_of_text.setdefault(text, []).append(position)
    relevant_captions = [
        sorted({p for text in captions_of_image for p in positions_of_text[text]})
        for captions_of_image in gallery.captions
    ]
    relevant_images = [sorted(set(images_of_text[text])) for text in texts]

    chunks = {"ties": ties, "query_chunk_size": query_chunk_size, "gallery_chunk_size": gallery_chunk_size}
    i2t_ranks, i2t_top = chunked_ranks(images, captions, relevant_captions, top_k=predictions_top_k, **chunks)
    t2i_ranks, t2i_top = chunked_ranks(captions, images, relevant_images, top_k=predictions_top_k, **chunks)
    metrics = {
        "image_to_text": recall_from_ranks(i2t_ranks, ks),
        "text_to_image": recall_from_ranks(t2i_ranks, ks),
        "num_images": len(gallery.images),
        "num_captions": len(texts),
        "encoded_items": n_images + n_captions,
    }
    predictions = _predictions("image_to_text", i2t_ranks, i2t_top) + _predictions("text_to_image", t2i_ranks, t2i_top)
    return RetrievalResult(metrics, predictions, images, captions, owners)


def _predictions(direction: str, ranks: torch.Tensor, tops: torch.Tensor | None) -> list[dict[str, Any]]:
    top_lists = tops.tolist() if tops is not None else [[] for _ in range(len(ranks))]
    return [
        {"direction": direction, "query": query, "rank": rank, "top": top}
        for query, (rank, top) in enumerate(zip(ranks.tolist(), top_lists))
    ]
