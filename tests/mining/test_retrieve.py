"""Tests of the retrieval stage on a deterministic fake embedder with hand-placed vectors."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from unime_hf.mining.retrieve import (
    ExactSearcher,
    SentenceTransformerEmbedder,
    as_embedder,
    retrieve_candidates,
    search_top_k,
)


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), 0.0]


# corpus item -> direction in the plane; c6 duplicates c2 exactly (a tie), c7 is an image-only item at 60 degrees
ANGLES = {"c0": 0, "c1": 10, "c2": 20, "c3": 30, "c4": 40, "c5": 90, "c6": 20}


class FakeEmbedder:
    """Maps an item to a fixed vector by its text (or image path); counts calls; can fail after some calls."""

    name_or_path = "fake/embedder"

    def __init__(self, vectors: dict[str, list[float]], fail_after: int | None = None, scale: float = 3.0) -> None:
        self.vectors = vectors
        self.fail_after = fail_after
        self.scale = scale  # not unit length: retrieval must normalise
        self.calls = 0
        self.items_seen: list[str] = []
        self.instructions: list[str | None] = []

    def encode(self, items, batch_size=32, instruction=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.instructions.append(instruction)
        keys = [item["text"] if item["text"] is not None else item["image"] for item in items]
        self.items_seen.extend(keys)
        return np.array([self.vectors[key] for key in keys], dtype=np.float32) * self.scale


def make_data() -> tuple[Dataset, Dataset, FakeEmbedder]:
    corpus = Dataset.from_dict(
        {
            "id": [*ANGLES, "c7"],
            "text": [*ANGLES, ""],
            "image": [""] * len(ANGLES) + ["img/c7.png"],
        }
    )
    pairs = Dataset.from_dict(
        {
            "query_id": ["q0", "q1", "q2", "q3"],
            "query_text": ["q0", "q1", "", "q3"],
            "query_image": ["", "", "img/q2.png", "img/q3.png"],
            "pos_id": ["c0", "c5", "c7", "c4"],
            "pos_text": ["c0", "c5", "", "c4"],
            "pos_image": ["", "", "img/c7.png", ""],
        }
    )
    vectors = {key: unit(angle) for key, angle in ANGLES.items()}
    vectors.update({"img/c7.png": unit(60), "q0": unit(0), "q1": unit(33), "img/q2.png": unit(62), "q3": unit(-50)})
    return pairs, corpus, FakeEmbedder(vectors)


def test_exact_candidates_positive_excluded_and_ties_by_index():
    pairs, corpus, embedder = make_data()
    out = retrieve_candidates(pairs, corpus, embedder, top_k=3, batch_size=2, show_progress=False)
    # q0 at 0 degrees: its positive c0 is excluded, and the tie c2 == c6 (20 degrees) goes to the lower index
    assert out["candidate_ids"] == [
        ["c1", "c2", "c6"],
        ["c3", "c4", "c2"],  # q1 at 33 degrees; its positive c5 is far away
        ["c4", "c5", "c3"],  # q2 at 62 degrees; positive c7 (60 degrees) excluded
        ["c0", "c1", "c2"],  # q3 at -50 degrees
    ]
    np.testing.assert_allclose(
        out["candidate_similarities"][0], [math.cos(math.radians(a)) for a in (10, 20, 20)], rtol=0, atol=1e-6
    )
    assert out.column_names == [*pairs.column_names, "candidate_ids", "candidate_similarities"]


def test_top_k_boundary_tie_is_resolved_by_index():
    pairs, corpus, embedder = make_data()
    out = retrieve_candidates(pairs.select([0]), corpus, embedder, top_k=2, show_progress=False)
    assert out["candidate_ids"] == [["c1", "c2"]]  # c2 and c6 tie for the 2nd place


def test_threshold_keeps_only_candidates_below_delta():
    pairs, corpus, embedder = make_data()
    delta = math.cos(math.radians(15))
    out = retrieve_candidates(pairs, corpus, embedder, top_k=3, similarity_threshold=delta, show_progress=False)
    # top 4 of q0 are c0, c1, c2, c6: c0 is the positive, c1 (10 degrees) is above delta -> two remain
    assert out["candidate_ids"][0] == ["c2", "c6"]
    assert all(s < delta for row in out["candidate_similarities"] for s in row)


def test_instructions_reach_the_embedder():
    pairs, corpus, embedder = make_data()
    options = {"query_instruction": "Q:", "candidate_instruction": "C:", "show_progress": False}
    retrieve_candidates(pairs, corpus, embedder, batch_size=100, **options)
    assert embedder.instructions == ["C:", "Q:"]


@pytest.mark.parametrize("use_faiss", [True, False])
def test_faiss_and_torch_paths_agree(use_faiss):
    if use_faiss:
        pytest.importorskip("faiss")
    pairs, corpus, embedder = make_data()
    reference = retrieve_candidates(pairs, corpus, embedder, top_k=4, use_faiss=False, show_progress=False)
    out = retrieve_candidates(
        pairs, corpus, embedder, top_k=4, use_faiss=use_faiss, query_chunk_size=1, corpus_chunk_size=3,
        show_progress=False,
    )  # fmt: skip
    assert out["candidate_ids"] == reference["candidate_ids"]
    np.testing.assert_allclose(
        np.array(out["candidate_similarities"]), np.array(reference["candidate_similarities"]), atol=1e-6
    )


def _reference_top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ corpus.T
    return np.stack([np.lexsort((np.arange(len(row)), -row))[:k] for row in sims])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"use_faiss": False},
        {"use_faiss": False, "query_chunk_size": 7, "corpus_chunk_size": 16},  # chunks much smaller than N
        {"use_faiss": False, "query_chunk_size": 64, "corpus_chunk_size": 5},  # chunk smaller than k
        {"use_faiss": True, "query_chunk_size": 7},
    ],
)
def test_search_top_k_matches_brute_force_with_ties(kwargs):
    if kwargs["use_faiss"]:
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((120, 8)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    corpus[[40, 77, 99]] = corpus[3]  # four identical items: ties inside and at the top-k boundary
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries[[0, 1]] = corpus[3]
    for k in (2, 6, 10):
        sims, idx = search_top_k(queries, corpus, k, **kwargs)
        np.testing.assert_array_equal(idx, _reference_top_k(queries, corpus, k))
        assert (np.diff(sims, axis=1) <= 0).all()
    _, idx = search_top_k(queries, corpus, 2, **kwargs)
    assert idx[0].tolist() == [3, 40]


def test_near_ties_resolve_identically_across_backends_and_chunkings():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(64)
    # 6 items (fewer than the re-scoring margin of 8) within float32 rounding of each other: kernels and block
    # shapes round their similarities differently; the canonical re-scoring settles them the same way every time
    near = base + 1e-7 * rng.standard_normal((6, 64))
    corpus = np.concatenate([near, rng.standard_normal((400, 64))]).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = np.concatenate([base[None], rng.standard_normal((20, 64))]).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    variants = [
        {"use_faiss": False},
        {"use_faiss": False, "query_chunk_size": 3, "corpus_chunk_size": 7},
        {"use_faiss": False, "query_chunk_size": 1, "corpus_chunk_size": 1000},
    ]
    if _has_faiss():
        variants += [{"use_faiss": True}, {"use_faiss": True, "query_chunk_size": 4}]
    results = [search_top_k(queries, corpus, 5, **kwargs) for kwargs in variants]
    for sims, idx in results[1:]:
        np.testing.assert_array_equal(idx, results[0][1])
        np.testing.assert_array_equal(sims, results[0][0])
    sims, idx = results[0]
    assert set(idx[0]) <= set(range(6))  # the base query finds the near-duplicates
    exact = np.take_along_axis(queries.astype(np.float64) @ corpus.astype(np.float64).T, idx, axis=1)
    np.testing.assert_allclose(sims, exact, atol=1e-6)
    for row in range(1, len(queries)):  # away from near-ties, the order is the exact one
        np.testing.assert_array_equal(
            idx[row], np.argsort(-(queries[row].astype(np.float64) @ corpus.T.astype(np.float64)))[:5]
        )


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def test_search_k_larger_than_corpus_and_bad_shapes():
    corpus = np.eye(3, dtype=np.float32)
    sims, idx = search_top_k(np.eye(3, dtype=np.float32)[:1], corpus, 10, use_faiss=False)
    assert idx.tolist() == [[0, 1, 2]] and sims.shape == (1, 3)
    with pytest.raises(ValueError, match=r"\[q, 3\]"):
        ExactSearcher(corpus, use_faiss=False).search(np.ones((2, 4), dtype=np.float32), 1)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    pairs, corpus, embedder = make_data()
    expected = retrieve_candidates(pairs, corpus, embedder, top_k=3, show_progress=False)

    crashing = FakeEmbedder(embedder.vectors, fail_after=4)
    options = {"top_k": 3, "batch_size": 1, "shard_size": 3, "output_dir": tmp_path, "show_progress": False}
    with pytest.raises(RuntimeError, match="simulated crash"):
        retrieve_candidates(pairs, corpus, crashing, **options)
    assert len(list((tmp_path / "corpus_embeddings").glob("shard-*"))) == 1  # rows 0-2 done, row 3 done, crash

    resumed = FakeEmbedder(embedder.vectors)
    out = retrieve_candidates(pairs, corpus, resumed, **options)
    assert out.to_dict() == expected.to_dict()
    assert resumed.calls == len(corpus) - 3 + len(pairs)  # the finished corpus shard was not embedded again
    assert not list(tmp_path.rglob(".tmp-*"))

    again = FakeEmbedder(embedder.vectors)
    assert retrieve_candidates(pairs, corpus, again, **options).to_dict() == expected.to_dict()
    assert again.calls == 0


def test_other_config_in_same_dir_raises_or_recomputes(tmp_path):
    pairs, corpus, embedder = make_data()
    options = {"shard_size": 2, "output_dir": tmp_path, "show_progress": False}
    retrieve_candidates(pairs, corpus, embedder, top_k=3, **options)
    with pytest.raises(ValueError, match="top_k: 3 on disk vs 2 now"):
        retrieve_candidates(pairs, corpus, embedder, top_k=2, **options)
    fresh = FakeEmbedder(embedder.vectors)
    out = retrieve_candidates(pairs, corpus, fresh, top_k=2, overwrite=True, **options)
    assert out["candidate_ids"][0] == ["c1", "c2"]
    assert fresh.calls == 0  # embeddings do not depend on top_k: their shards were reused
    with pytest.raises(ValueError, match="model"):
        retrieve_candidates(pairs, corpus, embedder, top_k=2, model_name="other/model", **options)


def test_bad_inputs_name_the_row():
    pairs, corpus, embedder = make_data()
    bad_pairs = pairs.map(lambda row, i: {"pos_id": "nope" if i == 1 else row["pos_id"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"row 1 \(query_id 'q1'\): pos_id 'nope' is not a corpus id"):
        retrieve_candidates(bad_pairs, corpus, embedder, show_progress=False)
    with pytest.raises(ValueError, match="corpus is empty"):
        retrieve_candidates(pairs, corpus.select([]), embedder, show_progress=False)
    with pytest.raises(ValueError, match=r"appears twice \(rows 0 and 8\)"):
        dup = Dataset.from_dict({"id": ["c0"], "text": ["c0"], "image": [""]})
        from datasets import concatenate_datasets

        retrieve_candidates(pairs, concatenate_datasets([corpus, dup]), embedder, show_progress=False)
    blank = Dataset.from_dict({"id": ["c0", "c5", "c7", "c4", "x"], "text": ["c0", "c5", "", "c4", ""],
                               "image": ["", "", "img/c7.png", "", ""]})  # fmt: skip
    with pytest.raises(ValueError, match="Row 4 of corpus has neither text nor image"):
        retrieve_candidates(pairs, blank, embedder, batch_size=2, show_progress=False)
    with pytest.raises(ValueError, match="lacks column"):
        retrieve_candidates(pairs.remove_columns("pos_id"), corpus, embedder, show_progress=False)


def test_wrong_embedding_shape_is_a_clear_error():
    pairs, corpus, embedder = make_data()

    class Short(FakeEmbedder):
        def encode(self, items, batch_size=32, instruction=None):
            return super().encode(items)[:-1]

    with pytest.raises(ValueError, match=r"returned shape \(1, 3\) for 2 corpus items"):
        retrieve_candidates(pairs, corpus, Short(embedder.vectors), batch_size=2, show_progress=False)

    class Flat(FakeEmbedder):
        def encode(self, items, batch_size=32, instruction=None):
            return super().encode(items).reshape(-1)

    with pytest.raises(ValueError, match="expected"):
        retrieve_candidates(pairs, corpus, Flat(embedder.vectors), show_progress=False)
    with pytest.raises(TypeError, match="no encode"):
        retrieve_candidates(pairs, corpus, object(), show_progress=False)


def test_sentence_transformers_adapter():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["red", "blue", "green", "square", "circle", "triangle"]
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=8)], device="cpu")
    embedder = as_embedder(model)
    assert isinstance(embedder, SentenceTransformerEmbedder)

    texts = ["red square", "blue circle", "green triangle", "red circle"]
    corpus = Dataset.from_dict({"id": [f"t{i}" for i in range(4)], "text": texts, "image": [""] * 4})
    pairs = Dataset.from_dict({"query_text": ["red square"], "query_image": [""], "pos_id": ["t0"]})
    out = retrieve_candidates(pairs, corpus, model, top_k=3, show_progress=False)
    vectors = model.encode(texts)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = [f"t{i}" for i in _reference_top_k(vectors[:1], vectors, 4)[0] if i != 0][:3]
    assert out["candidate_ids"] == [expected]


ACCELERATE_SCRIPT = """
import json, sys
sys.path.insert(0, {test_dir!r})
from test_retrieve import FakeEmbedder, make_data
from accelerate import PartialState
from unime_hf.mining.retrieve import retrieve_candidates

pairs, corpus, embedder = make_data()
out = retrieve_candidates(pairs, corpus, embedder, top_k=3, batch_size=1, shard_size=2, output_dir={out_dir!r},
                          show_progress=False)
state = PartialState()  # the state the mining runner initialised
with open({log_dir!r} + f"/rank{{state.process_index}}.json", "w") as handle:
    json.dump({{"seen": embedder.items_seen, "result": out.to_dict(), "world": state.num_processes}}, handle)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_under_accelerate_equal_one(tmp_path):
    pairs, corpus, embedder = make_data()
    expected = retrieve_candidates(pairs, corpus, embedder, top_k=3, show_progress=False).to_dict()
    script = tmp_path / "run_retrieve.py"
    script.write_text(
        ACCELERATE_SCRIPT.format(
            test_dir=str(Path(__file__).parent), out_dir=str(tmp_path / "out"), log_dir=str(tmp_path)
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # On a machine without GPU, `--cpu` alone starts one process unless MPI is installed; `--multi_gpu` starts n
    # processes through torchrun and the mining runner joins them on CPU (gloo).
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), str(script),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [log["world"] for log in logs] == [2, 2]
    for log in logs:
        assert log["result"] == expected
    seen = [set(log["seen"]) for log in logs]
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # the work was split, nothing done twice
    assert len(logs[0]["seen"]) + len(logs[1]["seen"]) == len(corpus) + len(pairs)


def test_empty_pairs_and_hand_off_to_sampling():
    from unime_hf.mining.sample import sample_hard_negatives

    pairs, corpus, embedder = make_data()
    empty = retrieve_candidates(pairs.select([]), corpus, embedder, show_progress=False)
    assert len(empty) == 0 and "candidate_ids" in empty.column_names

    out = retrieve_candidates(pairs, corpus, embedder, top_k=4, show_progress=False)
    judged = out.map(lambda row: {"candidate_scores": [0.5] * len(row["candidate_ids"]), "pos_score": 0.9})
    mined, stats = sample_hard_negatives(judged, num_negatives=3, interval=2, show_progress=False)
    assert mined[0]["hard_negative_ids"] == ["c1", "c6", "c1"]  # ranks 0 and 2 of [c1, c2, c6, c3], repeated
    assert stats.queries_repeated == 4
