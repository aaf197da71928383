"""Shared fixtures: tiny backbones built once per session, offline."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _TinyBackbones(Mapping):
    """kind -> folder, each backbone built on first use, so a test session pays only for the kinds it touches."""

    def __init__(self, root: Path):
        self._root = root
        self._built: dict[str, str] = {}

    def __getitem__(self, kind: str) -> str:
        from unime_hf.testing.tiny import TINY_KINDS, build_tiny_backbone

        if kind not in TINY_KINDS:
            raise KeyError(kind)
        if kind not in self._built:
            self._built[kind] = str(build_tiny_backbone(kind, self._root / kind, seed=0))
        return self._built[kind]

    def __iter__(self) -> Iterator[str]:
        from unime_hf.testing.tiny import TINY_KINDS

        return iter(TINY_KINDS)

    def __len__(self) -> int:
        from unime_hf.testing.tiny import TINY_KINDS

        return len(TINY_KINDS)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> Mapping[str, str]:
    """kind -> folder of a tiny random generative backbone with its processor (every kind in `TINY_KINDS`)."""
    return _TinyBackbones(tmp_path_factory.mktemp("tiny-backbones"))


@pytest.fixture(scope="session")
def red_image_path(tmp_path_factory) -> str:
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("images") / "red_square.png"
    image = Image.new("RGB", (56, 42), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([8, 8, 30, 30], fill=(220, 20, 20))
    image.save(path)
    return str(path)
