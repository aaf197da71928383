from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoProcessor

from unime_hf import UniMEEmbeddingModel
from unime_hf.models.processing_unime import load_processor, resize_image
from unime_hf.testing.tiny import TINY_KINDS


@pytest.fixture(scope="module")
def processors(tiny_backbones):
    return {kind: AutoProcessor.from_pretrained(path, trust_remote_code=True) for kind, path in tiny_backbones.items()}


def _bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid 1x1 PNG whose header claims `width` x `height` pixels."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # chunk type + 13 bytes of header data
    patched = ihdr[:4] + struct.pack(">II", width, height) + ihdr[12:]
    data[12:29] = patched
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(patched)))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_mmeb_placeholder_becomes_the_backbone_image_prompt(processors, red_image_path, kind):
    processor = processors[kind]
    text, image = processor.format_item({"text": "<|image_1|>\nRepresent the given image.", "image": red_image_path})
    assert text == f"{processor.image_prompt}\nRepresent the given image."
    assert image.mode == "RGB" and image.size == (56, 42)
    # Without a placeholder the image goes first; an instruction goes before everything.
    text, _ = processor.format_item({"text": "a caption", "image": red_image_path}, instruction="Find it.")
    assert text == f"Find it.\n{processor.image_prompt}\na caption"
    # A per-item instruction wins over the call's.
    text, image = processor.format_item({"text": "red", "instruction": "Mine."}, instruction="Call's.")
    assert (text, image) == ("Mine.\nred", None)
    batch = processor.prepare_items(["plain text", red_image_path])
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    counts = (batch["input_ids"] == image_token_id).sum(dim=1).tolist()
    assert counts[0] == 0 and counts[1] > 0


def test_image_paths_relative_to_a_root(processors, red_image_path, tmp_path):
    processor = processors["qwen2_vl"]
    root = Path(red_image_path).parent
    name = Path(red_image_path).name
    for item in (name, Path(name), {"image": name, "text": "a square"}):
        _, image = processor.format_item(item, image_root=root)
        assert image is not None and image.size == (56, 42)
    # A string without an image suffix is text, not a path.
    text, image = processor.format_item("red_square")
    assert (text, image) == ("red_square", None)


def test_resize_policies():
    image = Image.new("RGB", (80, 40))
    assert resize_image(image, "none", 28).size == (80, 40)
    assert resize_image(image, "square", 28).size == (28, 28)
    assert resize_image(image, "longest_side", 40).size == (40, 20)
    with pytest.raises(ValueError, match="Unknown resize policy"):
        resize_image(image, "crop", 28)


def test_resize_policy_is_saved_with_the_processor(tiny_backbones, tmp_path, red_image_path):
    processor = AutoProcessor.from_pretrained(
        tiny_backbones["qwen2_vl"], trust_remote_code=True, image_size=28, resize_policy="square"
    )
    _, image = processor.format_item(red_image_path)
    assert image.size == (28, 28)
    model = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])
    model.processor = processor
    model.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert (reloaded.resize_policy, reloaded.image_size) == ("square", 28)


def test_bad_resize_settings_are_rejected(tiny_backbones):
    with pytest.raises(ValueError, match="needs a positive `image_size`"):
        AutoProcessor.from_pretrained(tiny_backbones["qwen2_vl"], trust_remote_code=True, resize_policy="square")


@pytest.mark.parametrize(
    ("make_item", "message"),
    [
        (lambda d: {"text": "x", "image": str(d / "missing.png")}, r"item 2 .*image file not found: '.*missing\.png'"),
        (lambda d: str(d / "missing.jpg"), r"item 2 .*image file not found"),
        (lambda d: _corrupt(d), r"item 2 .*cannot read image file '.*corrupt\.png'"),
        (lambda d: {"text": ""}, r"item 2 .*neither text nor image"),
        (lambda d: {}, r"item 2 .*neither text nor image"),
        (lambda d: {"text": "<|image_1|> what?"}, r"item 2 .*placeholder .* no image"),
        (lambda d: _bomb_png(d / "bomb.png"), r"item 2 .*bomb\.png.*decompression bomb"),
        (lambda d: {"txt": "typo"}, r"item 2 .*unknown keys \['txt'\]"),
        (lambda d: {"text": "x", "cot": 3}, r"item 2 .*.cot. must be a string"),
        (lambda d: 42, r"item 2 .*expected a string, a PIL image"),
    ],
)
def test_bad_items_raise_errors_naming_the_item(processors, tmp_path, make_item, message):
    items = ["fine", "also fine", make_item(tmp_path)]
    with pytest.raises(ValueError, match=message):
        processors["qwen2_vl"].prepare_items(items)


def _corrupt(directory: Path) -> str:
    path = directory / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return str(path)


def test_over_large_in_memory_image_is_rejected(tiny_backbones):
    processor = AutoProcessor.from_pretrained(tiny_backbones["qwen2_vl"], trust_remote_code=True, max_image_pixels=100)
    with pytest.raises(ValueError, match=r"item 0 .*20x20 = 400 pixels exceeds max_image_pixels=100"):
        processor.prepare_items([Image.new("RGB", (20, 20))])


def test_encode_errors_name_the_index_in_the_callers_list(tiny_backbones, red_image_path, tmp_path):
    model = UniMEEmbeddingModel.from_backbone(tiny_backbones["qwen2_vl"])
    items = ["a"] * 5 + [str(tmp_path / "gone.png")] + ["b"] * 3
    # Items are sorted by length into batches; the error still names position 5 of the caller's list.
    with pytest.raises(ValueError, match=r"^item 5 .*gone\.png"):
        model.encode(items, batch_size=2)


def test_load_processor_builds_an_image_only_processor_for_a_stock_checkpoint(tiny_backbones, tmp_path):
    # A stock Qwen2-VL checkpoint: no remote code, processor class Qwen2VLProcessor (needs torchvision here).
    stock = tmp_path / "stock"
    shutil.copytree(tiny_backbones["qwen2_vl"], stock)
    (stock / "processing_unime.py").unlink()
    import json

    config_file = stock / "processor_config.json"
    data = json.loads(config_file.read_text())
    data.pop("auto_map")
    data["processor_class"] = "Qwen2VLProcessor"
    config_file.write_text(json.dumps(data))
    processor = load_processor(stock)
    assert type(processor).__name__ == "UniMEQwen2VLProcessor"
    assert processor.prepare_items(["hello"])["input_ids"].shape[0] == 1


def test_load_processor_for_a_hub_layout_qwen3_vl_checkpoint(tiny_backbones, tmp_path):
    # The files of Qwen/Qwen3-VL-*-Instruct: preprocessor_config.json (a torchvision "Fast" image processor),
    # video_preprocessor_config.json (Qwen3VLVideoProcessor, needs torchvision), no processor_config.json.
    import json

    stock = tmp_path / "stock"
    shutil.copytree(tiny_backbones["qwen3_vl"], stock)
    (stock / "processing_unime.py").unlink()
    image_config = json.loads((stock / "processor_config.json").read_text())["image_processor"]
    image_config.pop("auto_map")
    image_config.update(image_processor_type="Qwen2VLImageProcessorFast", processor_class="Qwen3VLProcessor")
    (stock / "preprocessor_config.json").write_text(json.dumps(image_config))
    video_config = {
        "video_processor_type": "Qwen3VLVideoProcessor",
        "processor_class": "Qwen3VLProcessor",
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    (stock / "video_preprocessor_config.json").write_text(json.dumps(video_config))
    (stock / "processor_config.json").unlink()
    tokenizer_config = json.loads((stock / "tokenizer_config.json").read_text())
    tokenizer_config.pop("auto_map")
    tokenizer_config["processor_class"] = "Qwen3VLProcessor"
    (stock / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    processor = load_processor(stock)
    assert type(processor).__name__ == "UniMEQwen3VLProcessor"
    assert processor.image_processor.patch_size == 16 and processor.chat_template
    expected = AutoProcessor.from_pretrained(tiny_backbones["qwen3_vl"], trust_remote_code=True)
    items = ["hello", Image.new("RGB", (40, 30), "red")]
    for key, value in expected.prepare_items(items).items():
        assert (processor.prepare_items(items)[key] == value).all(), key
    model = UniMEEmbeddingModel.from_backbone(stock)
    assert model.encode(items).shape == (2, model.config.hidden_size)


def test_llava_onevision_wide_images_match_the_model(tiny_backbones, tmp_path):
    # The any-resolution setting must survive save/load, or wide images get the wrong number of image tokens.
    processor = AutoProcessor.from_pretrained(tiny_backbones["llava_onevision"], trust_remote_code=True)
    assert processor.vision_aspect_ratio == "anyres_max_1"
    model = UniMEEmbeddingModel.from_backbone(tiny_backbones["llava_onevision"])
    wide, tall = Image.new("RGB", (56, 28), (200, 10, 10)), Image.new("RGB", (28, 84), (10, 10, 200))
    embeddings = model.encode([wide, tall, {"text": "a wide one", "image": wide}], batch_size=3)
    assert embeddings.shape == (3, model.config.hidden_size)


def test_max_length_truncates_texts_but_never_image_tokens(processors, red_image_path):
    processor = processors["qwen2_vl"]
    long_text = "a small red circle at the top left " * 20
    batch = processor.prepare_items([long_text, "short"], max_length=16)
    assert batch["input_ids"].shape[1] == 16
    with pytest.raises(ValueError, match=r"item 1: \d+ tokens with its image, over max_length=6"):
        processor.prepare_items(["ok", {"text": "a caption", "image": red_image_path}], max_length=6)


def test_plain_save_pretrained_keeps_the_processor_loadable(processors, tmp_path):
    processors["llava_onevision"].save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(reloaded).__name__ == "UniMELlavaOnevisionProcessor"
