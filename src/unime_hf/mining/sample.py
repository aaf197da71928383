"""Stage 3 of MLLM-as-a-Judge mining: false-negative filtering and cyclic sampling of hard negatives.

Given each query's retrieved candidates (rank order), the judge's P(Yes) score for each candidate and for the
positive, this stage picks `num_negatives` hard negatives per query exactly as METHOD.md section 2, step 3.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from unime_hf.mining.shards import progress_bar

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

HARD_NEGATIVE_IDS = "hard_negative_ids"
HARD_NEGATIVE_SCORES = "hard_negative_scores"
FALLBACK_SCORE = 1.0
#: Default false-negative margin: a candidate the judge scores above `pos_score - beta` is not a negative.
DEFAULT_BETA = 0.01
_BATCH_SIZE = 1000


@dataclass
class SamplingStats:
    """What [`sample_hard_negatives`] did.

    Args:
        queries (`int`): Queries processed.
        false_negatives_dropped (`int`): Candidates dropped as false negatives, over all queries.
        queries_with_false_negatives (`int`): Queries that lost at least one candidate to the filter.
        queries_fallback (`int`): Queries with no candidate left after the filter, filled with random candidates
            scored 1.0.
        queries_repeated (`int`): Queries whose selection had fewer than `num_negatives` items and was repeated
            cyclically to fill.
    """

    queries: int = 0
    false_negatives_dropped: int = 0
    queries_with_false_negatives: int = 0
    queries_fallback: int = 0
    queries_repeated: int = 0

    def __str__(self) -> str:
        def share(count: int) -> str:
            return f"{100 * count / self.queries:.1f}%" if self.queries else "n/a"

        return (
            f"Hard-negative sampling over {self.queries} queries:\n"
            f"  false negatives dropped: {self.false_negatives_dropped} "
            f"(in {self.queries_with_false_negatives} queries, {share(self.queries_with_false_negatives)})\n"
            f"  filled by cyclic repetition: {self.queries_repeated} queries ({share(self.queries_repeated)})\n"
            f"  random fallback (score {FALLBACK_SCORE}): {self.queries_fallback} queries "
            f"({share(self.queries_fallback)})"
        )


def select_hard_negatives(
    candidate_scores: list[float],
    pos_score: float,
    beta: float = DEFAULT_BETA,
    num_negatives: int = 10,
    interval: int = 5,
    rng: np.random.Generator | None = None,
) -> tuple[list[int], list[float], str, int]:
    """Pick hard negatives for one query; returns `(positions, scores, branch, dropped)`.

    `positions` index the query's candidate list (rank order); `branch` is `"interval"`, `"repeated"` or
    `"fallback"`; `dropped` counts the false negatives removed. See [`sample_hard_negatives`] for the rules.
    `rng` is needed only for the fallback branch.
    """
    kept = [position for position, score in enumerate(candidate_scores) if not score > pos_score - beta]
    dropped = len(candidate_scores) - len(kept)
    if not kept:
        if rng is None:
            raise ValueError("Every candidate is a false negative and no rng was given for the random fallback.")
        n = len(candidate_scores)
        positions = rng.choice(n, size=num_negatives, replace=n < num_negatives).tolist()
        return positions, [FALLBACK_SCORE] * num_negatives, "fallback", dropped
    selected = kept[::interval]
    branch = "interval"
    if len(selected) < num_negatives:
        selected = [selected[i % len(selected)] for i in range(num_negatives)]
        branch = "repeated"
    else:
        selected = selected[:num_negatives]
    return selected, [float(candidate_scores[p]) for p in selected], branch, dropped


def sample_hard_negatives(
    dataset: Dataset,
    beta: float = DEFAULT_BETA,
    num_negatives: int = 10,
    interval: int = 5,
    seed: int = 0,
    show_progress: bool = True,
) -> tuple[Dataset, SamplingStats]:
    """Filter false negatives and sample `num_negatives` hard negatives per query (UniME-V2, METHOD.md section 2).

    For each row, with candidates in retrieval rank order:

    1. **False-negative filter.** A candidate whose judge score is `> pos_score - beta` is dropped.
    2. **Interval sampling.** From the remaining candidates, still in rank order, the ones at positions
       `0, interval, 2 * interval, ...` *of the remaining list* are taken (with `interval=5`, 50 remaining
       candidates give positions 0, 5, ..., 45 of that list, i.e. 10 negatives; ranks are counted after the
       filter, not in the original retrieval list). If more than `num_negatives` are taken, the first
       `num_negatives` (best ranked) are kept.
    3. **Cyclic fill.** If fewer than `num_negatives` were taken (but at least one), they are repeated in order,
       `A, B, C, A, B, C, ...`, up to `num_negatives`.
    4. **Fallback.** If the filter left nothing, `num_negatives` candidates are drawn at random from the whole
       retrieved list, each with score 1.0: without replacement when the list has at least `num_negatives` items,
       with replacement otherwise. The draw uses `numpy.random.default_rng([seed, row_index])`, so it is
       reproducible and independent of the order or sharding in which rows are processed.

    Args:
        dataset (`datasets.Dataset`):
            Rows with `candidate_ids` (`list[str]`, rank order), `candidate_scores` (`list[float]`, judge P(Yes)
            per candidate) and `pos_score` (`float`, judge P(Yes) of the positive). `candidate_similarities`, when
            present, must have the same length as `candidate_ids`.
        beta (`float`, *optional*, defaults to 0.01):
            False-negative margin.
        num_negatives (`int`, *optional*, defaults to 10):
            Hard negatives per query.
        interval (`int`, *optional*, defaults to 5):
            Sampling step over the remaining candidates ("cyclical sampling with five-step intervals").
        seed (`int`, *optional*, defaults to 0):
            Seed of the random fallback.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `tuple[datasets.Dataset, SamplingStats]`: the dataset with `hard_negative_ids` (`list[str]`) and
        `hard_negative_scores` (`list[float]`) added, and counts of what each branch did.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> rows = Dataset.from_dict({"query_id": ["q0"], "candidate_ids": [["a", "b", "c"]],
    ...                           "candidate_scores": [[0.95, 0.2, 0.4]], "pos_score": [0.9]})
    >>> mined, stats = sample_hard_negatives(rows, num_negatives=4, interval=1)
    >>> mined[0]["hard_negative_ids"]
    ['b', 'c', 'b', 'c']
    >>> stats.false_negatives_dropped
    1
    ```
    """
    _validate_options(beta, num_negatives, interval)
    required = ["candidate_ids", "candidate_scores", "pos_score"]
    missing = [column for column in required if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset lacks column(s) {missing}; it has {dataset.column_names}. Run retrieval and the judge first."
        )
    optional = [c for c in ("query_id", "candidate_similarities") if c in dataset.column_names]

    stats = SamplingStats()
    all_ids: list[list[str]] = []
    all_scores: list[list[float]] = []
    view = dataset.select_columns(required + optional)
    with progress_bar(len(dataset), "Sampling hard negatives", show_progress, unit="query") as bar:
        for batch_start in range(0, len(dataset), _BATCH_SIZE):
            batch = view[batch_start : batch_start + _BATCH_SIZE]
            for offset, (ids, scores, pos_score) in enumerate(
                zip(batch["candidate_ids"], batch["candidate_scores"], batch["pos_score"])
            ):
                row = batch_start + offset
                where = _where(row, batch, offset)
                _validate_row(where, ids, scores, pos_score, batch, offset)
                rng = np.random.default_rng([seed, row])
                positions, chosen_scores, branch, dropped = select_hard_negatives(
                    scores, pos_score, beta, num_negatives, interval, rng
                )
                all_ids.append([ids[p] for p in positions])
                all_scores.append(chosen_scores)
                stats.queries += 1
                stats.false_negatives_dropped += dropped
                stats.queries_with_false_negatives += dropped > 0
                stats.queries_repeated += branch == "repeated"
                stats.queries_fallback += branch == "fallback"
            bar.update(len(batch["pos_score"]))
    logger.info("%s", stats)

    out = dataset
    for column in (HARD_NEGATIVE_IDS, HARD_NEGATIVE_SCORES):
        if column in out.column_names:
            logger.warning("Replacing the existing %r column.", column)
            out = out.remove_columns(column)
    from datasets import List, Value

    out = out.add_column(HARD_NEGATIVE_IDS, all_ids, feature=List(Value("string")))
    return out.add_column(HARD_NEGATIVE_SCORES, all_scores, feature=List(Value("float64"))), stats


def _validate_options(beta: float, num_negatives: int, interval: int) -> None:
    if not math.isfinite(beta):
        raise ValueError(f"beta must be a finite number, got {beta}.")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}.")
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}.")


def _where(row: int, batch: dict[str, list[Any]], offset: int) -> str:
    if "query_id" in batch:
        return f"row {row} (query_id {batch['query_id'][offset]!r})"
    return f"row {row}"


def _validate_row(
    where: str, ids: list[str] | None, scores: list[float] | None, pos_score: float | None, batch: dict, offset: int
) -> None:
    if not ids:
        raise ValueError(
            f"{where}: candidate_ids is empty, so no hard negative can be sampled. Drop the row, or retrieve with a "
            "larger top_k or a higher similarity_threshold."
        )
    if scores is None or len(scores) != len(ids):
        raise ValueError(
            f"{where}: candidate_ids has {len(ids)} entries but candidate_scores has "
            f"{'none' if scores is None else len(scores)}; the judge must score every candidate."
        )
    similarities = batch.get("candidate_similarities")
    if similarities is not None and (similarities[offset] is None or len(similarities[offset]) != len(ids)):
        got = "none" if similarities[offset] is None else len(similarities[offset])
        raise ValueError(f"{where}: candidate_ids has {len(ids)} entries but candidate_similarities has {got}.")
    if pos_score is None or not math.isfinite(pos_score):
        raise ValueError(f"{where}: pos_score is {pos_score!r}; it must be a finite number.")
    for position, score in enumerate(scores):
        if score is None or not math.isfinite(score):
            raise ValueError(f"{where}: candidate_scores[{position}] is {score!r}; scores must be finite numbers.")
