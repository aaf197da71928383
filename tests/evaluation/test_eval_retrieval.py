"""Retrieval metrics on hand-built similarity matrices, the chunked path, parity with sentence-transformers'
InformationRetrievalEvaluator, gallery layouts and the runner with a fake embedder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unime_hf.evaluation.retrieval import (
    ImageTextGallery,
    chunked_ranks,
    embed_unique,
    evaluate_retrieval,
    first_relevant_ranks,
    load_gallery,
    recall_at_k,
    unique_items,
)


class LookupEmbedder:
    """Returns a fixed vector per item (keyed by text, else image path) and records every item it embeds."""

    name_or_path = "fake/lookup"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.seen: list[str] = []
        self.kwargs: list[dict] = []

    def encode(self, items, batch_size=16, **kwargs):
        self.kwargs.append(kwargs)
        keys = [item["text"] if item["text"] is not None else item["image"] for item in items]
        self.seen.extend(keys)
        return torch.tensor([self.vectors[key] for key in keys]) * 2.0  # not unit: the evaluation normalises


# --------------------------------------------------------------------------------------------------- pure metrics
def test_recall_at_k_hand_built_text_to_image():
    # 3 caption queries x 4 images; the relevant image of each caption is 0, 1, 3.
    sims = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3],  # image 0 first -> rank 1
            [0.8, 0.7, 0.1, 0.0],  # image 1 second -> rank 2
            [0.5, 0.6, 0.7, 0.4],  # image 3 last -> rank 4
        ]
    )
    relevant = [[0], [1], [3]]
    assert first_relevant_ranks(sims, relevant).tolist() == [1, 2, 4]
    assert recall_at_k(sims, relevant, ks=(1, 2, 3, 4)) == {
        "recall@1": pytest.approx(1 / 3),
        "recall@2": pytest.approx(2 / 3),
        "recall@3": pytest.approx(2 / 3),
        "recall@4": 1.0,
    }


def test_recall_at_k_several_captions_per_image():
    # 2 image queries x 6 captions; image 0 owns captions 0-2, image 1 owns 3-5. Any own caption is a hit.
    sims = np.array(
        [
            [0.1, 0.2, 0.6, 0.9, 0.8, 0.7],  # best own caption (2) is 4th -> rank 4
            [0.1, 0.2, 0.3, 0.0, 0.5, 0.4],  # own caption 4 is first -> rank 1
        ]
    )
    relevant = [[0, 1, 2], [3, 4, 5]]
    assert first_relevant_ranks(sims, relevant).tolist() == [4, 1]
    assert recall_at_k(sims, relevant, ks=(1, 5, 10)) == {"recall@1": 0.5, "recall@5": 1.0, "recall@10": 1.0}
    # A boolean relevance matrix gives the same.
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, :3] = mask[1, 3:] = True
    assert first_relevant_ranks(sims, mask).tolist() == [4, 1]


def test_ties_strict_count_against_the_query_first_breaks_by_index():
    sims = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.5, 0.5]])
    relevant = [[1], [1]]
    # strict: every irrelevant item tied with the relevant one ranks above it
    assert first_relevant_ranks(sims, relevant, ties="strict").tolist() == [3, 2]
    # first: ties are broken by index (item 0 precedes item 1; item 2 follows)
    assert first_relevant_ranks(sims, relevant, ties="first").tolist() == [2, 1]
    # a collapsed model scores as badly as possible under strict ties
    collapsed = torch.ones(4, 4)
    assert recall_at_k(collapsed, [[i] for i in range(4)], ks=(1,))["recall@1"] == 0.0
    assert recall_at_k(collapsed, [[i] for i in range(4)], ks=(1,), ties="first")["recall@1"] == 0.25


def test_bad_relevance_is_rejected():
    with pytest.raises(ValueError, match="no relevant item"):
        first_relevant_ranks(torch.zeros(2, 3), [[0], []])
    with pytest.raises(ValueError, match="outside"):
        first_relevant_ranks(torch.zeros(1, 3), [[5]])
    with pytest.raises(ValueError, match="ties"):
        first_relevant_ranks(torch.zeros(1, 3), [[0]], ties="random")


@pytest.mark.parametrize("ties", ["strict", "first"])
def test_chunked_ranks_equal_full_matrix(ties):
    generator = torch.Generator().manual_seed(0)
    # quantised vectors so that exact ties occur
    queries = torch.randint(-2, 3, (37, 6), generator=generator).float()
    items = torch.randint(-2, 3, (53, 6), generator=generator).float()
    relevant = [sorted({int(i) for i in torch.randint(0, 53, (3,), generator=generator)}) for _ in range(37)]
    expected = first_relevant_ranks(queries @ items.T, relevant, ties=ties)
    ranks, tops = chunked_ranks(queries, items, relevant, ties=ties, query_chunk_size=5, gallery_chunk_size=7, top_k=4)
    assert torch.equal(ranks, expected)
    best = (queries @ items.T).max(dim=1).values
    assert torch.equal((queries @ items.T).gather(1, tops[:, :1]).squeeze(1), best)


# ------------------------------------------------------------------------------------ sentence-transformers parity
class FixedVectorsModel:
    """The bits of a SentenceTransformer that InformationRetrievalEvaluator uses, returning fixed vectors."""

    similarity_fn_name = "cosine"

    def __init__(self, vectors: dict[str, torch.Tensor]) -> None:
        from sentence_transformers.util import cos_sim

        self.vectors = vectors
        self.similarity = cos_sim

        class _Card:
            def set_evaluation_metrics(self, *args, **kwargs):
                pass

        self.model_card_data = _Card()

    def encode(self, inputs, **kwargs):
        return torch.stack([self.vectors[key] for key in inputs])

    encode_query = encode_document = encode


def test_recall_matches_sentence_transformers_information_retrieval_evaluator():
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    generator = torch.Generator().manual_seed(3)
    n_images, per_image, dim = 12, 3, 8
    image_vectors = torch.randn(n_images, dim, generator=generator)
    # captions near their image, with enough noise that many are not first
    caption_vectors = image_vectors.repeat_interleave(per_image, 0) + 1.2 * torch.randn(
        n_images * per_image, dim, generator=generator
    )
    images = {f"img{i:02d}": image_vectors[i] for i in range(n_images)}
    captions = {f"cap{j:02d}": caption_vectors[j] for j in range(n_images * per_image)}
    owner = {f"cap{j:02d}": f"img{j // per_image:02d}" for j in range(n_images * per_image)}
    model = FixedVectorsModel({**images, **captions})
    ks = [1, 3, 5, 10]
    sims = (
        torch.nn.functional.normalize(caption_vectors, dim=1) @ torch.nn.functional.normalize(image_vectors, dim=1).T
    )

    # text -> image: one relevant image per caption
    evaluator = InformationRetrievalEvaluator(
        queries={c: c for c in captions},
        corpus={i: i for i in images},
        relevant_docs={c: {owner[c]} for c in captions},
        accuracy_at_k=ks,
        precision_recall_at_k=ks,
        name="t2i",
        write_csv=False,
    )
    theirs = evaluator(model)
    ours = recall_at_k(sims, [[j // per_image] for j in range(len(captions))], ks=ks)
    assert 0.0 < ours["recall@1"] < 1.0  # a non-trivial case
    for k in ks:
        assert ours[f"recall@{k}"] == pytest.approx(theirs[f"t2i_cosine_accuracy@{k}"], abs=1e-9)
        assert ours[f"recall@{k}"] == pytest.approx(theirs[f"t2i_cosine_recall@{k}"], abs=1e-9)

    # image -> text: three relevant captions per image; retrieval's Recall@K is the evaluator's accuracy@k
    evaluator = InformationRetrievalEvaluator(
        queries={i: i for i in images},
        corpus={c: c for c in captions},
        relevant_docs={i: {c for c in captions if owner[c] == i} for i in images},
        accuracy_at_k=ks,
        precision_recall_at_k=ks,
        name="i2t",
        write_csv=False,
    )
    theirs = evaluator(model)
    ours = recall_at_k(sims.T, [list(range(i * per_image, (i + 1) * per_image)) for i in range(n_images)], ks=ks)
    for k in ks:
        assert ours[f"recall@{k}"] == pytest.approx(theirs[f"i2t_cosine_accuracy@{k}"], abs=1e-9)

    # and the runner, fed the same vectors through an embedder, reports the same numbers both ways
    gallery = ImageTextGallery(list(images), [[c for c in captions if owner[c] == i] for i in images], name="fixed")
    embedder = LookupEmbedder({key: vector.tolist() for key, vector in {**images, **captions}.items()})
    result = evaluate_retrieval(gallery, embedder, ks=ks, query_chunk_size=4, gallery_chunk_size=5)
    assert result.metrics["text_to_image"] == pytest.approx(
        recall_at_k(sims, [[j // per_image] for j in range(36)], ks)
    )
    assert result.metrics["image_to_text"] == pytest.approx(ours)


# -------------------------------------------------------------------------------------------------------- runner
def test_runner_counts_hits_by_content_and_embeds_each_item_once():
    # two images; image b shares the caption "a shape" with image a
    vectors = {
        "a.png": [1.0, 0.0],
        "b.png": [0.0, 1.0],
        "a red square": [0.9, 0.1],
        "a shape": [0.6, 0.8],  # closer to b, but a caption of both a and b
        "a blue circle": [0.1, 0.9],
    }
    gallery = ImageTextGallery(["a.png", "b.png"], [["a red square", "a shape"], ["a blue circle", "a shape"]])
    embedder = LookupEmbedder(vectors)
    result = evaluate_retrieval(gallery, embedder, ks=(1,))
    assert sorted(embedder.seen) == sorted(vectors)  # "a shape" embedded once though it occurs twice
    assert result.metrics["encoded_items"] == 5
    assert result.metrics["num_captions"] == 4
    assert result.metrics["text_to_image"] == {"recall@1": 1.0}  # "a shape" -> b counts: it describes b too
    assert result.metrics["image_to_text"] == {"recall@1": 1.0}
    assert {p["direction"] for p in result.predictions} == {"image_to_text", "text_to_image"}
    assert len(result.predictions) == 2 + 4


def test_runner_prompts_reach_the_embedder():
    vectors = {"<|image_1|>\nRepresent the given image.": [1.0, 0.0], "Caption: a cat": [1.0, 0.0]}

    class Recorder(LookupEmbedder):
        def encode(self, items, batch_size=16, **kwargs):
            self.seen.extend((item["text"], item["image"]) for item in items)
            return torch.tensor([[1.0, 0.0]] * len(items))

    embedder = Recorder(vectors)
    evaluate_retrieval(
        ImageTextGallery(["x.png"], [["a cat"]]),
        embedder,
        image_prompt="<|image_1|>\nRepresent the given image.",
        text_prompt="Caption: {text}",
    )
    assert ("<|image_1|>\nRepresent the given image.", "x.png") in embedder.seen
    assert ("Caption: a cat", None) in embedder.seen


def test_embed_unique_and_bad_embedder_output():
    distinct, inverse = unique_items([("a", ""), ("", "x.png"), ("a", "")])
    assert distinct == [("a", ""), ("", "x.png")] and inverse == [0, 1, 0]
    embedder = LookupEmbedder({"a": [3.0, 4.0], "x.png": [0.0, 2.0]})
    embeddings, index, count = embed_unique(embedder, [("a", ""), ("", "x.png"), ("a", "")])
    assert count == 2 and index.tolist() == [0, 1, 0]
    torch.testing.assert_close(embeddings, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))

    class Broken:
        def encode(self, items, batch_size=16):
            return np.zeros((len(items) + 1, 2))

    with pytest.raises(ValueError, match="expected"):
        embed_unique(Broken(), [("a", "")])
    with pytest.raises(TypeError, match="no encode"):
        embed_unique(object(), [("a", "")])


# ------------------------------------------------------------------------------------------------------ galleries
def test_gallery_layouts(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"png")
    # one caption a row, images repeated
    rows = [
        {"image": "a.png", "caption": "one"},
        {"image": "b.png", "caption": "two"},
        {"image": "a.png", "caption": "three"},
    ]
    (tmp_path / "gallery.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gallery = load_gallery(tmp_path / "gallery.jsonl")
    assert gallery.images == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert gallery.captions == [["one", "three"], ["two"]]
    # Karpathy split file: only the test split
    karpathy = {
        "images": [
            {"filename": "a.png", "split": "test", "sentences": [{"raw": "one"}, {"raw": "uno"}]},
            {"filename": "b.png", "split": "train", "sentences": [{"raw": "two"}]},
        ]
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(karpathy))
    gallery = load_gallery(tmp_path / "dataset_flickr30k.json", tmp_path)
    assert gallery.images == [str(tmp_path / "a.png")] and gallery.captions == [["one", "uno"]]
    # Urban1K-style folder
    (tmp_path / "urban" / "image").mkdir(parents=True)
    (tmp_path / "urban" / "caption").mkdir()
    (tmp_path / "urban" / "image" / "1.jpg").write_bytes(b"jpg")
    (tmp_path / "urban" / "caption" / "1.txt").write_text("a long caption\n")
    gallery = load_gallery(tmp_path / "urban")
    assert gallery.captions == [["a long caption"]] and gallery.name == "urban"
    # a missing image is reported with its path
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "nope.png", "caption": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_gallery(tmp_path / "bad.jsonl")


def test_sentence_transformers_model_gives_the_same_numbers(tmp_path, tiny_backbones):
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    model = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])
    model.save_pretrained(tmp_path / "checkpoint")
    images = []
    for name, rgb in {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}.items():
        Image.new("RGB", (28, 28), rgb).save(tmp_path / f"{name}.png")
        images.append(str(tmp_path / f"{name}.png"))
    gallery = ImageTextGallery(images, [["a red square", "red"], ["a green square"], ["a blue square"]])
    ours = evaluate_retrieval(gallery, model, ks=(1, 2))
    st_model = SentenceTransformer(str(tmp_path / "checkpoint"), trust_remote_code=True, device="cpu")
    theirs = evaluate_retrieval(gallery, st_model, ks=(1, 2))
    assert theirs.metrics == ours.metrics
    torch.testing.assert_close(theirs.image_embeddings, ours.image_embeddings, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.caption_embeddings, ours.caption_embeddings, atol=1e-5, rtol=0)
