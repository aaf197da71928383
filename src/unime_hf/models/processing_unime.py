# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Processors for UniME embedding models: turning text / image / image+text items into backbone inputs.

This file is copied next to every saved checkpoint (and tiny backbone) as remote code: it imports only `transformers`,
`PIL` and the standard library, never `unime_hf`.

The stock Qwen2-VL / Qwen2.5-VL / Qwen3-VL / LLaVA-OneVision processors also build a video processor, which needs
torchvision. The classes here are image-only subclasses of the stock ones: same image-token expansion, same saved
files, no torchvision. `AutoProcessor.from_pretrained(path, trust_remote_code=True)` returns them through `auto_map`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from transformers import LlavaOnevisionProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor
from transformers.feature_extraction_utils import BatchFeature

# MMEB marks the image inside the text with `<|image_1|>`; each backbone has its own image prompt.
MMEB_IMAGE_PLACEHOLDER = re.compile(r"<\|image_\d+\|>")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
RESIZE_POLICIES = ("none", "square", "longest_side")
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold


class ItemError(ValueError):
    """An input item that cannot be turned into model inputs; the message names the item."""


def _describe(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def looks_like_image_path(value: Any) -> bool:
    """Whether a value is an image path: a `Path`, or a string without line breaks ending in an image suffix."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and "\n" not in value and value.lower().endswith(IMAGE_SUFFIXES)


def load_image(
    image: Any,
    *,
    image_root: str | os.PathLike | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    where: str = "image",
) -> Image.Image:
    """Open an image given as a PIL image or a path (relative paths are joined to `image_root`) as RGB.

    Raises:
        `ItemError`: for a missing or unreadable file, or an image over `max_image_pixels` (a decompression bomb);
            the message starts with `where`.
    """
    if isinstance(image, Image.Image):
        pixels = image.width * image.height
        if max_image_pixels is not None and pixels > max_image_pixels:
            raise ItemError(
                f"{where}: image of {image.width}x{image.height} = {pixels} pixels exceeds max_image_pixels="
                f"{max_image_pixels} (possible decompression bomb); resize it or raise max_image_pixels."
            )
        return image.convert("RGB") if image.mode != "RGB" else image
    if not isinstance(image, (str, os.PathLike)):
        raise ItemError(f"{where}: an image must be a PIL image or a path, got {type(image).__name__}.")
    path = Path(image)
    if image_root is not None and not path.is_absolute():
        path = Path(image_root) / path
    if not path.is_file():
        raise ItemError(f"{where}: image file not found: {str(path)!r}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                # The header gives the size before any pixel is decoded.
                pixels = opened.width * opened.height
                if max_image_pixels is not None and pixels > max_image_pixels:
                    raise ItemError(
                        f"{where}: image file {str(path)!r} is {opened.width}x{opened.height} = {pixels} pixels, "
                        f"over max_image_pixels={max_image_pixels} (possible decompression bomb)."
                    )
                return opened.convert("RGB")
    except ItemError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ItemError(f"{where}: image file {str(path)!r} is too large (decompression bomb): {err}") from err
    except Exception as err:  # PIL raises many types for corrupt files
        raise ItemError(f"{where}: cannot read image file {str(path)!r}: {err}") from err


def resize_image(image: Image.Image, policy: str, size: int | None) -> Image.Image:
    """Apply a resize policy: `"none"`, `"square"` (to `size` x `size`) or `"longest_side"` (longest side = `size`)."""
    if policy == "none" or size is None:
        return image
    if policy == "square":
        return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)
    if policy == "longest_side":
        scale = size / max(image.size)
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image if new_size == image.size else image.resize(new_size, Image.Resampling.BICUBIC)
    raise ValueError(f"Unknown resize policy {policy!r}; expected one of {RESIZE_POLICIES}.")


class UniMEItemsMixin:
    """Turns embedding items into a padded batch. Mixed into the image-only processors below.

    An item is a string (text; or an image path if it ends in an image suffix), a `pathlib.Path` (image path),
    a PIL image, or a dict with `"text"` and/or `"image"` (and optionally `"instruction"`). Texts may carry MMEB
    `<|image_1|>` placeholders, which become the backbone's image prompt.
    """

    #: The text that stands for one image before expansion into image tokens.
    image_prompt: str = ""

    def _init_item_options(
        self, image_size: int | None, resize_policy: str, max_image_pixels: int | None, image_root: str | None
    ) -> None:
        if resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"`resize_policy` must be one of {RESIZE_POLICIES}, got {resize_policy!r}.")
        if resize_policy != "none" and (image_size is None or image_size < 1):
            raise ValueError(f"`resize_policy={resize_policy!r}` needs a positive `image_size`, got {image_size!r}.")
        self.image_size = image_size
        self.resize_policy = resize_policy
        self.max_image_pixels = max_image_pixels
        self.image_root = image_root

    def format_item(
        self, item: Any, *, instruction: str | None = None, image_root: str | os.PathLike | None = None, index: int = 0
    ) -> tuple[str, Image.Image | None]:
        """Return the prompt text and the (loaded, resized) image of one item."""
        where = f"item {index} ({_describe(item)})"
        text: str | None
        image: Any
        if isinstance(item, dict):
            unknown = set(item) - {"text", "image", "instruction", "cot"}
            if unknown:
                raise ItemError(
                    f"{where}: unknown keys {sorted(unknown)}; expected 'text', 'image', 'instruction', 'cot'."
                )
            text, image = item.get("text"), item.get("image")
            instruction = item.get("instruction") or instruction
            cot = item.get("cot")
            if cot is not None and not isinstance(cot, str):
                raise ItemError(f"{where}: 'cot' must be a string, got {type(cot).__name__}.")
            if cot:
                # A reasoning trace (Embed-RL T-CoT) is appended after the input it explains.
                text = f"{text}\n{cot}" if text else cot
        elif isinstance(item, Image.Image) or looks_like_image_path(item):
            text, image = None, item
        elif isinstance(item, str):
            text, image = item, None
        else:
            raise ItemError(f"{where}: expected a string, a PIL image, an image path or a dict, got {type(item)}.")
        if text is not None and not isinstance(text, str):
            raise ItemError(f"{where}: 'text' must be a string, got {type(text).__name__}.")
        text = text or None
        image = image if image not in ("", None) else None
        if text is None and image is None:
            raise ItemError(f"{where}: the item has neither text nor image.")

        placeholders = len(MMEB_IMAGE_PLACEHOLDER.findall(text)) if text else 0
        if placeholders and image is None:
            raise ItemError(f"{where}: the text has an image placeholder like <|image_1|> but the item has no image.")
        if placeholders > 1:
            raise ItemError(f"{where}: the text has {placeholders} image placeholders; one image per item is allowed.")

        loaded = None
        if image is not None:
            loaded = load_image(
                image,
                image_root=image_root if image_root is not None else self.image_root,
                max_image_pixels=self.max_image_pixels,
                where=where,
            )
            loaded = resize_image(loaded, self.resize_policy, self.image_size)
            if placeholders:
                text = MMEB_IMAGE_PLACEHOLDER.sub(self.image_prompt, text)
            else:
                text = self.image_prompt + ("\n" + text if text else "")
        if instruction:
            text = f"{instruction}\n{text}"
        return text, loaded

    def prepare_items(
        self,
        items: Sequence[Any],
        *,
        instruction: str | None = None,
        image_root: str | os.PathLike | None = None,
        return_tensors: str = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Build a padded batch of backbone inputs from embedding items.

        Args:
            items (`Sequence`):
                Strings, image paths, PIL images or `{"text", "image", "instruction"}` dicts.
            instruction (`str`, *optional*):
                Prepended to every item that has no instruction of its own.
            image_root (`str`, *optional*):
                Directory that relative image paths are relative to (defaults to the processor's `image_root`).
            kwargs:
                Passed to the processor call (e.g. `max_length`).
        """
        if isinstance(items, (str, dict, Image.Image)):
            items = [items]
        if len(items) == 0:
            raise ItemError("No items to encode.")
        texts, images = [], []
        for index, item in enumerate(items):
            text, image = self.format_item(item, instruction=instruction, image_root=image_root, index=index)
            texts.append(text)
            if image is not None:
                images.append(image)
        max_length = kwargs.pop("max_length", None)
        if max_length is not None and images:
            self._check_image_items_fit(texts, images, max_length)
        if max_length is not None:
            kwargs.update(truncation=True, max_length=max_length)
        return self(text=texts, images=images or None, padding=True, return_tensors=return_tensors, **kwargs)

    def _check_image_items_fit(self, texts: list[str], images: list, max_length: int) -> None:
        # Truncation may shorten texts but never cut into image tokens (the model would fail to place the image).
        unpadded = self(text=texts, images=images, padding=False)
        for index, ids in enumerate(unpadded["input_ids"]):
            if len(ids) > max_length and self.image_prompt in texts[index]:
                raise ItemError(
                    f"item {index}: {len(ids)} tokens with its image, over max_length={max_length}; raise max_length "
                    "or lower the image resolution (image_size / resize_policy)."
                )


class _ImageOnlyQwenProcessor(UniMEItemsMixin):
    """Shared `__init__` of the Qwen2-VL, Qwen2.5-VL and Qwen3-VL image-only processors (no `video_processor`)."""

    image_prompt = "<|vision_start|><|image_pad|><|vision_end|>"

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_size: int | None = None,
        resize_policy: str = "none",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        image_root: str | None = None,
        **kwargs,
    ):
        self._init_item_options(image_size, resize_policy, max_image_pixels, image_root)
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)


class UniMEQwen2VLProcessor(_ImageOnlyQwenProcessor, Qwen2VLProcessor):
    """Image-only Qwen2-VL processor (no video processor, so no torchvision) with UniME item handling."""


class UniMEQwen2_5_VLProcessor(_ImageOnlyQwenProcessor, Qwen2_5_VLProcessor):
    """Image-only Qwen2.5-VL processor (no video processor, so no torchvision) with UniME item handling."""


class UniMEQwen3VLProcessor(_ImageOnlyQwenProcessor, Qwen3VLProcessor):
    """Image-only Qwen3-VL processor (no video processor, so no torchvision) with UniME item handling.

    Images expand as in Qwen2-VL (one `<|image_pad|>` per 2x2 merged patch, 16-pixel patches); Qwen3-VL's
    differences are in videos (frame timestamps) and in the model (DeepStack), neither of which this class touches.
    """


class UniMELlavaOnevisionProcessor(UniMEItemsMixin, LlavaOnevisionProcessor):
    """Image-only LLaVA-OneVision processor (no video processor, so no torchvision) with UniME item handling."""

    image_prompt = "<image>"

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        vision_aspect_ratio: str = "anyres_max_9",
        image_size: int | None = None,
        resize_policy: str = "none",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        image_root: str | None = None,
        **kwargs,
    ):
        self._init_item_options(image_size, resize_policy, max_image_pixels, image_root)
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )


#: backbone `model_type` -> image-only processor class
PROCESSOR_CLASSES: dict[str, type] = {
    "qwen2_vl": UniMEQwen2VLProcessor,
    "qwen2_5_vl": UniMEQwen2_5_VLProcessor,
    "qwen3_vl": UniMEQwen3VLProcessor,
    "llava_onevision": UniMELlavaOnevisionProcessor,
}
# With an auto class, `save_pretrained` (ours, the Trainer's, TRL's) copies this file next to the processor and writes
# `auto_map`, so `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` returns the class, not the tokenizer.
for _processor_class in PROCESSOR_CLASSES.values():
    _processor_class.register_for_auto_class("AutoProcessor")


def as_unime_processor(processor: Any, model_type: str):
    """Wrap a stock processor (e.g. `Qwen2VLProcessor`) into the UniME processor of the same backbone."""
    # Duck typing: a processor loaded as remote code is a class from another module copy of this file.
    if hasattr(processor, "prepare_items"):
        return processor
    if model_type not in PROCESSOR_CLASSES:
        supported = sorted(PROCESSOR_CLASSES)
        raise ValueError(f"No UniME processor for backbone type {model_type!r}; supported: {supported}.")
    kwargs = {"image_processor": processor.image_processor, "tokenizer": processor.tokenizer}
    if model_type == "llava_onevision":
        kwargs.update(
            num_image_tokens=processor.num_image_tokens,
            vision_feature_select_strategy=processor.vision_feature_select_strategy,
            vision_aspect_ratio=processor.vision_aspect_ratio,
        )
    return PROCESSOR_CLASSES[model_type](chat_template=getattr(processor, "chat_template", None), **kwargs)


def load_processor(name_or_path: str | os.PathLike, **kwargs: Any):
    """Load the UniME processor of a checkpoint or of a stock VLM checkpoint, without torchvision.

    A folder saved by unime-hf loads through `AutoProcessor` (`trust_remote_code=True`). For a stock checkpoint whose
    processor needs torchvision (Qwen2-VL's video processor), the image-only processor is built from its tokenizer,
    image processor and `processor_config.json`.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.utils import cached_file

    model_type = None
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=True)
        backbone = getattr(config, "backbone_config", None) or config
        model_type = backbone.model_type
    except (OSError, ValueError):
        pass
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=True, **kwargs)
        if hasattr(processor, "prepare_items"):
            return processor
        if hasattr(processor, "image_processor") and model_type in PROCESSOR_CLASSES:
            return as_unime_processor(processor, model_type)
    except (OSError, ValueError, ImportError, AttributeError, TypeError):
        pass
    if model_type not in PROCESSOR_CLASSES:
        raise ValueError(
            f"Cannot build a UniME processor for {str(name_or_path)!r}: backbone type {model_type!r} is not one of "
            f"{sorted(PROCESSOR_CLASSES)}."
        )
    extra: dict[str, Any] = {}
    config_file = cached_file(name_or_path, "processor_config.json", _raise_exceptions_for_missing_entries=False)
    if config_file is not None:
        import json

        saved = json.loads(Path(config_file).read_text(encoding="utf-8"))
        for key in ("num_image_tokens", "vision_feature_select_strategy", "vision_aspect_ratio"):
            if key in saved:
                extra[key] = saved[key]
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
    return PROCESSOR_CLASSES[model_type](
        image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template, **extra
    )


def save_processor(processor: Any, save_directory: str | os.PathLike) -> None:
    """Save a processor so that `AutoProcessor.from_pretrained(save_directory, trust_remote_code=True)` returns a UniME
    processor: a stock one is converted first; a UniME one writes this file and `auto_map` itself."""
    if not hasattr(processor, "prepare_items"):
        raise ValueError(
            f"{type(processor).__name__} is not a UniME processor; convert it with `as_unime_processor` first."
        )
    processor.save_pretrained(save_directory)
