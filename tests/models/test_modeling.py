from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from unime_hf import UniMEConfig, UniMEEmbeddingModel
from unime_hf.models.modeling_unime import last_token_pool
from unime_hf.testing.tiny import TINY_KINDS


def _items(image_path: str) -> list:
    image = Image.open(image_path)
    return [
        "a red square",
        {
            "text": "<|image_1|>\nRepresent the given image with the following question: What colour is the square?",
            "image": image_path,
        },
        image,
        "a much longer caption about a small blue circle at the top left next to a large green triangle",
        {"text": "Find the matching image.", "image": image},
        "red",
    ]


@pytest.fixture(scope="module")
def models(tiny_backbones):
    return {kind: UniMEEmbeddingModel.from_backbone(path) for kind, path in tiny_backbones.items()}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_from_backbone_keeps_backbone_weights(tiny_backbones, models, kind):
    generative = AutoModelForImageTextToText.from_pretrained(tiny_backbones[kind])
    expected = generative.model.state_dict()
    actual = models[kind].backbone.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=f"{kind}: {name} changed")
    assert models[kind].config.model_type == "unime"
    assert models[kind].config.backbone_config.model_type == kind


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_encode_normalised_and_order_preserving(models, red_image_path, kind):
    model = models[kind]
    items = _items(red_image_path)
    batched = model.encode(items, batch_size=4)
    assert batched.shape == (len(items), model.config.hidden_size)
    assert batched.dtype == torch.float32
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(len(items)), atol=1e-5, rtol=0)
    one_by_one = torch.cat([model.encode([item]) for item in items])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    # Different inputs give different vectors (the model is not constant).
    assert (batched[0] - batched[3]).abs().max() > 1e-3


def test_qwen3_vl_image_embeddings_use_deepstack(models, red_image_path):
    """Qwen3-VL adds merged features of early vision layers to the first text layers (DeepStack): they must reach
    the embedding of an image item and leave a text item's alone."""
    model = models["qwen3_vl"]
    items = ["a red square", {"text": "a red square", "image": red_image_path}]
    before = model.encode(items)
    merger = model.backbone.visual.deepstack_merger_list[0].linear_fc2
    saved = {name: tensor.clone() for name, tensor in merger.state_dict().items()}
    try:
        with torch.no_grad():
            merger.weight.zero_()
            merger.bias.zero_()
        after = model.encode(items)
    finally:
        merger.load_state_dict(saved)
    torch.testing.assert_close(after[0], before[0], atol=1e-6, rtol=0)
    assert (after[1] - before[1]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_left_and_right_padding_give_the_same_embeddings(models, tiny_backbones, red_image_path, kind):
    model = models[kind]
    items = _items(red_image_path)
    results = {}
    for side in ("left", "right"):
        processor = AutoProcessor.from_pretrained(tiny_backbones[kind], trust_remote_code=True)
        processor.tokenizer.padding_side = side
        batch = processor.prepare_items(items)
        lengths = batch["attention_mask"].sum(dim=1)
        assert lengths.min() < lengths.max(), "the batch must mix lengths for this test to mean anything"
        pad_column = 0 if side == "left" else -1
        assert (batch["attention_mask"][:, pad_column] == 0).any()
        results[side] = model.encode(items, processor=processor, batch_size=len(items))
    torch.testing.assert_close(results["left"], results["right"], atol=1e-5, rtol=0)


def test_last_token_pool_for_both_padding_sides():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_pool(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token_pool(hidden, left).flatten().tolist() == [3.0, 7.0]
    assert last_token_pool(hidden, None).flatten().tolist() == [3.0, 7.0]


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_sdpa_matches_eager(tiny_backbones, red_image_path, kind):
    eager = UniMEEmbeddingModel.from_backbone(tiny_backbones[kind], attn_implementation="eager")
    sdpa = UniMEEmbeddingModel.from_backbone(tiny_backbones[kind], attn_implementation="sdpa")
    assert sdpa.config.backbone_config.text_config._attn_implementation == "sdpa"
    assert eager.config.backbone_config.text_config._attn_implementation == "eager"
    items = _items(red_image_path)
    torch.testing.assert_close(sdpa.encode(items), eager.encode(items), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_gradient_checkpointing_gives_the_same_gradients(tiny_backbones, red_image_path, kind):
    processor = AutoProcessor.from_pretrained(tiny_backbones[kind], trust_remote_code=True)
    batch = processor.prepare_items(_items(red_image_path)[:3])
    grads = []
    for checkpointing in (False, True):
        model = UniMEEmbeddingModel.from_backbone(tiny_backbones[kind])
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_gradient_checkpointing
        embeddings = model(**batch).embeddings
        (embeddings @ embeddings.T).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_save_and_reload_in_package(models, tmp_path, red_image_path, kind):
    model = models[kind]
    items = _items(red_image_path)
    expected = model.encode(items)
    model.save_pretrained(tmp_path)
    for name in (
        "config.json",
        "model.safetensors",
        "modeling_unime.py",
        "configuration_unime.py",
        "processing_unime.py",
        "processor_config.json",
        "modules.json",
    ):
        assert (tmp_path / name).exists(), name
    reloaded = UniMEEmbeddingModel.from_pretrained(tmp_path)
    # No processor given: encode loads the one saved with the model.
    torch.testing.assert_close(reloaded.encode(items), expected, atol=1e-5, rtol=0)


def test_encode_without_processor_or_path_fails_clearly(tiny_backbones):
    config = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"]).config
    model = UniMEEmbeddingModel(UniMEConfig(backbone_config=config.backbone_config))
    with pytest.raises(ValueError, match="pass `processor=`"):
        model.encode(["hello"])


def test_config_validation_and_round_trip(tiny_backbones):
    backbone_config = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"]).config.backbone_config
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        UniMEConfig(backbone_config=backbone_config, pooling="cls")
    with pytest.raises(ValueError, match="must carry a `model_type`"):
        UniMEConfig(backbone_config={"hidden_size": 8})
    config = UniMEConfig(backbone_config=backbone_config.to_dict(), normalize=False, pooling="mean")
    again = UniMEConfig.from_dict(config.to_dict())
    assert again.backbone_config.model_type == "qwen2_vl"
    assert (again.pooling, again.normalize, again.hidden_size) == ("mean", False, 64)
