"""MMEB evaluation: every query row carries its own candidate list with the gold at index 0; score = Precision@1.

Scores are reported per dataset, per meta-task (classification, VQA, retrieval, grounding), for the in-distribution
(IND, the 20 MMEB training datasets) and out-of-distribution (OOD, 16) datasets, and overall; every aggregate is the
mean over its datasets, as MMEB reports them. [`MMEB_DATASETS`] holds the benchmark's 36 datasets.

Decisions, so that numbers can be compared:

- **Candidates are embedded once.** Within a dataset, identical candidate items (same text and image) across rows are
  embedded a single time, as are identical queries (MMEB candidate lists repeat a lot: class names, answers).
- **Duplicates of the gold are the gold.** A candidate identical to the gold item (same text and image) is the same
  item, so it never counts as a competitor.
- **Ties count against the gold** (`ties="strict"`, the default): the gold is right only if it scores strictly higher
  than every other distinct candidate, so a collapsed model (all embeddings equal) scores 0, not 100. The MMEB
  reference code takes `argmax`, which with exact ties picks the first index, i.e. the gold; `ties="first"`
  reproduces that. With real models exact ties between distinct items are rare and both give the same numbers.
- **Instructions.** MMEB texts already carry their instructions; a per-dataset query or candidate instruction can be
  added (passed to `embedder.encode(..., instruction=...)`).
- **Reranking.** An optional reranker (anything with `rank(query, candidates) -> list[int]`, a permutation, best
  first) reorders the embedder's top `rerank_top_k` candidates of every query; both the embedding-only and the
  reranked scores are reported. With `rerank_interpolation=w` the top candidates are ordered instead by the
  embedding similarity and the reranker's pointwise `P(Yes)` together (`reranker.score(query, candidates)`; see
  [`~unime_hf.rerank.interpolate_scores`]).

Per-query predictions hold `dataset, row, prediction` (the predicted candidate index), `gold_rank` (1-based rank of
the gold), `correct`, `score` (similarity of the predicted candidate) and `gold_score`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from unime_hf.evaluation.retrieval import Item, Ties, check_ties, embed_unique, to_embedder_item

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

CLASSIFICATION, VQA, RETRIEVAL, GROUNDING = "classification", "vqa", "retrieval", "grounding"
META_TASKS: tuple[str, ...] = (CLASSIFICATION, VQA, RETRIEVAL, GROUNDING)
IND, OOD = "ind", "ood"

#: The 36 MMEB datasets (names as in the MMEB-eval release) -> (meta-task, split). IND = the 20 training datasets.
MMEB_DATASETS: dict[str, tuple[str, str]] = {
    # classification: 5 IND + 5 OOD
    "ImageNet-1K": (CLASSIFICATION, IND),
    "N24News": (CLASSIFICATION, IND),
    "HatefulMemes": (CLASSIFICATION, IND),
    "VOC2007": (CLASSIFICATION, IND),
    "SUN397": (CLASSIFICATION, IND),
    "Place365": (CLASSIFICATION, OOD),
    "ImageNet-A": (CLASSIFICATION, OOD),
    "ImageNet-R": (CLASSIFICATION, OOD),
    "ObjectNet": (CLASSIFICATION, OOD),
    "Country211": (CLASSIFICATION, OOD),
    # VQA: 6 IND + 4 OOD
    "OK-VQA": (VQA, IND),
    "A-OKVQA": (VQA, IND),
    "DocVQA": (VQA, IND),
    "InfographicsVQA": (VQA, IND),
    "ChartQA": (VQA, IND),
    "Visual7W": (VQA, IND),
    "ScienceQA": (VQA, OOD),
    "VizWiz": (VQA, OOD),
    "GQA": (VQA, OOD),
    "TextVQA": (VQA, OOD),
    # retrieval: 8 IND + 4 OOD
    "VisDial": (RETRIEVAL, IND),
    "CIRR": (RETRIEVAL, IND),
    "VisualNews_t2i": (RETRIEVAL, IND),
    "VisualNews_i2t": (RETRIEVAL, IND),
    "MSCOCO_t2i": (RETRIEVAL, IND),
    "MSCOCO_i2t": (RETRIEVAL, IND),
    "NIGHTS": (RETRIEVAL, IND),
    "WebQA": (RETRIEVAL, IND),
    "OVEN": (RETRIEVAL, OOD),
    "FashionIQ": (RETRIEVAL, OOD),
    "EDIS": (RETRIEVAL, OOD),
    "Wiki-SS-NQ": (RETRIEVAL, OOD),
    # grounding: 1 IND + 3 OOD
    "MSCOCO": (GROUNDING, IND),
    "RefCOCO": (GROUNDING, OOD),
    "RefCOCO-Matching": (GROUNDING, OOD),
    "Visual7W-Pointing": (GROUNDING, OOD),
}

METRIC = "precision@1"


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_NORMALISED = {_normalise(name): info for name, info in MMEB_DATASETS.items()}


def mmeb_dataset_info(name: str) -> tuple[str, str] | None:
    """The (meta-task, split) of an MMEB dataset, matching names case-insensitively and ignoring `-`, `_` and spaces
    (`"imagenet_1k"` is `"ImageNet-1K"`); `None` for a name MMEB does not have.

    Example:

    ```python
    >>> mmeb_dataset_info("visualnews-t2i")
    ('retrieval', 'ind')
    ```
    """
    return _BY_NORMALISED.get(_normalise(name))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def resolve_dataset_info(
    names: Iterable[str],
    meta_tasks: Mapping[str, str] | None = None,
    splits: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str | None]]:
    """Meta-task and split of every dataset: the given mappings first, then [`MMEB_DATASETS`], else `None`."""
    resolved = {}
    for name in names:
        known = mmeb_dataset_info(name)
        meta_task = (meta_tasks or {}).get(name) or (known[0] if known else None)
        split = (splits or {}).get(name) or (known[1] if known else None)
        if split is not None and split.lower() not in (IND, OOD):
            raise ValueError(f"dataset {name!r}: split must be 'ind' or 'ood', got {split!r}")
        resolved[name] = {"meta_task": meta_task, "split": split.lower() if split else None}
    return resolved


def aggregate_mmeb(
    scores: Mapping[str, float],
    meta_tasks: Mapping[str, str] | None = None,
    splits: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Aggregate per-dataset Precision@1 the MMEB way: every aggregate is the mean over its datasets.

    Args:
        scores (`Mapping[str, float]`):
            Dataset name -> Precision@1.
        meta_tasks (`Mapping[str, str]`, *optional*):
            Dataset name -> meta-task, for datasets outside [`MMEB_DATASETS`] (or to override it). Datasets with no
            meta-task count in `overall` only.
        splits (`Mapping[str, str]`, *optional*):
            Dataset name -> `"ind"` or `"ood"`, likewise.

    Returns:
        `dict`: `{"meta_tasks": {task: mean}, "ind": mean | None, "ood": mean | None, "overall": mean,
        "num_datasets": {...}}`; meta-tasks in MMEB order, then others alphabetically.

    Example:

    ```python
    >>> scores = aggregate_mmeb({"ImageNet-1K": 0.5, "Place365": 0.25, "OK-VQA": 1.0})
    >>> scores["meta_tasks"], scores["ind"], scores["ood"]
    ({'classification': 0.375, 'vqa': 1.0}, 0.75, 0.25)
    ```
    """
    if not scores:
        raise ValueError("no dataset scores to aggregate")
    info = resolve_dataset_info(scores, meta_tasks, splits)
    by_task: dict[str, list[float]] = {}
    by_split: dict[str, list[float]] = {IND: [], OOD: []}
    for name, score in scores.items():
        if info[name]["meta_task"]:
            by_task.setdefault(info[name]["meta_task"], []).append(score)
        if info[name]["split"]:
            by_split[info[name]["split"]].append(score)
    order = [t for t in META_TASKS if t in by_task] + sorted(t for t in by_task if t not in META_TASKS)
    return {
        "meta_tasks": {task: _mean(by_task[task]) for task in order},
        IND: _mean(by_split[IND]),
        OOD: _mean(by_split[OOD]),
        "overall": _mean(list(scores.values())),
        "num_datasets": {
            **{task: len(by_task[task]) for task in order},
            IND: len(by_split[IND]),
            OOD: len(by_split[OOD]),
            "overall": len(scores),
        },
    }


# ------------------------------------------------------------------------------------------------------- ranking
def rank_candidates(scores: Any, same_as_gold: Any = None, ties: Ties = "strict") -> list[int]:
    """Order the candidates of one query, best first; the gold is index 0.

    Candidates are sorted by descending score. Among equal scores, `ties="strict"` puts candidates that are not the
    gold (nor identical to it) first, then orders by index; `ties="first"` orders by index only (`argmax` behaviour).

    Args:
        scores (`torch.Tensor` or sequence of `float`):
            The query's similarity to each candidate.
        same_as_gold (`torch.Tensor` or sequence of `bool`, *optional*):
            Which candidates are the gold item (index 0 always is); defaults to index 0 only.
        ties (`str`, *optional*, defaults to `"strict"`):
            Tie policy.

    Example:

    ```python
    >>> rank_candidates([0.5, 0.5, 0.1])
    [1, 0, 2]
    >>> rank_candidates([0.5, 0.5, 0.1], ties="first")
    [0, 1, 2]
    ```
    """
    import torch

    check_ties(ties)
    scores = torch.as_tensor(scores, dtype=torch.float32).flatten()
    order = torch.arange(len(scores))
    if ties == "strict":
        gold = torch.zeros(len(scores), dtype=torch.long)
        if same_as_gold is not None:
            gold = torch.as_tensor(same_as_gold, dtype=torch.bool).flatten().long()
        gold[0] = 1
        # least significant key first: index (already), then gold-last among ties, then score
        order = order[torch.sort(gold[order], stable=True).indices]
    order = order[torch.sort(scores[order], descending=True, stable=True).indices]
    return order.tolist()


def gold_rank(order: Sequence[int], same_as_gold: Sequence[bool] | None = None) -> int:
    """1-based position of the first gold (or gold-identical) candidate in `order`."""
    for position, index in enumerate(order):
        if index == 0 or (same_as_gold is not None and same_as_gold[index]):
            return position + 1
    raise ValueError("the order does not contain the gold candidate (index 0)")


def precision_at_1(scores: Sequence[Any], same_as_gold: Sequence[Any] | None = None, ties: Ties = "strict") -> float:
    """Share of queries whose top candidate is the gold (index 0), one score vector per query.

    Example:

    ```python
    >>> precision_at_1([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    0.3333333333333333
    >>> precision_at_1([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], ties="first")
    0.6666666666666666
    ```
    """
    if not scores:
        raise ValueError("no queries")
    hits = 0
    for row, row_scores in enumerate(scores):
        gold = same_as_gold[row] if same_as_gold is not None else None
        hits += gold_rank(rank_candidates(row_scores, gold, ties), gold) == 1
    return hits / len(scores)


@runtime_checkable
class Reranker(Protocol):
    """Reorders a query's candidates: `rank(query, candidates)` returns a permutation of `range(len(candidates))`,
    best first. Items are `{"text": str | None, "image": str | None}` dicts."""

    def rank(self, query: dict[str, Any], candidates: list[dict[str, Any]]) -> list[int]: ...


def _check_permutation(permutation: Any, size: int, where: str) -> list[int]:
    try:
        permutation = [int(i) for i in permutation]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: reranker returned {permutation!r}, not a list of indices") from None
    if sorted(permutation) != list(range(size)):
        raise ValueError(f"{where}: reranker returned {permutation}, not a permutation of range({size})")
    return permutation


# -------------------------------------------------------------------------------------------------------- runner
@dataclass
class MMEBResult:
    """Scores and per-query predictions of an MMEB run.

    Attributes:
        metrics (`dict`): `{"metric": "precision@1", "datasets": {name: {...}}, "meta_tasks": {...}, "ind", "ood",
            "overall", "num_datasets", "num_queries", "encoded_items"}`; with a reranker also `"embedding_only"` (the
            same aggregates before reranking) and `"rerank_top_k"`.
        predictions (`list[dict]`): one record per query row.
    """

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(repr=False)


def _as_named_datasets(data: Any) -> dict[str, Any]:
    """Dataset name -> canonical eval rows, from a mapping, a sequence of datasets or one dataset with `dataset`."""
    if isinstance(data, Mapping):
        return dict(data)
    named: dict[str, Any] = {}
    for part in [data] if hasattr(data, "column_names") else data:
        if "dataset" not in part.column_names:
            raise ValueError("an eval dataset without a 'dataset' column must be passed as a {name: dataset} mapping")
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(part["dataset"]):
            groups.setdefault(name, []).append(index)
        for name, rows in groups.items():
            if name in named:
                raise ValueError(f"dataset {name!r} appears in two of the given datasets")
            named[name] = part if len(rows) == len(part) else part.select(rows)
    return named


def _per_dataset(option: Mapping[str, str] | str | None, name: str) -> str | None:
    if option is None or isinstance(option, str):
        return option
    return option.get(name, option.get("*"))


def evaluate_mmeb(
    data: Mapping[str, datasets.Dataset] | datasets.Dataset | Sequence[datasets.Dataset],
    embedder: Any,
    *,
    batch_size: int = 16,
    query_instructions: Mapping[str, str] | str | None = None,
    candidate_instructions: Mapping[str, str] | str | None = None,
    meta_tasks: Mapping[str, str] | None = None,
    splits: Mapping[str, str] | None = None,
    ties: Ties = "strict",
    reranker: Reranker | None = None,
    rerank_top_k: int = 10,
    rerank_mode: str | None = None,
    rerank_interpolation: float | None = None,
    max_queries: int | None = None,
    show_progress: bool = False,
    encode_kwargs: Mapping[str, Any] | None = None,
) -> MMEBResult:
    """Precision@1 of an embedder on MMEB-format datasets, per dataset, meta-task, IND/OOD and overall.

    Args:
        data (`dict[str, datasets.Dataset]`, `datasets.Dataset` or list of them):
            Canonical eval rows (`query_text, query_image, candidate_texts, candidate_images`, gold at index 0; as
            [`~unime_hf.data.read_mmeb_eval`] returns them) by dataset name, or datasets with a `dataset` column.
        embedder:
            A [`~unime_hf.UniMEEmbeddingModel`], a `SentenceTransformer`, or any object with
            `encode(items, batch_size=...)` returning `[n, dim]`.
        batch_size (`int`, *optional*, defaults to 16):
            Items per forward pass.
        query_instructions, candidate_instructions (`dict[str, str]` or `str`, *optional*):
            Instruction for the queries (candidates) of each dataset (key `"*"`: every other dataset), or one for all.
        meta_tasks, splits (`dict[str, str]`, *optional*):
            Meta-task and IND/OOD split of datasets outside [`MMEB_DATASETS`] (see [`aggregate_mmeb`]).
        ties (`str`, *optional*, defaults to `"strict"`):
            `"strict"`: the gold must beat every other distinct candidate; `"first"`: MMEB's `argmax` (ties go to the
            lowest index, the gold).
        reranker ([`Reranker`], *optional*):
            Reorders each query's top `rerank_top_k` candidates.
        rerank_top_k (`int`, *optional*, defaults to 10):
            Candidates handed to the reranker.
        rerank_mode (`str`, *optional*):
            Passed as `mode=` to `reranker.rank` ([`~unime_hf.rerank.UniMEReranker`]: `"listwise"` or
            `"pointwise"`); `None` calls `rank(query, candidates)`.
        rerank_interpolation (`float`, *optional*):
            Order the top candidates by `z(similarity) + w * z(log-odds of P(Yes))` (standardised over the
            candidates; [`~unime_hf.rerank.interpolate_scores`]) instead of the reranker's order alone; needs a
            reranker with `score(query, candidates)`. `None` (the default, UniME-V2): the reranker alone.
        max_queries (`int`, *optional*):
            Use only the first `max_queries` rows of each dataset (smoke runs).
        show_progress (`bool`, *optional*, defaults to `False`):
            Progress bars over datasets, encoding and reranking.
        encode_kwargs (`dict`, *optional*):
            Extra keyword arguments for every `embedder.encode` call (e.g. `{"processor": processor}`).

    Returns:
        [`MMEBResult`].

    Example:

    ```python
    >>> from unime_hf.data import read_mmeb_eval
    >>> from unime_hf.evaluation.mmeb import evaluate_mmeb
    >>> sets = {name: read_mmeb_eval(f"MMEB-eval/{name}.parquet", "eval_images", name) for name in ("VOC2007", "GQA")}
    >>> result = evaluate_mmeb(sets, model, batch_size=32)
    >>> result.metrics["overall"], result.metrics["meta_tasks"]
    ```
    """
    check_ties(ties)
    if rerank_top_k < 1:
        raise ValueError(f"rerank_top_k must be >= 1, got {rerank_top_k}")
    if reranker is not None and not callable(getattr(reranker, "rank", None)):
        raise TypeError(f"{type(reranker).__name__} has no rank(query, candidates) method")
    if rerank_interpolation is not None:
        from unime_hf.rerank.interpolation import check_interpolation_weight

        check_interpolation_weight(rerank_interpolation)  # before any encoding
        if reranker is None or not callable(getattr(reranker, "score", None)):
            raise TypeError(
                "rerank_interpolation needs a reranker with a score(query, candidates) method (pointwise P(Yes)); "
                f"got {type(reranker).__name__}"
            )
    named = _as_named_datasets(data)
    if not named:
        raise ValueError("no MMEB datasets to evaluate")
    info = resolve_dataset_info(named, meta_tasks, splits)  # bad mappings fail before any encoding
    per_dataset: dict[str, dict[str, Any]] = {}
    predictions: list[dict[str, Any]] = []
    encoded_total = 0
    names = list(named)
    if show_progress and len(names) > 1:
        from tqdm.auto import tqdm

        names = tqdm(names, desc="MMEB datasets", unit="dataset")
    for name in names:
        dataset = named[name]
        if max_queries is not None:
            dataset = dataset.select(range(min(max_queries, len(dataset))))
        scores, rows, encoded = _evaluate_dataset(
            name,
            dataset,
            embedder,
            batch_size=batch_size,
            query_instruction=_per_dataset(query_instructions, name),
            candidate_instruction=_per_dataset(candidate_instructions, name),
            ties=ties,
            reranker=reranker,
            rerank_top_k=rerank_top_k,
            rerank_mode=rerank_mode,
            rerank_interpolation=rerank_interpolation,
            show_progress=show_progress,
            encode_kwargs=encode_kwargs,
        )
        per_dataset[name] = scores
        predictions.extend(rows)
        encoded_total += encoded
        logger.info("MMEB %s: P@1 %.2f over %d queries", name, 100 * scores[METRIC], scores["num_queries"])

    for name, scores in per_dataset.items():
        scores.update(info[name])
    metrics: dict[str, Any] = {
        "metric": METRIC,
        "ties": ties,
        "datasets": per_dataset,
        **aggregate_mmeb({n: s[METRIC] for n, s in per_dataset.items()}, meta_tasks, splits),
        "num_queries": sum(s["num_queries"] for s in per_dataset.values()),
        "encoded_items": encoded_total,
    }
    if reranker is not None:
        before = {n: s[f"{METRIC}_embedding"] for n, s in per_dataset.items()}
        metrics["embedding_only"] = aggregate_mmeb(before, meta_tasks, splits)
        metrics["rerank_top_k"] = rerank_top_k
        metrics["rerank_interpolation"] = rerank_interpolation
    return MMEBResult(metrics, predictions)


def _row_items(dataset: datasets.Dataset) -> tuple[list[Item], list[list[Item]]]:
    columns = ("query_text", "query_image", "candidate_texts", "candidate_images")
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"eval dataset lacks columns {missing}; read MMEB files with unime_hf.data.read_mmeb_eval "
            "(columns query_text, query_image, candidate_texts, candidate_images)"
        )
    queries = list(zip(dataset["query_text"], dataset["query_image"]))
    candidates = []
    for row, (texts, images) in enumerate(zip(dataset["candidate_texts"], dataset["candidate_images"])):
        if len(texts) != len(images) or not texts:
            raise ValueError(f"row {row}: {len(texts)} candidate texts and {len(images)} candidate images")
        candidates.append(list(zip(texts, images)))
    return queries, candidates


def _evaluate_dataset(
    name: str,
    dataset: datasets.Dataset,
    embedder: Any,
    *,
    batch_size: int,
    query_instruction: str | None,
    candidate_instruction: str | None,
    ties: Ties,
    reranker: Reranker | None,
    rerank_top_k: int,
    rerank_mode: str | None,
    rerank_interpolation: float | None,
    show_progress: bool,
    encode_kwargs: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    if len(dataset) == 0:
        raise ValueError(f"MMEB dataset {name!r} has no rows")
    queries, candidates = _row_items(dataset)
    options = {"batch_size": batch_size, "show_progress": show_progress, "encode_kwargs": encode_kwargs}
    query_embeddings, query_index, n_queries = embed_unique(
        embedder, queries, instruction=query_instruction, **options
    )
    flat = [item for row in candidates for item in row]
    candidate_embeddings, flat_index, n_candidates = embed_unique(
        embedder, flat, instruction=candidate_instruction, **options
    )
    logger.debug(
        "%s: %d distinct of %d queries, %d distinct of %d candidates",
        name,
        n_queries,
        len(queries),
        n_candidates,
        len(flat),
    )

    rows = range(len(queries))
    if show_progress and reranker is not None:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc=f"Reranking {name}", unit="query")
    records, hits, hits_embedding, offset = [], 0, 0, 0
    for row in rows:
        size = len(candidates[row])
        ids = flat_index[offset : offset + size]
        offset += size
        scores = candidate_embeddings[ids] @ query_embeddings[query_index[row]]
        same_as_gold = ids == ids[0]
        order = rank_candidates(scores, same_as_gold, ties)
        record = {"dataset": name, "row": row}
        if reranker is not None:
            record["embedding_prediction"] = order[0]
            record["embedding_gold_rank"] = gold_rank(order, same_as_gold.tolist())
            hits_embedding += record["embedding_gold_rank"] == 1
            order = _rerank(
                reranker,
                queries[row],
                candidates[row],
                order,
                rerank_top_k,
                f"{name} row {row}",
                similarities=scores,
                mode=rerank_mode,
                interpolation=rerank_interpolation,
            )
        rank = gold_rank(order, same_as_gold.tolist())
        hits += rank == 1
        record.update(
            {
                "prediction": order[0],
                "gold_rank": rank,
                "correct": rank == 1,
                "score": float(scores[order[0]]),
                "gold_score": float(scores[0]),
                "num_candidates": size,
            }
        )
        records.append(record)
    result = {
        METRIC: hits / len(queries),
        "num_queries": len(queries),
        "num_candidates": len(flat),
        "encoded_queries": n_queries,
        "encoded_candidates": n_candidates,
    }
    if reranker is not None:
        result[f"{METRIC}_embedding"] = hits_embedding / len(queries)
    return result, records, n_queries + n_candidates


def _rerank(
    reranker: Reranker,
    query: Item,
    candidates: list[Item],
    order: list[int],
    top_k: int,
    where: str,
    similarities: Sequence[float],
    mode: str | None = None,
    interpolation: float | None = None,
) -> list[int]:
    top = order[:top_k]
    items = [to_embedder_item(candidates[i]) for i in top]
    if interpolation is None:
        options = {} if mode is None else {"mode": mode}
        permutation = reranker.rank(to_embedder_item(query), items, **options)
    else:
        from unime_hf.rerank.interpolation import interpolated_order

        probabilities = [float(p) for p in reranker.score(to_embedder_item(query), items)]
        if len(probabilities) != len(top):
            raise ValueError(f"{where}: reranker returned {len(probabilities)} scores for {len(top)} candidates")
        try:
            permutation = interpolated_order([float(similarities[i]) for i in top], probabilities, interpolation)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    permutation = _check_permutation(permutation, len(top), where)
    return [top[i] for i in permutation] + order[top_k:]


# --------------------------------------------------------------------------------------------------------- files
EVAL_EXTENSIONS = (".parquet", ".jsonl", ".json")


def discover_mmeb_files(data_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Dataset name -> its files in an MMEB-eval folder.

    Two layouts are recognised: files `<name>.parquet|.jsonl|.json` directly in `data_dir`, and the Hub snapshot layout
    `<name>/<split>-*.parquet` (or `.jsonl`), one sub-folder per dataset (all data files in it are read, in order).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such MMEB data folder")
    found: dict[str, list[Path]] = {}
    for entry in sorted(data_dir.iterdir()):
        if entry.is_file() and entry.suffix.lower() in EVAL_EXTENSIONS:
            found[entry.stem] = [entry]
        elif entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in EVAL_EXTENSIONS)
            if files:
                found[entry.name] = files
    if not found:
        raise FileNotFoundError(f"{data_dir}: no .parquet, .jsonl or .json files (or dataset sub-folders with them)")
    return found


def read_dataset_info(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a dataset-info file: JSON or YAML mapping dataset name -> `{"file", "meta_task", "split"}` (each optional;
    `file` relative to the info file). A shapes-world `world.json` works as it is (its `eval_sets` entry is used)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, Mapping) and isinstance(data.get("eval_sets"), Mapping):
        data = data["eval_sets"]
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of dataset name -> {{file, meta_task, split}}")
    info = {}
    for name, entry in data.items():
        entry = dict(entry)
        if entry.get("file"):
            entry["file"] = str((path.parent / entry["file"]).absolute())
        info[str(name)] = entry
    return info


def mmeb_sources(
    data_dir: str | os.PathLike | None = None,
    *,
    files: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]] | None = None,
    dataset_info: Mapping[str, Mapping[str, Any]] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, list[Path]]:
    """Dataset name -> data files: those found in `data_dir` ([`discover_mmeb_files`]), then the `file` entries of
    `dataset_info`, then `files` (later ones replace earlier ones of the same name); `names` keeps only these, in
    this order."""
    sources: dict[str, list[Path]] = discover_mmeb_files(data_dir) if data_dir is not None else {}
    for name, entry in (dataset_info or {}).items():
        if entry.get("file"):
            sources[name] = [Path(entry["file"])]
    for name, value in (files or {}).items():
        sources[name] = [Path(v) for v in ([value] if isinstance(value, str | os.PathLike) else value)]
    if names is not None:
        unknown = [n for n in names if n not in sources]
        if unknown:
            raise ValueError(f"datasets {unknown} not found; available: {sorted(sources)}")
        sources = {n: sources[n] for n in names}
    if not sources:
        raise ValueError("no MMEB datasets: give data_dir, files or dataset_info")
    return sources


def load_mmeb_datasets(
    data_dir: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    *,
    files: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]] | None = None,
    dataset_info: Mapping[str, Mapping[str, Any]] | None = None,
    names: Sequence[str] | None = None,
    check_images: bool = True,
) -> dict[str, datasets.Dataset]:
    """Read MMEB-eval files into canonical eval datasets, by name.

    Args:
        data_dir (`str`, *optional*):
            A folder of MMEB-eval sets (see [`discover_mmeb_files`]).
        image_root (`str`, *optional*):
            The folder image paths in the files are relative to (MMEB: the unzipped `eval_images` folder).
        files (`dict`, *optional*):
            Dataset name -> file (or files), added to (or replacing) those found in `data_dir`.
        dataset_info (`dict`, *optional*):
            Dataset name -> `{"file": ...}` entries (see [`read_dataset_info`]), also added.
        names (`Sequence[str]`, *optional*):
            Keep only these datasets (in this order).
        check_images (`bool`, *optional*, defaults to `True`):
            Fail on an image path that names no file.

    Example:

    ```python
    >>> sets = load_mmeb_datasets("/data/MMEB-eval", "/data/MMEB-eval/eval_images", names=["VOC2007", "GQA"])
    >>> sets["VOC2007"].column_names
    ['dataset', 'query_text', 'query_image', 'candidate_texts', 'candidate_images']
    ```
    """
    import datasets as hf_datasets

    from unime_hf.data.formats import read_mmeb_eval

    sources = mmeb_sources(data_dir, files=files, dataset_info=dataset_info, names=names)
    loaded = {}
    for name, paths in sources.items():
        parts = [read_mmeb_eval(p, image_root, name, check_images=check_images) for p in paths]
        loaded[name] = parts[0] if len(parts) == 1 else hf_datasets.concatenate_datasets(parts)
    return loaded
