"""`detect_model_kind` / `load_embedder`: a backbone folder is wrapped, a UniME checkpoint loaded, for every kind."""

from __future__ import annotations

import pytest
import torch

from unime_hf.models.auto import detect_model_kind, load_embedder
from unime_hf.models.modeling_unime import UniMEEmbeddingModel
from unime_hf.testing.tiny import TINY_KINDS


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_backbone_and_checkpoint_are_told_apart_and_load(tiny_backbones, red_image_path, tmp_path, kind):
    backbone = tiny_backbones[kind]
    assert detect_model_kind(backbone) == "backbone"
    wrapped = load_embedder(backbone, device="cpu")
    assert isinstance(wrapped, UniMEEmbeddingModel) and not wrapped.training
    assert wrapped.config.backbone_config.model_type == kind
    items = ["a red square", {"text": "a red square", "image": red_image_path}]
    expected = wrapped.encode(items)

    wrapped.save_pretrained(tmp_path)
    # A UniME checkpoint also holds sentence-transformers files; its model_type decides.
    assert (tmp_path / "modules.json").is_file()
    assert detect_model_kind(str(tmp_path)) == "unime"
    loaded = load_embedder(str(tmp_path), device="cpu")
    torch.testing.assert_close(loaded.encode(items), expected, atol=1e-5, rtol=0)


def test_unknown_kind_is_rejected(tiny_backbones):
    with pytest.raises(ValueError, match="`kind` must be one of"):
        load_embedder(tiny_backbones["qwen2_vl"], kind="clip")
