"""Shared fixtures: tiny backbones built once per session, offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_KINDS = ("qwen2_vl", "qwen2_5_vl", "llava_onevision")


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, str]:
    """kind -> folder of a tiny random generative backbone with its processor."""
    from unime_hf.testing.tiny import build_tiny_backbone

    root = tmp_path_factory.mktemp("tiny-backbones")
    return {kind: str(build_tiny_backbone(kind, root / kind, seed=0)) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def red_image_path(tmp_path_factory) -> str:
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("images") / "red_square.png"
    image = Image.new("RGB", (56, 42), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([8, 8, 30, 30], fill=(220, 20, 20))
    image.save(path)
    return str(path)
