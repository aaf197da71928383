"""The reasoning embedder: `encode` embeds [input, T-CoT] with last-token pooling, and the embedding trainer learns
from (input + T-CoT) pairs folded with `attach_cot`."""

from __future__ import annotations

import pytest
import torch

from unime_hf.reasoning.tcot import append_cot, attach_cot, format_tcot

COT = format_tcot(keywords=["red square"], boxes=[[0, 0, 500, 500]], rethink="ok", answer="a red square")


@pytest.fixture(scope="module")
def embedder(tiny_backbones):
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    return UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])


def _items(image):
    return [
        {"text": "a red square", "cot": COT},
        {"image": image, "cot": COT},
        {"text": "<|image_1|>\nFind a caption that describes the given image.", "image": image, "cot": COT},
    ]


def test_cot_item_equals_text_with_cot_appended(embedder, red_image_path):
    processor = embedder.processor
    for item in _items(red_image_path):
        folded = {"text": append_cot(item.get("text"), item["cot"]), "image": item.get("image", "")}
        with_cot = processor.prepare_items([item], instruction="Represent the input.")
        with_text = processor.prepare_items([folded], instruction="Represent the input.")
        assert torch.equal(with_cot["input_ids"], with_text["input_ids"])
        # the T-CoT comes last, so last-token pooling reads the end of the T-CoT
        cot_ids = processor.tokenizer(COT, add_special_tokens=False)["input_ids"]
        assert with_cot["input_ids"][0, -len(cot_ids) :].tolist() == cot_ids
    embedded = embedder.encode(_items(red_image_path))
    folded = [
        {"text": append_cot(i.get("text"), i["cot"]), "image": i.get("image", "")} for i in _items(red_image_path)
    ]
    assert torch.allclose(embedded, embedder.encode(folded), atol=1e-6)
    without = embedder.encode([{k: v for k, v in i.items() if k != "cot"} for i in _items(red_image_path)])
    assert not torch.allclose(embedded, without, atol=1e-4)  # the T-CoT changes the embedding
    assert torch.allclose(embedded.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_embedding_trainer_learns_from_input_plus_tcot(tiny_backbones, red_image_path, tmp_path):
    import datasets

    from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer

    rows = []
    for i, colour in enumerate(["red", "blue", "green", "pink"]):
        cot = format_tcot(keywords=[f"{colour} square"], rethink="checked", answer=f"a {colour} square")
        rows.append(
            {
                "query_id": f"q{i}",
                "query_text": "<|image_1|>\nFind a caption that describes the given image.",
                "query_image": red_image_path,
                "query_cot": cot,
                "pos_id": f"c{i}",
                "pos_text": f"a {colour} square",
                "pos_image": "",
            }
        )
    pairs = attach_cot(datasets.Dataset.from_list(rows))
    assert "query_cot" not in pairs.column_names
    assert pairs[0]["query_text"].endswith("\n" + rows[0]["query_cot"])

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    model = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = EmbeddingDistillConfig(
        str(tmp_path),
        loss="info_nce",
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
    )
    trainer = EmbeddingDistillTrainer(model, args=args, train_dataset=pairs)
    batch = trainer.data_collator([pairs[0]])
    expected = model.processor.prepare_items([{k[6:]: rows[0][k] for k in ("query_text", "query_image", "query_cot")}])
    assert torch.equal(batch["query_input_ids"], expected["input_ids"])  # the collator sees [input, T-CoT]
    trainer.train()
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
