"""The canonical datasets every stage exchanges: column names, features, item ids and row-precise validation.

Five layouts (images are path strings, absolute once read, ``""`` when absent; texts are strings, ``""`` when absent;
an item has a text, an image or both):

- **corpus**: ``id, text, image``; unique items. An item's id is a hash of its content (:func:`item_id`), so corpora
  from different files merge by id.
- **pairs**: ``query_id, query_text, query_image, pos_id, pos_text, pos_image`` (+ ``neg_ids`` when the source had
  negatives); ``pos_id`` and ``neg_ids`` are corpus ids, queries are not in the corpus.
- **mined**: pairs + ``pos_score, hard_negative_ids, hard_negative_scores``.
- **eval** (MMEB-style): ``dataset, query_text, query_image, candidate_texts, candidate_images``; the gold is index 0.
- **compositional** (SugarCrepe-style): ``image, caption, negative_caption, subset``.

Training readers return ``DatasetDict({"train": pairs_or_mined, "corpus": corpus})``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import datasets

ID = "id"
TEXT = "text"
IMAGE = "image"
QUERY_ID = "query_id"
QUERY_TEXT = "query_text"
QUERY_IMAGE = "query_image"
POS_ID = "pos_id"
POS_TEXT = "pos_text"
POS_IMAGE = "pos_image"
NEG_IDS = "neg_ids"
POS_SCORE = "pos_score"
HARD_NEGATIVE_IDS = "hard_negative_ids"
HARD_NEGATIVE_SCORES = "hard_negative_scores"
CANDIDATE_IDS = "candidate_ids"  # retrieved candidates of a mined query (rank order)
CANDIDATE_SCORES = "candidate_scores"  # the judge's P(Yes) for each of them
DATASET = "dataset"
CANDIDATE_TEXTS = "candidate_texts"
CANDIDATE_IMAGES = "candidate_images"

CORPUS_COLUMNS: tuple[str, ...] = (ID, TEXT, IMAGE)
PAIR_COLUMNS: tuple[str, ...] = (QUERY_ID, QUERY_TEXT, QUERY_IMAGE, POS_ID, POS_TEXT, POS_IMAGE)
MINED_COLUMNS: tuple[str, ...] = (*PAIR_COLUMNS, POS_SCORE, HARD_NEGATIVE_IDS, HARD_NEGATIVE_SCORES)
EVAL_COLUMNS: tuple[str, ...] = (DATASET, QUERY_TEXT, QUERY_IMAGE, CANDIDATE_TEXTS, CANDIDATE_IMAGES)

# SugarCrepe-style compositional sets: an image, its true caption, an altered caption and the alteration's subset.
CAPTION = "caption"
NEGATIVE_CAPTION = "negative_caption"
SUBSET = "subset"
COMPOSITIONAL_COLUMNS: tuple[str, ...] = (IMAGE, CAPTION, NEGATIVE_CAPTION, SUBSET)
COMPOSITIONAL_SUBSETS: tuple[str, ...] = (
    "replace-obj",
    "replace-att",
    "replace-rel",
    "swap-obj",
    "swap-att",
    "add-obj",
    "add-att",
)

TRAIN_SPLIT = "train"
CORPUS_SPLIT = "corpus"


class DataFormatError(ValueError):
    """Raised when a data file or dataset does not follow its layout; the message names the place and the fix."""


def row_error(source: str, row: int, column: str, problem: str) -> DataFormatError:
    """Builds the error for one bad cell: ``"<source>: row <row>, column '<column>': <problem>"``."""
    return DataFormatError(f"{source}: row {row}, column {column!r}: {problem}")


def columns_error(source: str, found: Iterable[str], expected: Sequence[str], optional: Sequence[str] = ()) -> None:
    """Raises a [`DataFormatError`] when required columns are missing, naming missing, unexpected and expected ones."""
    found = list(found)
    missing = [c for c in expected if c not in found]
    if not missing:
        return
    unexpected = [c for c in found if c not in expected and c not in optional]
    hint = f"; optional: {list(optional)}" if optional else ""
    raise DataFormatError(
        f"{source}: missing columns {missing}; unexpected columns {unexpected}; expected columns {list(expected)}"
        f"{hint}. Is this file in another layout?"
    )


def _digest(*parts: str) -> str:
    hasher = hashlib.sha1()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\x00")
    return hasher.hexdigest()[:16]


def item_id(text: str, image: str) -> str:
    """The id of a corpus item: ``"c"`` + 16 hex digits of a hash of its (text, image path).

    Example:

    ```python
    >>> item_id("a red circle", "")
    'c886796d71d876054'
    ```
    """
    return "c" + _digest(text, image)


def query_id(text: str, image: str) -> str:
    """The id of a query: ``"q"`` + 16 hex digits of a hash of its content; identical queries share an id."""
    return "q" + _digest(text, image)


def corpus_features() -> datasets.Features:
    return datasets.Features(
        {ID: datasets.Value("string"), TEXT: datasets.Value("string"), IMAGE: datasets.Value("string")}
    )


def pairs_features(with_neg_ids: bool = False) -> datasets.Features:
    features = {name: datasets.Value("string") for name in PAIR_COLUMNS}
    if with_neg_ids:
        features[NEG_IDS] = datasets.List(datasets.Value("string"))
    return datasets.Features(features)


def mined_features() -> datasets.Features:
    features = {name: datasets.Value("string") for name in PAIR_COLUMNS}
    features[POS_SCORE] = datasets.Value("float64")
    features[HARD_NEGATIVE_IDS] = datasets.List(datasets.Value("string"))
    features[HARD_NEGATIVE_SCORES] = datasets.List(datasets.Value("float64"))
    return datasets.Features(features)


def compositional_features() -> datasets.Features:
    return datasets.Features({name: datasets.Value("string") for name in COMPOSITIONAL_COLUMNS})


def eval_features() -> datasets.Features:
    return datasets.Features(
        {
            DATASET: datasets.Value("string"),
            QUERY_TEXT: datasets.Value("string"),
            QUERY_IMAGE: datasets.Value("string"),
            CANDIDATE_TEXTS: datasets.List(datasets.Value("string")),
            CANDIDATE_IMAGES: datasets.List(datasets.Value("string")),
        }
    )


def with_extra_features(features: datasets.Features, rows: list[dict[str, Any]]) -> datasets.Features | None:
    """Canonical features plus inferred ones for the extra columns that a source carried through (None: infer all)."""
    extra = [name for name in (rows[0] if rows else {}) if name not in features]
    if not extra:
        return features
    inferred = datasets.Dataset.from_list([{name: row[name] for name in extra} for row in rows]).features
    return datasets.Features({**features, **inferred})


class CorpusBuilder:
    """Collects unique corpus items in first-seen order; adding an item returns its id.

    Example:

    ```python
    >>> builder = CorpusBuilder()
    >>> builder.add("a red circle", "") == builder.add("a red circle", "")
    True
    ```
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._rows

    def add(self, text: str, image: str) -> str:
        identifier = item_id(text, image)
        known = self._rows.setdefault(identifier, (text, image))
        if known != (text, image):  # a 64-bit hash collision: never seen, but never silently merged either
            raise DataFormatError(f"corpus id collision between {known!r} and {(text, image)!r}")
        return identifier

    def add_dataset(self, corpus: datasets.Dataset) -> None:
        for text, image in zip(corpus[TEXT], corpus[IMAGE]):
            self.add(text, image)

    def to_dataset(self) -> datasets.Dataset:
        rows = {
            ID: list(self._rows),
            TEXT: [t for t, _ in self._rows.values()],
            IMAGE: [i for _, i in self._rows.values()],
        }
        return datasets.Dataset.from_dict(rows, features=corpus_features())


def merge_corpora(*corpora: datasets.Dataset) -> datasets.Dataset:
    """Unites corpora (ids are content hashes, so equal items merge), keeping first-seen order."""
    builder = CorpusBuilder()
    for corpus in corpora:
        validate_corpus(corpus)
        builder.add_dataset(corpus)
    return builder.to_dataset()


# ----------------------------------------------------------------------------------------------------- validation


def _check_columns(dataset: datasets.Dataset, expected: Sequence[str], source: str) -> None:
    columns_error(source, dataset.column_names, expected)


def _check_item(source: str, row: int, text_column: str, image_column: str, text: Any, image: Any) -> None:
    for column, value in ((text_column, text), (image_column, image)):
        if not isinstance(value, str):
            raise row_error(source, row, column, f"expected a string, got {type(value).__name__}")
    if not text and not image:
        raise row_error(source, row, f"{text_column}/{image_column}", "empty item: give a text, an image or both")


def _check_score(source: str, row: int, column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise row_error(source, row, column, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise row_error(source, row, column, f"score is {value}; scores must be finite")
    return float(value)


def validate_corpus(corpus: datasets.Dataset, source: str = "corpus") -> None:
    """Checks a corpus: columns, non-empty items, ids equal to [`item_id`] of their content, no duplicate items.

    Raises:
        [`DataFormatError`]: naming the row and column of the first problem.
    """
    _check_columns(corpus, CORPUS_COLUMNS, source)
    seen: dict[str, int] = {}
    for row, (identifier, text, image) in enumerate(zip(corpus[ID], corpus[TEXT], corpus[IMAGE])):
        _check_item(source, row, TEXT, IMAGE, text, image)
        if identifier != item_id(text, image):
            raise row_error(
                source, row, ID, f"id {identifier!r} is not item_id(text, image) = {item_id(text, image)!r}"
            )
        if identifier in seen:
            raise row_error(source, row, ID, f"duplicate of row {seen[identifier]} (same text and image)")
        seen[identifier] = row


def validate_pairs(pairs: datasets.Dataset, corpus: datasets.Dataset | None = None, source: str = "train") -> None:
    """Checks pairs (or the pair columns of mined data): columns, items, and that every id is a corpus id whose
    text and image equal the row's positive.

    Raises:
        [`DataFormatError`]: naming the row and column of the first problem.
    """
    _check_columns(pairs, PAIR_COLUMNS, source)
    items = dict(zip(corpus[ID], zip(corpus[TEXT], corpus[IMAGE]))) if corpus is not None else None
    neg_ids = pairs[NEG_IDS] if NEG_IDS in pairs.column_names else None
    for row, example in enumerate(pairs.select_columns(list(PAIR_COLUMNS))):
        _check_item(source, row, QUERY_TEXT, QUERY_IMAGE, example[QUERY_TEXT], example[QUERY_IMAGE])
        _check_item(source, row, POS_TEXT, POS_IMAGE, example[POS_TEXT], example[POS_IMAGE])
        if items is None:
            continue
        if example[POS_ID] not in items:
            raise row_error(source, row, POS_ID, f"{example[POS_ID]!r} is not a corpus id")
        if items[example[POS_ID]] != (example[POS_TEXT], example[POS_IMAGE]):
            raise row_error(source, row, POS_ID, "the corpus item differs from the row's pos_text/pos_image")
        for identifier in neg_ids[row] if neg_ids is not None else ():
            if identifier not in items:
                raise row_error(source, row, NEG_IDS, f"{identifier!r} is not a corpus id")


def validate_mined(mined: datasets.Dataset, corpus: datasets.Dataset | None = None, source: str = "train") -> None:
    """Checks mined data: the pair checks, finite scores, and one score per hard negative (ids in the corpus).

    Raises:
        [`DataFormatError`]: naming the row and column of the first problem.
    """
    _check_columns(mined, MINED_COLUMNS, source)
    validate_pairs(mined, corpus, source)
    known = set(corpus[ID]) if corpus is not None else None
    columns = mined.select_columns([POS_SCORE, HARD_NEGATIVE_IDS, HARD_NEGATIVE_SCORES])
    for row, example in enumerate(columns):
        _check_score(source, row, POS_SCORE, example[POS_SCORE])
        ids, scores = example[HARD_NEGATIVE_IDS], example[HARD_NEGATIVE_SCORES]
        if len(ids) != len(scores):
            raise row_error(source, row, HARD_NEGATIVE_SCORES, f"{len(scores)} scores for {len(ids)} hard negatives")
        for score in scores:
            _check_score(source, row, HARD_NEGATIVE_SCORES, score)
        for identifier in ids:
            if known is not None and identifier not in known:
                raise row_error(source, row, HARD_NEGATIVE_IDS, f"{identifier!r} is not a corpus id")


def validate_eval(dataset: datasets.Dataset, source: str = "eval") -> None:
    """Checks an eval set: columns, a non-empty query, and equally long candidate lists (>= 1) of non-empty items.

    Raises:
        [`DataFormatError`]: naming the row and column of the first problem.
    """
    _check_columns(dataset, EVAL_COLUMNS, source)
    for row, example in enumerate(dataset.select_columns(list(EVAL_COLUMNS))):
        _check_item(source, row, QUERY_TEXT, QUERY_IMAGE, example[QUERY_TEXT], example[QUERY_IMAGE])
        check_candidates(source, row, example[CANDIDATE_TEXTS], example[CANDIDATE_IMAGES])


def check_candidates(source: str, row: int, texts: Any, images: Any, names: tuple[str, str] | None = None) -> None:
    """Checks one row's candidate lists (equal length >= 1, every candidate a non-empty item)."""
    text_column, image_column = names or (CANDIDATE_TEXTS, CANDIDATE_IMAGES)
    for column, values in ((text_column, texts), (image_column, images)):
        if not isinstance(values, list):
            raise row_error(source, row, column, f"expected a list, got {type(values).__name__}")
    if len(texts) != len(images):
        raise row_error(source, row, image_column, f"{len(images)} images for {len(texts)} texts; lengths must match")
    if not texts:
        raise row_error(source, row, text_column, "no candidates; the gold candidate must be at index 0")
    for index, (text, image) in enumerate(zip(texts, images)):
        _check_item(source, row, f"{text_column}[{index}]", f"{image_column}[{index}]", text, image)


def validate_training_dataset(data: Mapping[str, datasets.Dataset], source: str = "dataset") -> None:
    """Checks a training `DatasetDict` (``train`` = pairs or mined, ``corpus``) and the ids between them."""
    for split in (TRAIN_SPLIT, CORPUS_SPLIT):
        if split not in data:
            raise DataFormatError(f"{source}: missing split {split!r}; expected splits ['train', 'corpus']")
    validate_corpus(data[CORPUS_SPLIT], f"{source}[corpus]")
    if all(column in data[TRAIN_SPLIT].column_names for column in MINED_COLUMNS):
        validate_mined(data[TRAIN_SPLIT], data[CORPUS_SPLIT], f"{source}[train]")
    else:
        validate_pairs(data[TRAIN_SPLIT], data[CORPUS_SPLIT], f"{source}[train]")
