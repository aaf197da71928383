# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Batching pairs and mined rows into one query batch and one deduplicated candidate batch."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

_ITEM_IN_MESSAGE = re.compile(r"^item (\d+)")


def stable_key(key: Any) -> int:
    """A 63-bit integer id of a candidate key (a corpus id or a content tuple), the same in every process and run."""
    digest = hashlib.blake2b(repr(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class EmbeddingCollator:
    r"""Collates pairs or mined rows for [`EmbeddingDistillTrainer`]: one query and `1 + k` candidates per row
    (the positive, then the first `k` mined hard negatives), every distinct candidate encoded once.

    Keys read from each row (the canonical layouts of `unime_hf.data.schema`; `""` means absent):

    - `query_text`, `query_image`, `pos_id`, `pos_text`, `pos_image` (pairs);
    - mined rows add `pos_score`, `hard_negative_ids` (corpus ids, looked up in `corpus`) and
      `hard_negative_scores`.

    Keys written (`B` rows, `U` distinct candidates, `k = num_hard_negatives`, `0` for pairs):

    - `query_<name>` for every processor output of the `B` queries (`query_input_ids`, `query_attention_mask`,
      `query_pixel_values`, `query_image_grid_thw`, ...);
    - `candidate_<name>` likewise for the `U` distinct candidates. Candidates are deduplicated by corpus id (the
      positive's `pos_id`, the negatives' ids), so an item that is a positive in one row and a negative in another,
      or a negative repeated by cyclic filling, is encoded once;
    - `candidate_index` (`torch.LongTensor` of shape `(B, 1 + k)`): row of each of a query's candidates in the
      candidate batch, the positive in column 0;
    - `positive_keys` (`torch.LongTensor` of shape `(B,)`): a stable 63-bit id of each row's positive (from `pos_id`,
      else its content), equal for rows that share a positive across processes too, so the loss can leave in-batch
      duplicates of a query's positive out of its negatives;
    - `judge_scores` (`torch.FloatTensor` of shape `(B, 1 + k)`, mined rows only): `[pos_score] +
      hard_negative_scores[:k]`, aligned with `candidate_index`.

    With `chunk_size`, queries and candidates are encoded in chunks of at most `chunk_size` items for GradCache, and
    `query_chunks` / `candidate_chunks` (lists of unprefixed processor outputs, in order) replace the `query_*` /
    `candidate_*` keys.

    Args:
        processor:
            A UniME processor (with `prepare_items`), e.g. `unime_hf.models.processing_unime.load_processor(path)`.
        corpus (`datasets.Dataset`, *optional*):
            The corpus (`id, text, image`) that `hard_negative_ids` refer to; needed for mined rows. Its id index is
            built once, on the first mined batch.
        num_hard_negatives (`int`, *optional*, defaults to 8):
            Hard negatives per row, the first `k` of the mined ones.
        chunk_size (`int`, *optional*):
            Encode in chunks of this many items (GradCache); `None` encodes each side in one batch.
        max_length (`int`, *optional*):
            Truncate token sequences to this length.
        image_root (`str`, *optional*):
            Folder that relative image paths are relative to.
        query_instruction (`str`, *optional*):
            Instruction prepended to every query (MMEB texts usually carry their own).
        candidate_instruction (`str`, *optional*):
            Instruction prepended to every candidate.

    Example:

    ```python
    >>> from unime_hf.models.processing_unime import load_processor
    >>> from unime_hf.trainer import EmbeddingCollator
    >>> collator = EmbeddingCollator(load_processor(backbone_path), corpus=corpus, num_hard_negatives=8)
    >>> batch = collator([mined[0], mined[1]])
    >>> batch["candidate_index"].shape, batch["judge_scores"].shape
    (torch.Size([2, 9]), torch.Size([2, 9]))
    ```
    """

    processor: Any
    corpus: Any = None
    num_hard_negatives: int = 8
    chunk_size: int | None = None
    max_length: int | None = None
    image_root: str | os.PathLike | None = None
    query_instruction: str | None = None
    candidate_instruction: str | None = None
    _corpus_rows: dict[str, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_hard_negatives < 0:
            raise ValueError(f"`num_hard_negatives` must be >= 0, got {self.num_hard_negatives}.")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1 or None, got {self.chunk_size}.")
        if not hasattr(self.processor, "prepare_items"):
            raise ValueError(
                f"`processor` must be a UniME processor with `prepare_items`, got {type(self.processor).__name__}; "
                "load one with `unime_hf.models.processing_unime.load_processor(path)`."
            )

    # ------------------------------------------------------------------------------------------------ public
    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("Cannot collate an empty batch.")
        mined = [self._is_mined(row) for row in rows]
        if any(mined) and not all(mined):
            raise ValueError(
                "The batch mixes mined rows (with `hard_negative_ids`) and plain pairs; use one layout per dataset."
            )
        mined_batch = mined[0]
        k = self.num_hard_negatives if mined_batch else 0

        queries = [self._item(row, "query_text", "query_image") for row in rows]
        candidates: list[dict[str, str]] = []
        owners: list[str] = []
        position: dict[Any, int] = {}
        index = torch.empty(len(rows), 1 + k, dtype=torch.long)
        positive_keys = torch.empty(len(rows), dtype=torch.long)

        def add(key: Any, item: dict[str, str], owner: str) -> int:
            if key not in position:
                position[key] = len(candidates)
                candidates.append(item)
                owners.append(owner)
            return position[key]

        for b, row in enumerate(rows):
            item = self._item(row, "pos_text", "pos_image")
            key = row.get("pos_id") or ("content", item["text"], item["image"])
            index[b, 0] = add(key, item, f"positive of row {b} (pos_id={row.get('pos_id')!r})")
            positive_keys[b] = stable_key(key)

        batch: dict[str, Any] = {}
        if mined_batch:
            negative_ids = [self._negative_ids(row, b, k) for b, row in enumerate(rows)]
            items = self._lookup([i for ids in negative_ids for i in ids])
            for b, ids in enumerate(negative_ids):
                for j, corpus_id in enumerate(ids):
                    index[b, 1 + j] = add(corpus_id, items[corpus_id], f"hard negative {j} of row {b} ({corpus_id!r})")
            batch["judge_scores"] = torch.tensor(
                [[float(row["pos_score"]), *map(float, row["hard_negative_scores"][:k])] for row in rows],
                dtype=torch.float32,
            )

        query_owners = [f"query of row {b} (query_id={row.get('query_id')!r})" for b, row in enumerate(rows)]
        batch.update(self._encode_side("query", queries, query_owners, self.query_instruction))
        batch.update(self._encode_side("candidate", candidates, owners, self.candidate_instruction))
        batch["candidate_index"] = index
        batch["positive_keys"] = positive_keys
        return batch

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _is_mined(row: Mapping[str, Any]) -> bool:
        return row.get("hard_negative_ids") is not None

    @staticmethod
    def _item(row: Mapping[str, Any], text_key: str, image_key: str) -> dict[str, str]:
        return {"text": row.get(text_key) or "", "image": row.get(image_key) or ""}

    def _negative_ids(self, row: Mapping[str, Any], b: int, k: int) -> list[str]:
        ids = list(row["hard_negative_ids"])
        scores = row.get("hard_negative_scores")
        where = f"row {b} (query_id={row.get('query_id')!r})"
        if scores is None or len(scores) != len(ids):
            raise ValueError(
                f"{where}: `hard_negative_scores` must have one score per hard negative ({len(ids)}), got "
                f"{None if scores is None else len(scores)}."
            )
        if row.get("pos_score") is None:
            raise ValueError(f"{where}: mined rows need `pos_score` (the judge's score of the positive).")
        if len(ids) < k:
            raise ValueError(
                f"{where}: has {len(ids)} hard negatives but num_hard_negatives={k}; lower `num_hard_negatives` "
                f"to at most {len(ids)} or re-mine with more negatives."
            )
        return ids[:k]

    def _lookup(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """Corpus items of the given ids, read from the corpus in one batched access."""
        if self.corpus is None:
            raise ValueError(
                "Mined rows refer to hard negatives by corpus id, so the collator needs the corpus: pass "
                "`corpus=` (a Dataset with columns id, text, image) to the collator or the trainer."
            )
        if self._corpus_rows is None:
            self._corpus_rows = {corpus_id: i for i, corpus_id in enumerate(self.corpus["id"])}
        unique = list(dict.fromkeys(ids))
        missing = [i for i in unique if i not in self._corpus_rows]
        if missing:
            raise ValueError(
                f"Hard-negative ids {missing[:5]} are not in the corpus ({len(self._corpus_rows)} items); pass the "
                "corpus that the mined data was built with."
            )
        columns = self.corpus[[self._corpus_rows[i] for i in unique]]
        return {
            corpus_id: {"text": text or "", "image": image or ""}
            for corpus_id, text, image in zip(unique, columns["text"], columns["image"])
        }

    def _encode_side(
        self, prefix: str, items: list[dict[str, str]], owners: list[str], instruction: str | None
    ) -> dict[str, Any]:
        if self.chunk_size is None:
            encoded = self._encode(items, owners, instruction)
            return {f"{prefix}_{name}": value for name, value in encoded.items()}
        chunks = []
        for start in range(0, len(items), self.chunk_size):
            stop = start + self.chunk_size
            chunks.append(dict(self._encode(items[start:stop], owners[start:stop], instruction)))
        return {f"{prefix}_chunks": chunks}

    def _encode(self, items: list[dict[str, str]], owners: list[str], instruction: str | None):
        kwargs: dict[str, Any] = {}
        if self.max_length is not None:
            kwargs.update(max_length=self.max_length, truncation=True)
        try:
            return self.processor.prepare_items(items, instruction=instruction, image_root=self.image_root, **kwargs)
        except ValueError as err:
            # Name the row and role instead of the position inside the processor call.
            match = _ITEM_IN_MESSAGE.match(str(err))
            if match and int(match.group(1)) < len(owners):
                raise type(err)(f"{owners[int(match.group(1))]}: {err}") from err
            raise
