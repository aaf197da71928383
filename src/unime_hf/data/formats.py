"""Readers (and one writer) from public data layouts to the canonical datasets of [`unime_hf.data.schema`].

Every reader takes a JSON, JSON Lines or parquet file (told apart by extension; a ``.json`` file holding JSON Lines,
as `Dataset.to_json` writes, is read too), or an in-memory `datasets.Dataset` / list of dicts. Image paths in a
file are relative to ``image_root`` (default: the file's folder) unless absolute; the readers return absolute paths
and, with ``check_images=True``, fail on a missing image file. Errors name the file, the row (0-based) and the
column. Columns a reader does not know are carried through to the ``train``/eval rows unchanged.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from unime_hf.data import schema
from unime_hf.data.schema import CorpusBuilder, DataFormatError, row_error

logger = logging.getLogger(__name__)

DataSource = str | os.PathLike | datasets.Dataset | Sequence[Mapping[str, Any]]

MMEB_TRAIN_COLUMNS = ("qry", "qry_image_path", "pos_text", "pos_image_path")
MMEB_TRAIN_NEG_COLUMNS = ("neg_text", "neg_image_path")
MMEB_EVAL_COLUMNS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
UNIME_V2_COLUMNS = (
    "query_text",
    "query_image",
    "pos_text",
    "pos_image",
    "query_pos_scores",
    "hard_negatives",
    "hard_negatives_scores",
)
SUPPORTED_EXTENSIONS = (".json", ".jsonl", ".parquet")


# --------------------------------------------------------------------------------------------------- loading


@dataclass
class _Records:
    """Rows of one source, its display name, its columns (first-seen order) and the default image root."""

    name: str
    rows: list[Mapping[str, Any]]
    columns: list[str]
    base_dir: Path


def _columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _read_json_lines(text: str, name: str) -> list[Any]:
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{name}: row {len(rows)} (line {line_number}) is not valid JSON: {error}") from None
    return rows


def _read_file(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataFormatError(
            f"{path}: unsupported file type {suffix!r}; expected one of {list(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        return _read_json_lines(text, str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if "Extra data" not in error.msg:  # otherwise: JSON Lines under a .json name
            raise DataFormatError(f"{path}: not valid JSON: {error}") from None
        return _read_json_lines(text, str(path))
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of records (objects), got {type(data).__name__}")
    return data


def load_records(source: DataSource) -> _Records:
    """Loads the rows of a file or an in-memory dataset, checking that every row is a record (a JSON object)."""
    if isinstance(source, datasets.Dataset):
        rows, name, base_dir = source.to_list(), "<dataset>", Path.cwd()
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        rows, name, base_dir = _read_file(path), str(path), path.absolute().parent
    else:
        rows, name, base_dir = list(source), "<records>", Path.cwd()
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataFormatError(f"{name}: row {index} is a {type(row).__name__}, expected a record (JSON object)")
    if not rows:
        raise DataFormatError(f"{name}: no rows")
    return _Records(name, rows, _columns_of(rows), base_dir)


# ---------------------------------------------------------------------------------------------------- cells


class _Cells:
    """Reads typed cells of one source, with row-precise errors and memoised image-file checks."""

    def __init__(self, records: _Records, image_root: str | os.PathLike | None, check_images: bool) -> None:
        self.name = records.name
        self.root = Path(image_root).absolute() if image_root is not None else records.base_dir
        self.check_images = check_images
        self._checked: set[str] = set()

    def get(self, record: Mapping[str, Any], row: int, column: str, required: bool = True) -> Any:
        if column not in record:
            if required:
                raise row_error(self.name, row, column, "missing value")
            return None
        return record[column]

    def text(self, value: Any, row: int, column: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise row_error(self.name, row, column, f"expected a string, got {type(value).__name__}: {value!r}")
        return value

    def image(self, value: Any, row: int, column: str) -> str:
        value = self.text(value, row, column)
        if not value:
            return ""
        path = os.path.normpath(value if os.path.isabs(value) else os.path.join(self.root, value))
        if self.check_images and path not in self._checked:
            if not os.path.isfile(path):
                raise row_error(
                    self.name,
                    row,
                    column,
                    f"image file not found: {path} (from {value!r}, image_root {str(self.root)!r}); "
                    "pass the right image_root, or check_images=False to skip this check",
                )
            self._checked.add(path)
        return path

    def item(self, record: Mapping[str, Any], row: int, text_column: str, image_column: str) -> tuple[str, str]:
        text = self.text(self.get(record, row, text_column), row, text_column)
        image = self.image(self.get(record, row, image_column), row, image_column)
        if not text and not image:
            raise row_error(
                self.name, row, f"{text_column}/{image_column}", "empty item: give a text, an image or both"
            )
        return text, image

    def score(self, value: Any, row: int, column: str) -> float:
        return schema._check_score(self.name, row, column, value)

    def sequence(self, value: Any, row: int, column: str) -> list[Any]:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise row_error(self.name, row, column, f"expected a list, got {type(value).__name__}: {value!r}")
        return value


def _extra_columns(records: _Records, known: Iterable[str], reserved: Iterable[str]) -> list[str]:
    """Columns carried through unchanged; one that would overwrite a canonical output column is an error."""
    known = set(known)
    extra = [column for column in records.columns if column not in known]
    clashes = [column for column in extra if column in set(reserved)]
    if clashes:
        raise DataFormatError(
            f"{records.name}: columns {clashes} clash with the columns this reader writes; rename or drop them"
        )
    return extra


def _dataset(rows: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    full = schema.with_extra_features(features, rows)
    return datasets.Dataset.from_list(rows, features=full)


def _training_dict(
    rows: list[dict[str, Any]], corpus: CorpusBuilder, features: datasets.Features
) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {schema.TRAIN_SPLIT: _dataset(rows, features), schema.CORPUS_SPLIT: corpus.to_dataset()}
    )


# ---------------------------------------------------------------------------------------------------- readers


def read_mmeb_train(
    path: DataSource, image_root: str | os.PathLike | None = None, *, check_images: bool = True
) -> datasets.DatasetDict:
    """Reads MMEB-train pairs (columns ``qry, qry_image_path, pos_text, pos_image_path`` and optionally
    ``neg_text, neg_image_path``) into canonical pairs plus the corpus of their positives (and negatives).

    Texts are kept as they are, ``<|image_1|>`` placeholders included (the processor maps them). When any row has a
    non-empty negative, the negatives join the corpus and a ``neg_ids`` column (lists of 0 or 1 id) is added.

    Args:
        path (`str`, `os.PathLike`, `datasets.Dataset` or list of dicts):
            A ``.json``, ``.jsonl`` or ``.parquet`` file, or rows already in memory.
        image_root (`str`, *optional*, defaults to the file's folder):
            The folder that relative image paths start from.
        check_images (`bool`, *optional*, defaults to `True`):
            Fail on an image path that names no file.

    Returns:
        `datasets.DatasetDict`: ``train`` (pairs) and ``corpus``.

    Example:

    ```python
    >>> data = read_mmeb_train("MSCOCO_i2t.parquet", image_root="MMEB-train/images")
    >>> data["train"][0]["pos_id"] in set(data["corpus"]["id"])
    True
    ```
    """
    records = load_records(path)
    schema.columns_error(records.name, records.columns, MMEB_TRAIN_COLUMNS, MMEB_TRAIN_NEG_COLUMNS)
    cells = _Cells(records, image_root, check_images)
    has_neg_columns = any(column in records.columns for column in MMEB_TRAIN_NEG_COLUMNS)
    extra = _extra_columns(
        records, (*MMEB_TRAIN_COLUMNS, *MMEB_TRAIN_NEG_COLUMNS), (*schema.PAIR_COLUMNS, schema.NEG_IDS)
    )
    corpus, rows = CorpusBuilder(), []
    for index, record in enumerate(records.rows):
        query_text, query_image = cells.item(record, index, "qry", "qry_image_path")
        pos_text, pos_image = cells.item(record, index, "pos_text", "pos_image_path")
        row = _pair_row(corpus, query_text, query_image, pos_text, pos_image)
        if has_neg_columns:
            neg_text = cells.text(cells.get(record, index, "neg_text", required=False), index, "neg_text")
            neg_image = cells.image(
                cells.get(record, index, "neg_image_path", required=False), index, "neg_image_path"
            )
            row[schema.NEG_IDS] = [corpus.add(neg_text, neg_image)] if neg_text or neg_image else []
        row.update({column: record.get(column) for column in extra})
        rows.append(row)
    with_negs = any(row.get(schema.NEG_IDS) for row in rows)
    if not with_negs:
        for row in rows:
            row.pop(schema.NEG_IDS, None)
    return _training_dict(rows, corpus, schema.pairs_features(with_neg_ids=with_negs))


def _pair_row(
    corpus: CorpusBuilder, query_text: str, query_image: str, pos_text: str, pos_image: str
) -> dict[str, Any]:
    return {
        schema.QUERY_ID: schema.query_id(query_text, query_image),
        schema.QUERY_TEXT: query_text,
        schema.QUERY_IMAGE: query_image,
        schema.POS_ID: corpus.add(pos_text, pos_image),
        schema.POS_TEXT: pos_text,
        schema.POS_IMAGE: pos_image,
    }


def _hard_negatives(cells: _Cells, record: Mapping[str, Any], row: int) -> tuple[list[tuple[str, str]], list[float]]:
    negatives = cells.sequence(cells.get(record, row, "hard_negatives"), row, "hard_negatives")
    scores = cells.sequence(cells.get(record, row, "hard_negatives_scores"), row, "hard_negatives_scores")
    if len(negatives) != len(scores):
        raise row_error(
            cells.name, row, "hard_negatives_scores", f"{len(scores)} scores for {len(negatives)} hard negatives"
        )
    items = []
    for position, entry in enumerate(negatives):
        column = f"hard_negatives[{position}]"
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise row_error(cells.name, row, column, f"expected a [text, image_path] pair, got {entry!r}")
        text, image = cells.text(entry[0], row, column), cells.image(entry[1], row, column)
        if not text and not image:
            raise row_error(cells.name, row, column, "empty item: give a text, an image or both")
        items.append((text, image))
    values = [cells.score(score, row, f"hard_negatives_scores[{i}]") for i, score in enumerate(scores)]
    return items, values


def read_unime_v2_mined(
    path: DataSource, image_root: str | os.PathLike | None = None, *, check_images: bool = True
) -> datasets.DatasetDict:
    """Reads the released UniME-V2 mined training records into canonical mined rows plus their corpus.

    A record holds ``query_text, query_image, pos_text, pos_image`` (``""`` when absent), ``query_pos_scores`` (the
    judge's score of the positive), ``hard_negatives`` (``[text, image_path]`` pairs, 10 in the release) and
    ``hard_negatives_scores`` (one float each). Positives and hard negatives become corpus items; repeated
    negatives (cyclic filling) keep every reference.

    Args:
        path (`str`, `os.PathLike`, `datasets.Dataset` or list of dicts):
            A ``.json`` (a list of records), ``.jsonl`` or ``.parquet`` file, or rows already in memory.
        image_root (`str`, *optional*, defaults to the file's folder):
            The folder that relative image paths start from.
        check_images (`bool`, *optional*, defaults to `True`):
            Fail on an image path that names no file.

    Returns:
        `datasets.DatasetDict`: ``train`` (mined) and ``corpus``.
    """
    records = load_records(path)
    schema.columns_error(records.name, records.columns, UNIME_V2_COLUMNS)
    cells = _Cells(records, image_root, check_images)
    extra = _extra_columns(records, UNIME_V2_COLUMNS, schema.MINED_COLUMNS)
    corpus, rows = CorpusBuilder(), []
    for index, record in enumerate(records.rows):
        query_text, query_image = cells.item(record, index, "query_text", "query_image")
        pos_text, pos_image = cells.item(record, index, "pos_text", "pos_image")
        row = _pair_row(corpus, query_text, query_image, pos_text, pos_image)
        row[schema.POS_SCORE] = cells.score(cells.get(record, index, "query_pos_scores"), index, "query_pos_scores")
        negatives, scores = _hard_negatives(cells, record, index)
        row[schema.HARD_NEGATIVE_IDS] = [corpus.add(text, image) for text, image in negatives]
        row[schema.HARD_NEGATIVE_SCORES] = scores
        row.update({column: record.get(column) for column in extra})
        rows.append(row)
    return _training_dict(rows, corpus, schema.mined_features())


def _relative(image: str, root: Path | None) -> str:
    if not image or root is None:
        return image
    relative = os.path.relpath(image, root)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return image  # outside the root: keep it absolute
    return Path(relative).as_posix()


def write_unime_v2_mined(
    mined: datasets.Dataset,
    corpus: datasets.Dataset,
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
) -> Path:
    """Writes mined rows in the released UniME-V2 layout (the inverse of [`read_unime_v2_mined`]).

    ``.json`` gets a list of records, ``.jsonl`` one record a line. Columns other than the mined ones are written
    unchanged after the released fields. Reading the file back with the same ``image_root`` gives the same rows.

    Args:
        mined (`datasets.Dataset`):
            Canonical mined rows.
        corpus (`datasets.Dataset`):
            The corpus their ids refer to.
        path (`str` or `os.PathLike`):
            The file to write (``.json`` or ``.jsonl``).
        image_root (`str`, *optional*):
            Write image paths under this folder relative to it; others (and all, when not given) stay absolute.

    Returns:
        `Path`: the written file.
    """
    path = Path(path)
    if path.suffix.lower() not in (".json", ".jsonl"):
        raise DataFormatError(f"{path}: write_unime_v2_mined writes '.json' or '.jsonl', not {path.suffix!r}")
    schema.validate_mined(mined, corpus, "mined")
    root = Path(image_root).absolute() if image_root is not None else None
    items = dict(zip(corpus[schema.ID], zip(corpus[schema.TEXT], corpus[schema.IMAGE])))
    extra = [column for column in mined.column_names if column not in schema.MINED_COLUMNS]
    records = []
    for row in mined:
        record = {
            "query_text": row[schema.QUERY_TEXT],
            "query_image": _relative(row[schema.QUERY_IMAGE], root),
            "pos_text": row[schema.POS_TEXT],
            "pos_image": _relative(row[schema.POS_IMAGE], root),
            "query_pos_scores": row[schema.POS_SCORE],
            "hard_negatives": [[items[i][0], _relative(items[i][1], root)] for i in row[schema.HARD_NEGATIVE_IDS]],
            "hard_negatives_scores": row[schema.HARD_NEGATIVE_SCORES],
        }
        record.update({column: row[column] for column in extra})
        records.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        if path.suffix.lower() == ".json":
            json.dump(records, handle, ensure_ascii=False)
        else:
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return path


def read_mmeb_eval(
    path: DataSource,
    image_root: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    *,
    check_images: bool = True,
) -> datasets.Dataset:
    """Reads one MMEB-eval set (columns ``qry_text, qry_img_path, tgt_text, tgt_img_path``; the gold candidate is
    index 0) into canonical eval rows with a ``dataset`` column.

    Args:
        path (`str`, `os.PathLike`, `datasets.Dataset` or list of dicts):
            A ``.json``, ``.jsonl`` or ``.parquet`` file, or rows already in memory.
        image_root (`str`, *optional*, defaults to the file's folder):
            The folder that relative image paths start from.
        dataset_name (`str`, *optional*, defaults to the file name without extension):
            The value of the ``dataset`` column.
        check_images (`bool`, *optional*, defaults to `True`):
            Fail on an image path that names no file.

    Returns:
        `datasets.Dataset`: ``dataset, query_text, query_image, candidate_texts, candidate_images``.
    """
    records = load_records(path)
    schema.columns_error(records.name, records.columns, MMEB_EVAL_COLUMNS)
    if dataset_name is None:
        dataset_name = Path(path).stem if isinstance(path, str | os.PathLike) else "eval"
    cells = _Cells(records, image_root, check_images)
    extra = _extra_columns(records, MMEB_EVAL_COLUMNS, schema.EVAL_COLUMNS)
    rows = []
    for index, record in enumerate(records.rows):
        query_text, query_image = cells.item(record, index, "qry_text", "qry_img_path")
        texts = cells.sequence(cells.get(record, index, "tgt_text"), index, "tgt_text")
        images = cells.sequence(cells.get(record, index, "tgt_img_path"), index, "tgt_img_path")
        if len(texts) != len(images):
            raise row_error(records.name, index, "tgt_img_path", f"{len(images)} images for {len(texts)} texts")
        texts = [cells.text(value, index, f"tgt_text[{i}]") for i, value in enumerate(texts)]
        images = [cells.image(value, index, f"tgt_img_path[{i}]") for i, value in enumerate(images)]
        schema.check_candidates(records.name, index, texts, images, ("tgt_text", "tgt_img_path"))
        row = {
            schema.DATASET: dataset_name,
            schema.QUERY_TEXT: query_text,
            schema.QUERY_IMAGE: query_image,
            schema.CANDIDATE_TEXTS: texts,
            schema.CANDIDATE_IMAGES: images,
        }
        row.update({column: record.get(column) for column in extra})
        rows.append(row)
    return _dataset(rows, schema.eval_features())


def read_corpus(
    path: DataSource, image_root: str | os.PathLike | None = None, *, check_images: bool = True
) -> datasets.Dataset:
    """Reads a candidate pool (columns ``text`` and/or ``image``) into a canonical corpus; equal items merge.

    An ``id`` column, if present, must hold the content ids ([`schema.item_id`]), as a saved corpus does. Other
    columns are ignored, with a warning (a corpus item is shared by rows, so per-row extras have no place).
    """
    records = load_records(path)
    present = [column for column in (schema.TEXT, schema.IMAGE) if column in records.columns]
    if not present:
        schema.columns_error(records.name, records.columns, (schema.TEXT, schema.IMAGE))
    ignored = [column for column in records.columns if column not in schema.CORPUS_COLUMNS]
    if ignored:
        logger.warning("%s: ignoring columns %s (a corpus holds only id, text, image)", records.name, ignored)
    cells = _Cells(records, image_root, check_images)
    corpus = CorpusBuilder()
    for index, record in enumerate(records.rows):
        text = cells.text(record.get(schema.TEXT), index, schema.TEXT)
        image = cells.image(record.get(schema.IMAGE), index, schema.IMAGE)
        if not text and not image:
            raise row_error(records.name, index, "text/image", "empty item: give a text, an image or both")
        identifier = corpus.add(text, image)
        given = record.get(schema.ID)
        if given is not None and given != identifier:
            raise row_error(
                records.name, index, schema.ID, f"{given!r} is not the content id {identifier!r}; drop the id column"
            )
    return corpus.to_dataset()


def read_compositional(
    path: DataSource, image_root: str | os.PathLike | None = None, *, check_images: bool = True
) -> datasets.Dataset:
    """Reads a SugarCrepe-style set (columns ``image, caption, negative_caption, subset``) with absolute image paths.

    The subset is free text (SugarCrepe's are ``replace-obj``, ``replace-att``, ``replace-rel``, ``swap-obj``,
    ``swap-att``, ``add-obj``, ``add-att``); the two captions must be non-empty and differ.
    """
    records = load_records(path)
    schema.columns_error(records.name, records.columns, schema.COMPOSITIONAL_COLUMNS)
    cells = _Cells(records, image_root, check_images)
    rows = []
    for index, record in enumerate(records.rows):
        row = {
            column: cells.text(cells.get(record, index, column), index, column)
            for column in schema.COMPOSITIONAL_COLUMNS
        }
        row[schema.IMAGE] = cells.image(row[schema.IMAGE], index, schema.IMAGE)
        for column in (schema.IMAGE, schema.CAPTION, schema.NEGATIVE_CAPTION):
            if not row[column]:
                raise row_error(records.name, index, column, "empty value")
        if row[schema.CAPTION] == row[schema.NEGATIVE_CAPTION]:
            raise row_error(records.name, index, schema.NEGATIVE_CAPTION, "equals the caption")
        rows.append(row)
    return datasets.Dataset.from_list(rows, features=schema.compositional_features())


def _caption_metadata(folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    for name in ("metadata.jsonl", "metadata.csv"):
        candidate = folder / name
        if candidate.is_file():
            if candidate.suffix == ".csv":
                with candidate.open(newline="", encoding="utf-8") as handle:
                    return candidate, list(csv.DictReader(handle))
            return candidate, _read_json_lines(candidate.read_text(encoding="utf-8"), str(candidate))
    raise FileNotFoundError(f"{folder}: no metadata.jsonl or metadata.csv (columns file_name and text or caption)")


def read_image_caption_folder(folder: str | os.PathLike, *, check_images: bool = True) -> datasets.DatasetDict:
    """Reads an image-caption folder in the `datasets` ImageFolder layout into text->image pairs and their corpus.

    The folder holds the images and a ``metadata.jsonl`` or ``metadata.csv`` with a ``file_name`` column (relative to
    the folder) and a ``text`` or ``caption`` column. Each caption becomes a query whose positive is its image.
    """
    folder = Path(folder)
    metadata, rows = _caption_metadata(folder)
    records = load_records(rows)
    records.name = str(metadata)
    caption_column = "text" if "text" in records.columns else "caption"
    schema.columns_error(records.name, records.columns, ("file_name", caption_column))
    cells = _Cells(records, folder, check_images)
    corpus, pairs = CorpusBuilder(), []
    for index, record in enumerate(records.rows):
        caption, image = cells.item(record, index, caption_column, "file_name")
        if not caption or not image:
            missing = caption_column if not caption else "file_name"
            raise row_error(records.name, index, missing, "empty value: every row needs an image and a caption")
        pairs.append(_pair_row(corpus, caption, "", "", image))
    return _training_dict(pairs, corpus, schema.pairs_features())
