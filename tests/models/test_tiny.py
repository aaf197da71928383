from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from unime_hf.models.processing_unime import PROCESSOR_CLASSES
from unime_hf.testing.tiny import TINY_KINDS, build_tiny_backbone

EXPECTED_MODEL_CLASS = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
}


def _folder_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_backbone_loads_with_auto_classes(tiny_backbones, kind):
    path = Path(tiny_backbones[kind])
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < 2 * 1024 * 1024, f"{kind} folder is {size} bytes"

    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == EXPECTED_MODEL_CLASS[kind]
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    # Not the bare tokenizer: the image-only processor (a remote-code copy of our class) with item handling.
    assert type(processor).__name__ == PROCESSOR_CLASSES[kind].__name__
    assert hasattr(processor, "prepare_items")
    assert processor.image_processor is not None
    tokenizer = processor.tokenizer
    for answer in ("Yes", "No"):
        assert len(tokenizer.encode(answer, add_special_tokens=False)) == 1
    rendered = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert processor.image_prompt in rendered and rendered.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_backbone_is_deterministic(tmp_path, kind):
    first = _folder_bytes(build_tiny_backbone(kind, tmp_path / "a", seed=3))
    second = _folder_bytes(build_tiny_backbone(kind, tmp_path / "b", seed=3))
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two builds with the same seed"
    other = _folder_bytes(build_tiny_backbone(kind, tmp_path / "c", seed=4))
    assert other["model.safetensors"] != first["model.safetensors"]


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown tiny backbone kind 'gpt2'"):
        build_tiny_backbone("gpt2", tmp_path)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_vision_width_and_normalisation_options(tmp_path, kind):
    from PIL import Image

    from unime_hf.models.processing_unime import load_processor

    path = build_tiny_backbone(kind, tmp_path, vision_hidden_size=64, image_mean=(1, 1, 1), image_std=(0.5, 0.5, 0.5))
    model = AutoModelForImageTextToText.from_pretrained(path)
    vision = model.config.vision_config
    assert getattr(vision, "embed_dim", None) == 64 or vision.hidden_size == 64
    processor = load_processor(path)
    assert list(processor.image_processor.image_mean) == [1.0, 1.0, 1.0]
    # A white image is all zeros after this normalisation; a red one is not.
    white = processor.image_processor(Image.new("RGB", (56, 56), "white"), return_tensors="pt")["pixel_values"]
    red = processor.image_processor(Image.new("RGB", (56, 56), "red"), return_tensors="pt")["pixel_values"]
    assert white.abs().max() < 1e-6 < red.abs().max()
    with pytest.raises(ValueError, match="vision_hidden_size"):
        build_tiny_backbone(kind, tmp_path / "bad", vision_hidden_size=40)


def test_tiny_qwen3_vl_has_the_qwen3_vl_parts(tiny_backbones):
    """16-pixel patches, DeepStack, interleaved M-RoPE with an explicit head_dim, 0.5/0.5 image normalisation."""
    from unime_hf.models.processing_unime import load_processor

    path = tiny_backbones["qwen3_vl"]
    model = AutoModelForImageTextToText.from_pretrained(path)
    vision, text = model.config.vision_config, model.config.text_config
    assert (vision.patch_size, vision.out_hidden_size) == (16, text.hidden_size)
    assert list(vision.deepstack_visual_indexes) == [0] and len(model.model.visual.deepstack_merger_list) == 1
    assert int(vision.num_position_embeddings**0.5) ** 2 == vision.num_position_embeddings
    assert text.head_dim * text.num_attention_heads == text.hidden_size
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    assert text.rope_parameters["mrope_interleaved"] is True
    processor = load_processor(path)
    assert processor.image_processor.patch_size == 16
    assert list(processor.image_processor.image_mean) == list(processor.image_processor.image_std) == [0.5] * 3
