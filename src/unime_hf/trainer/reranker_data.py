# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Reranker training rows (METHOD.md §4): mined data -> TRL prompt-completion rows in the conversational vision format.

Each mined query gives

- **pairwise** rows, with the judge prompt of [`~unime_hf.scoring.JUDGE_PROMPT`]: (query, positive) -> `Yes` and
  (query, hardest negative = highest judge score among the hard negatives) -> `No`;
- **listwise** rows, with [`LISTWISE_PROMPT`]: the top `list_size` hard negatives by judge score, in a random order,
  with the positive inserted at a uniformly random position `k` in `1..n+1` (`n` = negatives used) -> `(k)`;
- optionally (not in the paper) **random-negative** pairwise rows: (query, positive) -> `Yes` and (query, the positive
  of another mined query, drawn at random) -> `No`; easy negatives a small reranker learns to match with before the
  hard ones (measured on the shapes world in the README).

Query and candidate texts always stay in the prompt (the authors' code lost them through a key mismatch); images are
`{"type": "image"}` parts at the item's `<|image_1|>` placeholder, or before its text. A row is

```python
{
    "prompt": [{"role": "user", "content": [{"type": "text", "text": "I will ... Query:"}, {"type": "image"}, ...]}],
    "completion": [{"role": "assistant", "content": [{"type": "text", "text": "Yes"}]}],
    "images": ["/abs/query.png", "/abs/candidate.png"],   # paths, in prompt order; opened by the collator
    "task": "pairwise",                                   # or "listwise"
    "query_id": "q...", "candidate_ids": ["c..."], "answer": "Yes", "target": 0,
}
```

`images` holds paths so the dataset stays small and hashable; [`~unime_hf.trainer.reranker_trainer.RerankerCollator`]
opens them batch by batch (TRL's vision collator expects PIL images), or [`with_loaded_images`] does it on access for
a plain `trl.SFTTrainer`. The pairwise prompt is built by [`~unime_hf.scoring.build_pair_content`], the function the
pointwise scorer uses at inference, so training and inference prompts are the same string.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from unime_hf.data.schema import (
    CANDIDATE_IDS,
    CANDIDATE_SCORES,
    HARD_NEGATIVE_IDS,
    HARD_NEGATIVE_SCORES,
    ID,
    IMAGE,
    MINED_COLUMNS,
    POS_ID,
    POS_IMAGE,
    POS_SCORE,
    POS_TEXT,
    QUERY_ID,
    QUERY_IMAGE,
    QUERY_TEXT,
    TEXT,
    DataFormatError,
    columns_error,
    row_error,
)
from unime_hf.mining.sample import DEFAULT_BETA
from unime_hf.models.processing_unime import MMEB_IMAGE_PLACEHOLDER, ItemError
from unime_hf.scoring import JUDGE_PROMPT, PreparedPair, build_pair_content, check_prompt_template, normalize_item

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

#: The listwise prompt of UniME-V2-Reranker (METHOD.md §4); `{query}` and `{candidates}` mark where the items go.
LISTWISE_PROMPT = (
    "I will provide you with a query followed by multiple candidates in the format: (1) candidate1 (2) candidate2, "
    "etc. Each candidate is independent of the others. Evaluate each candidate against the query, and respond with "
    "the number corresponding to the candidate that best meets the requirements of the query. Query: {query}, "
    "Candidates: {candidates}."
)
QUERY_FIELD = "{query}"
CANDIDATES_FIELD = "{candidates}"
YES, NO = "Yes", "No"
PAIRWISE, LISTWISE = "pairwise", "listwise"
TASKS = (PAIRWISE, LISTWISE)


def format_listwise_answer(index: int) -> str:
    """The listwise answer for the 0-based candidate `index`: `"(k)"` with `k = index + 1`.

    Example:

    ```python
    >>> format_listwise_answer(2)
    '(3)'
    ```
    """
    if index < 0:
        raise ValueError(f"candidate index must be >= 0, got {index}.")
    return f"({index + 1})"


def check_listwise_template(prompt_template: str) -> None:
    """Raise `ValueError` unless the template holds `{query}` and then `{candidates}`, once each."""
    counts = {key: prompt_template.count(key) for key in (QUERY_FIELD, CANDIDATES_FIELD)}
    if any(count != 1 for count in counts.values()) or (
        prompt_template.index(QUERY_FIELD) > prompt_template.index(CANDIDATES_FIELD)
    ):
        raise ValueError(
            f"The listwise prompt must contain {QUERY_FIELD} once and then {CANDIDATES_FIELD} once (found {counts}); "
            f"they mark where the query and the numbered candidates go. Default: {LISTWISE_PROMPT!r}."
        )


def item_parts(item: Any, side: str, where: str) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """Content parts and images of one item, laid out as the pointwise scorer lays them out: the image at the text's
    `<|image_1|>` placeholder, or before the text when there is none.

    Raises:
        `ItemError`: for an empty item, a placeholder without an image, or more than one placeholder.
    """
    text, image = normalize_item(item, where)
    placeholders = MMEB_IMAGE_PLACEHOLDER.findall(text) if text else []
    if placeholders and image is None:
        raise ItemError(f"{where}: the text has an image placeholder like <|image_1|> but the item has no image.")
    if len(placeholders) > 1:
        raise ItemError(
            f"{where}: the text has {len(placeholders)} image placeholders; one image per item is allowed."
        )
    if image is None:
        return [{"type": "text", "text": text}], []
    before, after = MMEB_IMAGE_PLACEHOLDER.split(text, maxsplit=1) if placeholders else ("", text or "")
    return [{"type": "text", "text": before}, {"type": "image"}, {"type": "text", "text": after}], [(side, image)]


def _merge_text_parts(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text":
            if not part["text"]:
                continue
            if merged and merged[-1]["type"] == "text":
                merged[-1] = {"type": "text", "text": merged[-1]["text"] + part["text"]}
                continue
        merged.append(part)
    return merged


def build_listwise_content(
    query: Any, candidates: Sequence[Any], prompt_template: str = LISTWISE_PROMPT, index: int = 0
) -> PreparedPair:
    """The user message asking which of `candidates` best meets `query`: `(1) <candidate 1> (2) <candidate 2> ...`.

    Args:
        query, candidates:
            Items: `{"text": ..., "image": ...}` dicts (`""` / `None` = absent), strings or PIL images.
        prompt_template (`str`, *optional*, defaults to [`LISTWISE_PROMPT`]):
            The instruction, with `{query}` and `{candidates}` where the items go.
        index (`int`, *optional*, defaults to 0):
            Row number used in error messages.

    Returns:
        [`~unime_hf.scoring.PreparedPair`]: the content parts and the (unloaded) images in prompt order, sides named
        `"query"` and `"candidate <k>"`.

    Example:

    ```python
    >>> prepared = build_listwise_content("a red circle", [{"text": "", "image": "a.png"}, "a blue square"])
    >>> [part["type"] for part in prepared.content], prepared.num_images
    (['text', 'image', 'text'], 1)
    >>> prepared.content[-1]["text"]
    ' (2) a blue square.'
    ```
    """
    check_listwise_template(prompt_template)
    if not candidates:
        raise ValueError(f"row {index}: a listwise prompt needs at least one candidate.")
    head, rest = prompt_template.split(QUERY_FIELD, 1)
    middle, tail = rest.split(CANDIDATES_FIELD, 1)
    parts: list[dict[str, Any]] = [{"type": "text", "text": head}]
    query_parts, images = item_parts(query, "query", f"row {index} (query)")
    parts += [*query_parts, {"type": "text", "text": middle}]
    for position, candidate in enumerate(candidates, start=1):
        side = f"candidate {position}"
        candidate_parts, candidate_images = item_parts(candidate, side, f"row {index} ({side})")
        separator = "" if position == 1 else " "
        parts += [{"type": "text", "text": f"{separator}({position}) "}, *candidate_parts]
        images += candidate_images
    parts.append({"type": "text", "text": tail})
    return PreparedPair(_merge_text_parts(parts), images)


def _completion(answer: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _row(
    prepared: PreparedPair, answer: str, task: str, query_id: str, candidate_ids: list[str], target: int
) -> dict[str, Any]:
    # Every part carries both keys so that Arrow stores one struct type; `text` is None on image parts.
    content = [{"type": part["type"], "text": part.get("text")} for part in prepared.content]
    return {
        "prompt": [{"role": "user", "content": content}],
        "completion": _completion(answer),
        "images": [str(image) for _, image in prepared.images],
        "task": task,
        "query_id": query_id,
        "candidate_ids": candidate_ids,
        "answer": answer,
        "target": target,
    }


def reranker_features() -> datasets.Features:
    """The features of reranker rows (see the module docstring)."""
    import datasets

    string = datasets.Value("string")
    message = {"role": string, "content": datasets.List({"type": string, "text": string})}
    return datasets.Features(
        {
            "prompt": datasets.List(message),
            "completion": datasets.List(message),
            "images": datasets.List(string),
            "task": string,
            "query_id": string,
            "candidate_ids": datasets.List(string),
            "answer": string,
            "target": datasets.Value("int64"),
        }
    )


def _draw_count(rng: random.Random, ratio: float) -> int:
    """`floor(ratio)` plus one more with probability `ratio - floor(ratio)`: `ratio` on average."""
    whole = int(ratio)
    return whole + (rng.random() < ratio - whole)


def ranked_negatives(ids: Sequence[str], scores: Sequence[float], exclude: str) -> list[str]:
    """Distinct hard-negative ids sorted by judge score, highest first (ties keep the mined order); `exclude` (the
    positive's id) and repeats from the cyclic fill-up are dropped.

    Example:

    ```python
    >>> ranked_negatives(["a", "b", "a", "c"], [0.2, 0.7, 0.2, 0.7], exclude="c")
    ['b', 'a']
    ```
    """
    best: dict[str, float] = {}
    for identifier, score in zip(ids, scores):
        if identifier != exclude and identifier not in best:
            best[identifier] = float(score)
    return sorted(best, key=lambda identifier: -best[identifier])


def _check_item(source: str, row: int, column: str, item: Mapping[str, Any], prefix: str = "") -> None:
    try:
        item_parts(item, "item", "item")
    except ItemError as err:
        reason = str(err).removeprefix("item: ")
        raise row_error(source, row, column, f"{prefix}{reason} Give every item a text, an image or both.") from err


def check_row_ratios(ratios: Mapping[str, Any]) -> None:
    """Each of the rows-per-query ratios (`pairwise_ratio`, ...) is a number >= 0 and not all of them are 0."""
    for name, ratio in ratios.items():
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 0:
            raise ValueError(f"`{name}` must be a number >= 0, got {ratio!r}.")
    if not any(ratios.values()):
        raise ValueError(f"{', '.join(f'`{name}`' for name in ratios)} are all 0: no rows would be built.")


class RandomNegativePools:
    """Where the random negatives of [`build_reranker_rows`] come from: the distinct positives of the mined queries,
    per value of `group_column` (one pool when it is None), minus, for each query, its own positive and the retrieved
    candidates its judge scored above `pos_score - beta`."""

    _TRIES = 32  # rejection draws before the exact (slower) draw from the filtered pool

    def __init__(self, mined: datasets.Dataset, group_column: str | None, beta: float, source: str) -> None:
        if group_column is not None and group_column not in mined.column_names:
            raise DataFormatError(
                f"{source}: `negative_group_column` {group_column!r} is not a column; columns: {mined.column_names}"
            )
        columns = [POS_ID, POS_TEXT, POS_IMAGE] + ([group_column] if group_column else [])
        view = mined.select_columns(columns)
        self.groups: list[Any] = list(view[group_column]) if group_column else [None] * len(mined)
        self.pools: dict[Any, list[str]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        seen: dict[Any, set[str]] = {}
        texts, images = view[POS_TEXT], view[POS_IMAGE]
        for row, (group, identifier) in enumerate(zip(self.groups, view[POS_ID])):
            try:
                members = seen.setdefault(group, set())
            except TypeError:
                raise row_error(source, row, group_column, f"{group!r} cannot name a group (use a string)") from None
            if identifier not in members:
                members.add(identifier)
                self.pools.setdefault(group, []).append(identifier)
                self.items.setdefault(identifier, {"text": texts[row], "image": images[row]})
        self.excluded = self._judged_positives(mined, beta, source)
        self.empty: set[int] = set()

    @staticmethod
    def _judged_positives(mined: datasets.Dataset, beta: float, source: str) -> list[set[str]]:
        """Per row, its positive and the candidates the judge scored above `pos_score - beta`."""
        has_scores = CANDIDATE_IDS in mined.column_names and CANDIDATE_SCORES in mined.column_names
        columns = [POS_ID, POS_SCORE] + ([CANDIDATE_IDS, CANDIDATE_SCORES] if has_scores else [])
        excluded = []
        for row, example in enumerate(mined.select_columns(columns)):
            banned = {example[POS_ID]}
            if has_scores:
                ids, scores = example[CANDIDATE_IDS] or [], example[CANDIDATE_SCORES] or []
                if len(ids) != len(scores):
                    raise row_error(source, row, CANDIDATE_SCORES, f"{len(scores)} scores for {len(ids)} candidates")
                pos_score = example[POS_SCORE]
                if isinstance(pos_score, bool) or not isinstance(pos_score, int | float):
                    raise row_error(source, row, POS_SCORE, f"{pos_score!r} is not a judge score")
                banned.update(c for c, score in zip(ids, scores) if score > pos_score - beta)
            excluded.append(banned)
        return excluded

    def draw(self, row: int, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
        """A random negative `(id, item)` for mined row `row`, or None (recorded in `empty`) when none is left."""
        pool, banned = self.pools[self.groups[row]], self.excluded[row]
        for _ in range(self._TRIES):
            identifier = pool[rng.randrange(len(pool))]
            if identifier not in banned:
                return identifier, self.items[identifier]
        allowed = [identifier for identifier in pool if identifier not in banned]
        if not allowed:
            self.empty.add(row)
            return None
        identifier = rng.choice(allowed)
        return identifier, self.items[identifier]


def build_reranker_rows(
    mined: datasets.Dataset,
    corpus: datasets.Dataset,
    *,
    list_size: int = 4,
    pairwise_ratio: float = 1.0,
    listwise_ratio: float = 1.0,
    random_negative_ratio: float = 0.0,
    negative_group_column: str | None = None,
    beta: float = DEFAULT_BETA,
    seed: int = 0,
    judge_prompt: str = JUDGE_PROMPT,
    listwise_prompt: str = LISTWISE_PROMPT,
    source: str = "train",
) -> datasets.Dataset:
    """Turn mined rows and their corpus into reranker SFT rows (pairwise and listwise, METHOD.md §4).

    Args:
        mined (`datasets.Dataset`):
            Mined rows: `query_id, query_text, query_image, pos_id, pos_text, pos_image, pos_score,
            hard_negative_ids, hard_negative_scores`.
        corpus (`datasets.Dataset`):
            The `id, text, image` items that `hard_negative_ids` refer to.
        list_size (`int`, *optional*, defaults to 4):
            `x`: hard negatives per listwise prompt (the top `x` by judge score); the prompt lists `x + 1` candidates.
            Queries with fewer distinct hard negatives use all of theirs.
        pairwise_ratio (`float`, *optional*, defaults to 1.0):
            Pairwise groups per query: each group is a `Yes` row (query, positive) and a `No` row (query, negative),
            the first group with the hardest negative, the next ones with the next hardest. A fraction is drawn per
            query (1.5: one or two groups, half the queries each). 0 turns pairwise rows off.
        listwise_ratio (`float`, *optional*, defaults to 1.0):
            Listwise rows per query, drawn the same way; each row has its own random order and positive position.
        random_negative_ratio (`float`, *optional*, defaults to 0.0):
            Random-negative pairwise groups per query (not in the paper): a `Yes` row (query, positive) and a `No` row
            (query, the positive of another mined query, drawn uniformly). Never drawn: the query's own positive and
            any of its retrieved candidates the judge scored above `pos_score - beta` (when the rows keep
            `candidate_ids` / `candidate_scores`, as [`~unime_hf.mining.sample_hard_negatives`] leaves them).
            Easy negatives that let a small reranker learn to match before it meets the hard ones.
        negative_group_column (`str`, *optional*):
            Column of `mined` (e.g. the source dataset) whose value bounds the random draws: a query's random negative
            is the positive of a query with the same value, as each MMEB training set has its own candidates.
            Default: all mined queries.
        beta (`float`, *optional*, defaults to 0.01):
            The false-negative margin of mining (METHOD.md §2), used to keep judged false negatives out of the random
            draws.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random choices; row `i` draws from its own generator, so the result does not depend on the
            order rows are processed in.
        judge_prompt (`str`, *optional*, defaults to [`~unime_hf.scoring.JUDGE_PROMPT`]):
            Pairwise prompt with `{query}` and `{candidate}`.
        listwise_prompt (`str`, *optional*, defaults to [`LISTWISE_PROMPT`]):
            Listwise prompt with `{query}` and `{candidates}`.
        source (`str`, *optional*, defaults to `"train"`):
            Name of `mined` in error messages.

    Returns:
        `datasets.Dataset` with the columns of [`reranker_features`]; for each query its pairwise rows come first
        (hard negatives, then random ones), then its listwise rows.

    Raises:
        [`~unime_hf.data.DataFormatError`]: for missing columns, an id that is not in the corpus, an empty item, or
        candidate ids and scores of different lengths, naming the row and column.

    Example:

    ```python
    >>> rows = build_reranker_rows(mined, corpus, list_size=4, seed=0)
    >>> rows[0]["answer"], rows[1]["answer"], rows[2]["answer"]
    ('Yes', 'No', '(3)')
    ```
    """
    import datasets

    if not isinstance(list_size, int) or list_size < 1:
        raise ValueError(f"`list_size` must be an int >= 1, got {list_size!r}; the paper's top-5 reranking uses 4.")
    ratios = {
        "pairwise_ratio": pairwise_ratio,
        "listwise_ratio": listwise_ratio,
        "random_negative_ratio": random_negative_ratio,
    }
    check_row_ratios(ratios)
    check_prompt_template(judge_prompt)
    check_listwise_template(listwise_prompt)
    columns_error(source, mined.column_names, MINED_COLUMNS)
    random_pools = (
        RandomNegativePools(mined, negative_group_column, beta, source) if random_negative_ratio > 0 else None
    )
    columns_error("corpus", corpus.column_names, (ID, TEXT, IMAGE))
    items = {
        identifier: {"text": text, "image": image}
        for identifier, text, image in zip(corpus[ID], corpus[TEXT], corpus[IMAGE])
    }

    rows: list[dict[str, Any]] = []
    skipped_listwise = 0
    columns = [QUERY_ID, QUERY_TEXT, QUERY_IMAGE, POS_ID, POS_TEXT, POS_IMAGE, HARD_NEGATIVE_IDS, HARD_NEGATIVE_SCORES]
    for row, example in enumerate(mined.select_columns(columns)):
        rng = random.Random(seed * 1_000_003 + row)
        query = {"text": example[QUERY_TEXT], "image": example[QUERY_IMAGE]}
        positive = {"text": example[POS_TEXT], "image": example[POS_IMAGE]}
        ids, scores = example[HARD_NEGATIVE_IDS], example[HARD_NEGATIVE_SCORES]
        if len(ids) != len(scores):
            raise row_error(source, row, HARD_NEGATIVE_SCORES, f"{len(scores)} scores for {len(ids)} hard negatives")
        negatives = ranked_negatives(ids, scores, exclude=example[POS_ID])
        for identifier in negatives:
            if identifier not in items:
                raise row_error(source, row, HARD_NEGATIVE_IDS, f"{identifier!r} is not a corpus id")
        query_id, pos_id = example[QUERY_ID], example[POS_ID]
        _check_item(source, row, f"{QUERY_TEXT}/{QUERY_IMAGE}", query)
        _check_item(source, row, f"{POS_TEXT}/{POS_IMAGE}", positive)
        for identifier in negatives[: max(list_size, math.ceil(pairwise_ratio))]:
            _check_item(source, row, HARD_NEGATIVE_IDS, items[identifier], f"corpus item {identifier!r}: ")
        try:
            pair_negatives: list[tuple[str, Mapping[str, Any]] | None] = []  # None: a Yes row alone
            for group in range(_draw_count(rng, pairwise_ratio)):
                if negatives:
                    negative_id = negatives[group % len(negatives)]
                    pair_negatives.append((negative_id, items[negative_id]))
                else:
                    pair_negatives.append(None)
            if random_pools is not None:
                random_rng = random.Random(f"random-negatives:{seed}:{row}")
                for _ in range(_draw_count(random_rng, random_negative_ratio)):
                    drawn = random_pools.draw(row, random_rng)
                    if drawn is None:
                        break
                    pair_negatives.append(drawn)
            for pair_negative in pair_negatives:
                prepared = build_pair_content(query, positive, judge_prompt, row)
                rows.append(_row(prepared, YES, PAIRWISE, query_id, [pos_id], 0))
                if pair_negative is not None:
                    negative_id, negative = pair_negative
                    prepared = build_pair_content(query, negative, judge_prompt, row)
                    rows.append(_row(prepared, NO, PAIRWISE, query_id, [negative_id], 0))
            listwise_rows = _draw_count(rng, listwise_ratio)
            if listwise_rows and not negatives:
                skipped_listwise += 1
                continue
            top = negatives[:list_size]
            for _ in range(listwise_rows):
                order = rng.sample(top, len(top))
                target = rng.randint(0, len(order))  # 0..n inclusive: every one of the n + 1 positions
                candidate_ids = [*order[:target], pos_id, *order[target:]]
                candidates = [positive if i == target else items[c] for i, c in enumerate(candidate_ids)]
                prepared = build_listwise_content(query, candidates, listwise_prompt, row)
                answer = format_listwise_answer(target)
                rows.append(_row(prepared, answer, LISTWISE, query_id, candidate_ids, target))
        except ItemError as err:  # checked above; kept so that no item error escapes without the source
            raise DataFormatError(f"{source}: row {row}: {err}") from err
    if random_pools is not None and random_pools.empty:
        logger.warning(
            "%d of %d queries have no other positive%s to draw a random negative from: no random-negative rows for "
            "them.",
            len(random_pools.empty),
            len(mined),
            f" with the same {negative_group_column!r}" if negative_group_column else "",
        )
    if skipped_listwise:
        logger.warning(
            "%d of %d queries have no hard negatives: no listwise rows for them.", skipped_listwise, len(mined)
        )
    logger.info(
        "Built %d reranker rows from %d queries (%d pairwise, %d listwise).",
        len(rows),
        len(mined),
        sum(r["task"] == PAIRWISE for r in rows),
        sum(r["task"] == LISTWISE for r in rows),
    )
    return datasets.Dataset.from_list(rows, features=reranker_features())


def is_reranker_dataset(dataset: Any) -> bool:
    """Whether a dataset already holds prompt-completion rows (rather than mined rows to build them from)."""
    columns = getattr(dataset, "column_names", None) or []
    return "prompt" in columns and "completion" in columns


def open_row_images(
    images: Sequence[Any], processor: Any = None, image_root: str | None = None, where: str = "row"
) -> list[Any]:
    """Open a row's image paths as RGB PIL images (PIL images pass through), resized as the processor's
    `resize_policy` / `image_size` say, exactly like the pointwise scorer does at inference.

    Raises:
        `ItemError`: for a missing or unreadable image, naming `where` and the path.
    """
    from unime_hf.models.processing_unime import DEFAULT_MAX_IMAGE_PIXELS, load_image, resize_image

    root = image_root if image_root is not None else getattr(processor, "image_root", None)
    policy = getattr(processor, "resize_policy", "none")
    size = getattr(processor, "image_size", None)
    limit = getattr(processor, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    opened = []
    for position, image in enumerate(images):
        loaded = load_image(image, image_root=root, max_image_pixels=limit, where=f"{where}, image {position}")
        opened.append(resize_image(loaded, policy, size))
    return opened


def with_loaded_images(dataset: datasets.Dataset, processor: Any = None) -> datasets.Dataset:
    """The dataset with its `images` paths opened on access (`Dataset.with_transform`), for a plain `trl.SFTTrainer`
    and its default vision collator. [`RerankerSFTTrainer`] does not need it (its collator opens them).

    Example:

    ```python
    >>> from trl import SFTTrainer
    >>> trainer = SFTTrainer(model, train_dataset=with_loaded_images(rows, processor), processing_class=processor)
    ```
    """

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        batch = dict(batch)
        if "images" in batch:
            batch["images"] = [open_row_images(images, processor) for images in batch["images"]]
        return batch

    return dataset.with_transform(transform)


def count_image_parts(prompt: Sequence[Mapping[str, Any]]) -> int:
    """Number of `{"type": "image"}` parts in a list of messages."""
    return sum(
        1
        for message in prompt
        if not isinstance(message.get("content"), str)
        for part in message.get("content") or []
        if part.get("type") == "image"
    )
