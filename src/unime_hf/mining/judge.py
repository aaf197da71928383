"""Stage 2 of MLLM-as-a-Judge mining: an MLLM scores every (query, positive) and (query, candidate) pair.

For each row of a retrieved dataset, the judge asks the UniME-V2 question (METHOD.md section 2) about the query and
its positive and about the query and each retrieved candidate, and records `P(Yes)` as `pos_score` and
`candidate_scores` (aligned with `candidate_ids`). The scoring itself is [`~unime_hf.scoring.YesNoScorer`]: one
forward pass per pair, batched and length-sorted.

With an output directory the work is split into row shards written next to a manifest
([`~unime_hf.mining.shards.ShardedRunner`]): an interrupted run resumes where it stopped, and under
`accelerate launch` each process scores its share of the shards and every process returns the full result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from unime_hf.data.schema import CANDIDATE_IDS, CANDIDATE_SCORES, POS_SCORE
from unime_hf.mining.shards import ShardedRunner, default_state, hash_dataset, progress_bar
from unime_hf.scoring import JUDGE_PROMPT, PairError, YesNoScorer

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 1000
_HASH_BATCH_SIZE = 10_000

# (item name, text column, image column) of the two items a row carries itself.
_QUERY = ("query", "query_text", "query_image")
_POSITIVE = ("positive", "pos_text", "pos_image")


class MLLMJudge:
    """An MLLM judge for hard-negative mining (UniME-V2): P(Yes) that a candidate meets a query's requirements.

    Args:
        model (`str`, `os.PathLike` or `PreTrainedModel`):
            A generative VLM (Qwen2.5-VL-7B-Instruct in the paper), or its name or path, loaded with
            `AutoModelForImageTextToText.from_pretrained(model, **model_kwargs)` and placed on `device`.
        processor (`ProcessorMixin`, *optional*):
            Its processor. Loaded with [`~unime_hf.models.processing_unime.load_processor`] (no torchvision needed)
            when `model` is a name or path; required when `model` is a model object.
        prompt (`str`, *optional*, defaults to [`~unime_hf.scoring.JUDGE_PROMPT`]):
            The judge instruction with `{query}` and `{candidate}` where the items go.
        batch_size (`int`, *optional*, defaults to 16):
            Pairs per forward pass.
        yes_token (`str`, *optional*, defaults to `"Yes"`):
            The positive answer (one token).
        no_token (`str`, *optional*, defaults to `"No"`):
            The negative answer (one token).
        image_root (`str`, *optional*):
            Directory that relative image paths are relative to (defaults to the processor's `image_root`).
        device (`str` or `torch.device`, *optional*):
            Where a model loaded from a name goes. Defaults to this process's accelerator under `accelerate launch`
            (or the only one), else CPU. A model object is used where it is.
        model_kwargs (`dict`, *optional*):
            Passed to `from_pretrained` (e.g. `{"dtype": torch.bfloat16, "attn_implementation": "sdpa"}`).
        prefetch (`bool`, *optional*, defaults to `True`):
            Prepare the next batch in a background thread while the model runs (see [`~unime_hf.scoring.YesNoScorer`]).

    Example:

    ```python
    >>> from unime_hf.mining.judge import MLLMJudge
    >>> judge = MLLMJudge("Qwen/Qwen2.5-VL-7B-Instruct", batch_size=16, model_kwargs={"dtype": "bfloat16"})
    >>> judged = judge.judge(retrieved, corpus, output_dir="mining/run1")  # resumable; `accelerate launch` splits it
    >>> judged.column_names[-2:]
    ['pos_score', 'candidate_scores']
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike | Any,
        processor: Any = None,
        prompt: str = JUDGE_PROMPT,
        batch_size: int = 16,
        yes_token: str = "Yes",
        no_token: str = "No",
        image_root: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        prefetch: bool = True,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            from transformers import AutoModelForImageTextToText

            from unime_hf.models.processing_unime import load_processor

            name = str(model)
            model = AutoModelForImageTextToText.from_pretrained(name, **dict(model_kwargs or {}))
            model.to(device if device is not None else _default_device())
            if processor is None:
                processor = load_processor(name)
        elif processor is None:
            raise ValueError(
                "MLLMJudge needs the model's processor when given a model object: pass processor=... (for example "
                "unime_hf.models.processing_unime.load_processor(path)), or pass the model's name or path instead."
            )
        elif model_kwargs:
            raise ValueError("model_kwargs only apply when the model is given by name or path.")
        self.model = model
        self.processor = processor
        self.scorer = YesNoScorer(
            model,
            processor,
            prompt_template=prompt,
            batch_size=batch_size,
            yes_token=yes_token,
            no_token=no_token,
            image_root=image_root,
            prefetch=prefetch,
        )

    @property
    def name_or_path(self) -> str:
        name = getattr(getattr(self.model, "config", None), "_name_or_path", None) or getattr(
            self.model, "name_or_path", None
        )
        return str(name) if name else type(self.model).__name__

    @property
    def prompt(self) -> str:
        return self.scorer.prompt_template

    def score(self, pairs: Sequence[tuple[Any, Any]], show_progress_bar: bool = False) -> list[float]:
        """P(Yes) for `(query_item, candidate_item)` pairs; see [`~unime_hf.scoring.YesNoScorer.score`]."""
        return self.scorer.score(pairs, show_progress_bar=show_progress_bar)

    def judge(
        self,
        dataset: Dataset,
        corpus: Dataset,
        output_dir: str | os.PathLike | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        overwrite: bool = False,
        show_progress: bool = True,
        model_name: str | None = None,
    ) -> Dataset:
        """Score each row's positive and every retrieved candidate; see [`judge_candidates`]."""
        return judge_candidates(
            dataset,
            corpus,
            self,
            output_dir=output_dir,
            shard_size=shard_size,
            overwrite=overwrite,
            show_progress=show_progress,
            model_name=model_name,
        )


def judge_candidates(
    dataset: Dataset,
    corpus: Dataset,
    judge: MLLMJudge | str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    show_progress: bool = True,
    model_name: str | None = None,
) -> Dataset:
    """Add the judge's `pos_score` and `candidate_scores` to a retrieved dataset (UniME-V2 mining, step 2).

    Every row, and every candidate id in it, is checked before any scoring starts; a bad row raises a `ValueError`
    naming its index, its `query_id` and the column. With `output_dir`, rows are scored in shards of `shard_size`
    under `output_dir/judge/` together with a manifest of the configuration (model, prompt, answer tokens, image root
    and content hashes of the rows and of the corpus): a rerun skips finished shards, a run with another
    configuration in the same directory raises (or starts over with `overwrite=True`), and under `accelerate launch`
    process i scores shards i, i + n, ... and all processes return the same dataset. Without `output_dir` everything
    runs in memory in each process.

    Args:
        dataset (`datasets.Dataset`):
            Rows with `query_text` and/or `query_image`, the positive as `pos_text` and/or `pos_image` (or only a
            `pos_id` of the corpus), and `candidate_ids` (`list[str]`, corpus ids), as written by
            [`~unime_hf.mining.retrieve_candidates`]. `""` or `None` means absent.
        corpus (`datasets.Dataset`):
            Items with columns `id`, `text` and `image` (paths, or an `Image` feature).
        judge ([`MLLMJudge`], `str` or `os.PathLike`):
            The judge, or a model name or path to build one with default settings.
        output_dir (`str` or `os.PathLike`, *optional*):
            Directory for resumable shards; see above.
        shard_size (`int`, *optional*, defaults to 1000):
            Rows per shard. Each row is `1 + len(candidate_ids)` pairs (51 with the paper's top-50).
        overwrite (`bool`, *optional*, defaults to `False`):
            Recompute results found in `output_dir` under another configuration instead of raising.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm bar over pairs (on the local main process).
        model_name (`str`, *optional*):
            Name of the judge recorded in the manifest; defaults to the model's `name_or_path`.

    Returns:
        `datasets.Dataset`: `dataset` with `pos_score` (`float`) and `candidate_scores` (`list[float]`, aligned with
        `candidate_ids`), each a P(Yes) in (0, 1).

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from unime_hf.mining.judge import MLLMJudge, judge_candidates
    >>> corpus = Dataset.from_dict({"id": ["a", "b"], "text": ["a red square", "a blue circle"], "image": ["", ""]})
    >>> rows = Dataset.from_dict({"query_id": ["q0"], "query_text": ["a red shape"], "query_image": [""],
    ...                           "pos_id": ["a"], "pos_text": ["a red square"], "pos_image": [""],
    ...                           "candidate_ids": [["b"]], "candidate_similarities": [[0.4]]})
    >>> judged = judge_candidates(rows, corpus, MLLMJudge("Qwen/Qwen2.5-VL-7B-Instruct"))
    >>> judged[0]["pos_score"], judged[0]["candidate_scores"]
    (0.97..., [0.02...])
    ```
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
    if not isinstance(judge, MLLMJudge):
        judge = MLLMJudge(judge)
    rows = _RowSource(dataset, corpus, judge.scorer.image_root)
    counts = rows.validate()

    runner = ShardedRunner(
        output_dir,
        "judge",
        {
            "model": model_name or judge.name_or_path,
            "prompt": judge.prompt,
            "yes_token": judge.scorer.yes_token,
            "no_token": judge.scorer.no_token,
            "image_root": str(judge.scorer.image_root) if judge.scorer.image_root is not None else None,
            "rows": hash_dataset(dataset, [*_QUERY[1:], *_POSITIVE[1:], "pos_id", CANDIDATE_IDS]),
            "corpus": hash_dataset(corpus, ["id", "text", "image"]),
        },
        num_rows=len(dataset),
        shard_size=shard_size,
        overwrite=overwrite,
    )
    pending = runner.pending_shards()
    show = show_progress and getattr(runner.state, "is_local_main_process", True)
    if pending:
        total = 0
        for shard in pending:
            start, stop = runner.shard_range(shard)
            total += stop - start + int(counts[start:stop].sum())
        logger.info(
            "Judging %d pairs in %d shards with %s (process %d of %d).",
            total, len(pending), judge.name_or_path, runner.process_index, runner.num_processes,
        )  # fmt: skip
        with progress_bar(total, "Judging", show, unit="pair") as bar:
            for shard in pending:
                runner.write_shard(shard, _judge_shard(judge.scorer, rows, *runner.shard_range(shard), bar))
    runner.wait_for_everyone()

    results = runner.load_all()
    pos_scores = results[POS_SCORE].astype(np.float64).tolist() if len(dataset) else []
    candidate_scores = [row.astype(np.float64).tolist() for row in results.get(CANDIDATE_SCORES, [])]
    out = dataset
    for column in (POS_SCORE, CANDIDATE_SCORES):
        if column in out.column_names:
            logger.warning("Replacing the existing %r column.", column)
            out = out.remove_columns(column)
    out = out.add_column(POS_SCORE, pos_scores)
    return out.add_column(CANDIDATE_SCORES, candidate_scores)


def _judge_shard(scorer: YesNoScorer, rows: _RowSource, start: int, stop: int, bar: Any) -> dict[str, Any]:
    pairs: list[tuple[Any, Any]] = []
    origin: list[tuple[int, int]] = []  # pair -> (row, candidate position; -1 for the positive)
    counts = []
    for row, (query, positive, candidates) in zip(range(start, stop), rows.items(start, stop)):
        pairs.append((query, positive))
        origin.append((row, -1))
        pairs.extend((query, candidate) for candidate in candidates)
        origin.extend((row, position) for position in range(len(candidates)))
        counts.append(len(candidates))
    try:
        scores = scorer.score(pairs, progress=bar)
    except PairError as err:
        row, position = origin[err.index]
        raise ValueError(rows.describe_error(row, position, err.side, err.reason)) from err
    pos_scores, candidate_scores, cursor = [], [], 0
    for count in counts:
        pos_scores.append(scores[cursor])
        candidate_scores.append(np.asarray(scores[cursor + 1 : cursor + 1 + count], dtype=np.float64))
        cursor += 1 + count
    return {POS_SCORE: np.asarray(pos_scores, dtype=np.float64), CANDIDATE_SCORES: candidate_scores}


class _RowSource:
    """Items of a retrieved dataset and its corpus, shard by shard, with row-precise validation and errors.

    Row columns are read one batch or shard at a time (a million rows of 50 candidate ids do not fit comfortably in
    Python lists); the corpus's ids, texts and image paths are held once.
    """

    def __init__(self, dataset: Dataset, corpus: Dataset, image_root: str | os.PathLike | None) -> None:
        self.dataset = dataset
        self.corpus = corpus
        self.image_root = image_root
        columns = dataset.column_names
        if CANDIDATE_IDS not in columns:
            raise ValueError(
                f"dataset lacks the {CANDIDATE_IDS!r} column (it has {columns}); run retrieve_candidates first."
            )
        if not any(column in columns for column in _QUERY[1:]):
            raise ValueError(f"dataset needs a 'query_text' and/or 'query_image' column; it has {columns}.")
        self.positive_from_corpus = not any(column in columns for column in _POSITIVE[1:])
        if self.positive_from_corpus and "pos_id" not in columns:
            raise ValueError(f"dataset needs 'pos_text' and/or 'pos_image' (or a corpus 'pos_id'); it has {columns}.")
        self.row_columns = [
            column
            for column in ("query_id", *_QUERY[1:], *_POSITIVE[1:], "pos_id", CANDIDATE_IDS)
            if column in columns and (column != "pos_id" or self.positive_from_corpus)
        ]
        if "id" not in corpus.column_names or not {"text", "image"} & set(corpus.column_names):
            raise ValueError(
                f"corpus needs an 'id' column and a 'text' and/or 'image' column; it has {corpus.column_names}."
            )
        self.corpus_ids = [str(value) for value in _column(corpus, "id")]
        self.corpus_index: dict[str, int] = {}
        for row, item_id in enumerate(self.corpus_ids):
            if item_id in self.corpus_index:
                raise ValueError(
                    f"corpus id {item_id!r} appears twice (rows {self.corpus_index[item_id]} and {row}); ids must be "
                    "unique."
                )
            self.corpus_index[item_id] = row
        self._corpus_texts = _column(corpus, "text") if "text" in corpus.column_names else None
        self._corpus_image_feature = "image" in corpus.column_names and _is_image_feature(corpus, "image")
        self._corpus_images = _undecoded(corpus, "image") if "image" in corpus.column_names else None

    # --------------------------------------------------------------------------------------------------- access
    def _rows(self, start: int, stop: int, columns: Sequence[str] | None = None) -> dict[str, list[Any]]:
        view = self.dataset.select_columns(list(columns or self.row_columns))
        return view[start:stop]

    def items(self, start: int, stop: int) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """`(query, positive, candidates)` items of rows `start..stop - 1` (images not opened)."""
        batch = self._rows(start, stop)
        out = []
        for offset in range(stop - start):
            query = _item(_cell(batch, _QUERY[1], offset), _cell(batch, _QUERY[2], offset))
            if self.positive_from_corpus:
                positive = self.corpus_item(self.corpus_index[str(batch["pos_id"][offset])])
            else:
                positive = _item(_cell(batch, _POSITIVE[1], offset), _cell(batch, _POSITIVE[2], offset))
            candidates = [self.corpus_item(self.corpus_index[str(cid)]) for cid in batch[CANDIDATE_IDS][offset]]
            out.append((query, positive, candidates))
        return out

    def corpus_item(self, corpus_row: int) -> dict[str, Any]:
        text = self._corpus_texts[corpus_row] if self._corpus_texts is not None else None
        image = self._corpus_images[corpus_row] if self._corpus_images is not None else None
        if self._corpus_image_feature and not _absent(image):
            image = self.corpus[corpus_row]["image"]  # decoded only when scored
        return _item(text, image)

    # ----------------------------------------------------------------------------------------------- validation
    def where(self, row: int) -> str:
        if "query_id" not in self.dataset.column_names:
            return f"Row {row}"
        return f"Row {row} (query_id {self._rows(row, row + 1, ['query_id'])['query_id'][0]!r})"

    def describe_error(self, row: int, position: int, side: str, reason: str) -> str:
        if side == "query":
            return f"{self.where(row)}, column {_QUERY[2]!r}/{_QUERY[1]!r}: {reason}"
        if position < 0:
            columns = "'pos_id'" if self.positive_from_corpus else f"{_POSITIVE[2]!r}/{_POSITIVE[1]!r}"
            return f"{self.where(row)}, column {columns}: {reason}"
        item_id = self._rows(row, row + 1, [CANDIDATE_IDS])[CANDIDATE_IDS][0][position]
        return f"{self.where(row)}, column {CANDIDATE_IDS!r}[{position}] (corpus id {item_id!r}): {reason}"

    def validate(self) -> np.ndarray:
        """Check every row before any scoring; return the number of candidates of each row.

        Checks: the query and positive have text or image, image paths exist, the candidate list is non-empty and
        every candidate id is a corpus id whose item has text or image (and an existing image file).
        """
        counts = np.zeros(len(self.dataset), dtype=np.int64)
        checked_corpus: set[int] = set()
        view = self.dataset.select_columns(self.row_columns)
        for column in (_QUERY[2], _POSITIVE[2]):
            if column in self.row_columns and _is_image_feature(view, column):
                view = view.cast_column(column, _image_feature(decode=False))
        for batch_start in range(0, len(view), _HASH_BATCH_SIZE):
            batch = view[batch_start : batch_start + _HASH_BATCH_SIZE]
            for offset, ids in enumerate(batch[CANDIDATE_IDS]):
                row = batch_start + offset
                where = _lazy_where(batch, offset, row)
                for name, text_column, image_column in (_QUERY, _POSITIVE):
                    if name == "positive" and self.positive_from_corpus:
                        pos_id = batch["pos_id"][offset]
                        if str(pos_id) not in self.corpus_index:
                            raise ValueError(f"{where}, column 'pos_id': {pos_id!r} is not a corpus id.")
                        continue
                    text, image = _cell(batch, text_column, offset), _cell(batch, image_column, offset)
                    if not text and _absent(image):
                        raise ValueError(
                            f"{where}, columns {text_column!r}/{image_column!r}: the {name} has neither text nor "
                            "image."
                        )
                    self._check_image(image, f"{where}, column {image_column!r}")
                if not ids:
                    raise ValueError(
                        f"{where}, column {CANDIDATE_IDS!r}: the candidate list is empty, so there is nothing to "
                        "judge. Drop such rows first (dataset.filter(lambda row: len(row['candidate_ids']) > 0)) or "
                        "retrieve with a higher similarity_threshold."
                    )
                counts[row] = len(ids)
                for position, item_id in enumerate(ids):
                    corpus_row = self.corpus_index.get(str(item_id))
                    label = f"{where}, column {CANDIDATE_IDS!r}[{position}]"
                    if corpus_row is None:
                        raise ValueError(f"{label}: {item_id!r} is not a corpus id.")
                    if corpus_row in checked_corpus:
                        continue
                    checked_corpus.add(corpus_row)
                    label = f"{label} (corpus id {item_id!r}, corpus row {corpus_row})"
                    text = self._corpus_texts[corpus_row] if self._corpus_texts is not None else None
                    image = self._corpus_images[corpus_row] if self._corpus_images is not None else None
                    if not text and _absent(image):
                        raise ValueError(f"{label}: the corpus item has neither text nor image.")
                    self._check_image(image, label)
        return counts

    def _check_image(self, image: Any, where: str) -> None:
        if not isinstance(image, (str, os.PathLike)) or _absent(image):
            return  # PIL images and Image-feature cells are checked when read
        path = os.fspath(image)
        if self.image_root is not None and not os.path.isabs(path):
            path = os.path.join(self.image_root, path)
        if not os.path.isfile(path):
            raise ValueError(f"{where}: image file not found: {path!r}. Check the path or pass image_root=...")


def _lazy_where(batch: Mapping[str, list[Any]], offset: int, row: int) -> str:
    if "query_id" in batch:
        return f"Row {row} (query_id {batch['query_id'][offset]!r})"
    return f"Row {row}"


def _cell(batch: Mapping[str, list[Any]], column: str, offset: int) -> Any:
    values = batch.get(column)
    return values[offset] if values is not None else None


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _item(text: Any, image: Any) -> dict[str, Any]:
    return {"text": text or None, "image": None if _absent(image) else image}


def _column(dataset: Dataset, column: str) -> list[Any]:
    """All values of one column as a Python list (one Arrow conversion, not one lookup per row)."""
    return dataset.select_columns([column])[:][column]


def _image_feature(decode: bool) -> Any:
    from datasets import Image

    return Image(decode=decode)


def _is_image_feature(dataset: Dataset, column: str) -> bool:
    from datasets import Image

    return isinstance(dataset.features.get(column), Image)


def _undecoded(dataset: Dataset, column: str) -> list[Any]:
    """A column's values without decoding: paths stay paths, a present `Image` cell becomes a marker."""
    if not _is_image_feature(dataset, column):
        return _column(dataset, column)
    cells = _column(dataset.cast_column(column, _image_feature(decode=False)), column)
    return [None if cell is None or not (cell.get("bytes") or cell.get("path")) else _IMAGE_CELL for cell in cells]


class _ImageCell:
    """Stands for an `Image`-feature cell that is present; it is decoded when the pair is scored."""

    def __repr__(self) -> str:
        return "<image cell>"


_IMAGE_CELL = _ImageCell()


def _default_device() -> Any:
    """This process's device under `accelerate launch` (the shared distributed state), else the default one."""
    state = default_state()
    return getattr(state, "device", "cpu")
