"""EmbeddingCollator: deduplication, alignment of candidates and judge scores, mixed modalities, errors."""

from __future__ import annotations

import pytest
import torch

from unime_hf.models.processing_unime import load_processor
from unime_hf.trainer.collator import EmbeddingCollator


@pytest.fixture(scope="module")
def processor(backbone):
    return load_processor(backbone)


def _real_ids(batch: dict, prefix: str, row: int) -> list[int]:
    ids, mask = batch[f"{prefix}_input_ids"][row], batch[f"{prefix}_attention_mask"][row]
    return ids[mask.bool()].tolist()


def _encode_one(processor, item: dict) -> list[int]:
    encoded = processor.prepare_items([item])
    return encoded["input_ids"][0][encoded["attention_mask"][0].bool()].tolist()


def test_dedupes_candidates_and_keeps_scores_aligned(processor, synthetic_data):
    mined, corpus = synthetic_data
    rows = [dict(mined[i]) for i in range(3)]
    # Row 1 uses row 0's positive as a negative, and repeats one negative (cyclic filling).
    rows[1]["hard_negative_ids"] = [rows[0]["pos_id"], "c9", "c9", *rows[1]["hard_negative_ids"][3:]]
    collator = EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=8)
    batch = collator(rows)

    index = batch["candidate_index"]
    assert index.shape == (3, 9)
    expected_ids = [[row["pos_id"], *row["hard_negative_ids"][:8]] for row in rows]
    distinct = list(dict.fromkeys(i for ids in expected_ids for i in ids))
    assert batch["candidate_input_ids"].shape[0] == len(distinct) < 27
    assert index[1, 1] == index[0, 0]  # a positive reused as a negative is encoded once
    assert index[1, 2] == index[1, 3]  # a repeated negative is encoded once

    # Every (row, column) points at the encoding of the right corpus item.
    items = {row["id"]: row for row in corpus}
    for b, ids in enumerate(expected_ids):
        for j, corpus_id in enumerate(ids):
            item = {"text": items[corpus_id]["text"], "image": items[corpus_id]["image"]}
            assert _real_ids(batch, "candidate", int(index[b, j])) == _encode_one(processor, item)

    scores = batch["judge_scores"]
    assert scores.shape == (3, 9) and scores.dtype == torch.float32
    for b, row in enumerate(rows):
        expected = torch.tensor([row["pos_score"], *row["hard_negative_scores"][:8]], dtype=torch.float32)
        torch.testing.assert_close(scores[b], expected)


def test_mixed_modalities_in_one_batch(processor, synthetic_data):
    mined, corpus = synthetic_data
    rows = [mined[i] for i in range(4)]  # text and image queries; text, image and image+text candidates
    batch = EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=2)(rows)
    query_images = sum(1 for row in rows if row["query_image"])
    assert 0 < query_images < len(rows)
    assert batch["query_image_grid_thw"].shape[0] == query_images
    assert batch["query_input_ids"].shape[0] == len(rows)
    items = {row["id"]: row for row in corpus}
    ids = list(dict.fromkeys(i for row in rows for i in [row["pos_id"], *row["hard_negative_ids"][:2]]))
    with_image = sum(1 for i in ids if items[i]["image"])
    assert 0 < with_image < len(ids)
    assert batch["candidate_image_grid_thw"].shape[0] == with_image


def test_plain_pairs_have_one_candidate_per_row(processor, synthetic_data):
    mined, _ = synthetic_data
    pairs = mined.remove_columns(["pos_score", "hard_negative_ids", "hard_negative_scores"])
    rows = [pairs[i] for i in range(4)] + [pairs[0]]  # the same positive twice is encoded once
    batch = EmbeddingCollator(processor)(rows)
    assert "judge_scores" not in batch
    assert batch["candidate_index"].shape == (5, 1)
    assert batch["candidate_input_ids"].shape[0] == 4
    assert batch["candidate_index"][4, 0] == batch["candidate_index"][0, 0]
    # The positive keys mark the shared positive, and are the same from another collator (another process).
    keys = batch["positive_keys"]
    assert keys[4] == keys[0] and len(set(keys[:4].tolist())) == 4
    torch.testing.assert_close(EmbeddingCollator(processor)(rows[::-1])["positive_keys"], keys.flip(0))


def test_chunked_output_covers_every_item(processor, synthetic_data):
    mined, corpus = synthetic_data
    rows = [mined[i] for i in range(4)]
    whole = EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=3)(rows)
    chunked = EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=3, chunk_size=3)(rows)
    assert "query_input_ids" not in chunked
    assert [c["input_ids"].shape[0] for c in chunked["query_chunks"]] == [3, 1]
    assert sum(c["input_ids"].shape[0] for c in chunked["candidate_chunks"]) == whole["candidate_input_ids"].shape[0]
    torch.testing.assert_close(chunked["candidate_index"], whole["candidate_index"])


def test_errors_name_the_problem(processor, synthetic_data):
    mined, corpus = synthetic_data
    row = dict(mined[0])
    with pytest.raises(ValueError, match="needs the corpus"):
        EmbeddingCollator(processor, num_hard_negatives=2)([row])
    with pytest.raises(ValueError, match="lower `num_hard_negatives`"):
        EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=11)([row])
    with pytest.raises(ValueError, match="not in the corpus"):
        EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=2)([{**row, "hard_negative_ids": ["x"] * 10}])
    pair = {k: v for k, v in row.items() if k not in ("pos_score", "hard_negative_ids", "hard_negative_scores")}
    with pytest.raises(ValueError, match="mixes mined rows"):
        EmbeddingCollator(processor, corpus=corpus)([row, pair])
    with pytest.raises(ValueError, match="query of row 0"):
        EmbeddingCollator(processor)([{**pair, "query_image": "/no/such/image.png"}])
    with pytest.raises(ValueError, match="prepare_items"):
        EmbeddingCollator(object())


def test_trainer_reads_only_model_inputs_from_a_side(processor, synthetic_data):
    from unime_hf.trainer.embedding_trainer import EmbeddingDistillTrainer

    mined, corpus = synthetic_data
    batch = EmbeddingCollator(processor, corpus=corpus, num_hard_negatives=2)([mined[0], mined[1]])
    (candidates,) = EmbeddingDistillTrainer._side_chunks(batch, "candidate")
    assert "index" not in candidates and {"input_ids", "attention_mask", "pixel_values"} <= set(candidates)
