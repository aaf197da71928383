"""Tiny random backbones built offline: tokenizer, image-only processor and generative model in one folder.

Tests and the demo use nothing else. Each folder is well under 2 MB, built in a few seconds and byte-identical for
the same seed. The architecture is the real one (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision) at toy sizes, so
every code path is the one a real checkpoint takes.

Example:

```python
>>> from unime_hf.testing.tiny import build_tiny_backbone
>>> path = build_tiny_backbone("qwen2_vl", "/tmp/tiny-qwen2-vl")
>>> from transformers import AutoModelForImageTextToText, AutoProcessor
>>> model = AutoModelForImageTextToText.from_pretrained(path)
>>> processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    LlavaOnevisionConfig,
    LlavaOnevisionImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
)

from unime_hf.models.processing_unime import PROCESSOR_CLASSES, save_processor

TINY_KINDS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision")

# Qwen2-style chat markup. `{% generation %}` marks assistant text so that trainers can put the loss on answers only.
_CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{- IMAGE -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- render(message['content']) + '<|im_end|>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- render(message['content']) + '<|im_end|>' -}}{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_QWEN3_PATCH = 16  # Qwen3-VL's patch size (Qwen2-VL and Qwen2.5-VL use 14)
_LLAVA_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# Text the byte-level BPE is trained on: enough that prompts of the shapes world, the judge and the reranker
# tokenize into short sequences. The answers the judge and reranker read must be single tokens.
_CORPUS = [
    "Yes",
    "No",
    " Yes",
    " No",
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements "
    "of the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'. Query:, Candidates:.",
    "I will provide you with a query followed by multiple candidates in the format: (1) candidate1 (2) candidate2, "
    "etc. Each candidate is independent of the others. Evaluate each candidate against the query, and respond with "
    "the number corresponding to the candidate that best meets the requirements of the query.",
    "Represent the given image. Represent the given image with the following question: Find an image that matches "
    "the given caption. Find a caption that describes the given image. What is in the image? Which shape, colour, "
    "size, position? Answer the question.",
    "a an the image with small medium large red orange yellow green cyan blue purple pink magenta brown grey white "
    "black circle ellipse square rectangle triangle diamond star hexagon pentagon cross",
    "top bottom left right center middle above below next to of and at in on one two three four objects shape",
    "thinking rethink answer evidence keywords bbox_2d key frames",
    "<thinking> </thinking> <rethink> </rethink> <answer> </answer> { } [ ] ( ) : , . 0 1 2 3 4 5 6 7 8 9 10",
]


def _train_tokenizer(special_tokens: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="right",
        model_max_length=4096,
    )


def _text_kwargs(tokenizer: PreTrainedTokenizerFast, hidden_size: int, layers: int, heads: int) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "max_position_embeddings": 4096,
        "bos_token_id": None,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }


def _qwen_config(kind: str, tokenizer: PreTrainedTokenizerFast, hidden_size: int, vision_hidden_size: int = 32):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL}
    heads = 4
    half_head_dim = hidden_size // heads // 2
    # Multimodal RoPE splits each head's rotary dims over (time, height, width).
    mrope = [half_head_dim - 2 * (half_head_dim // 3), half_head_dim // 3, half_head_dim // 3]
    text = _text_kwargs(tokenizer, hidden_size, layers=2, heads=heads)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    vision = {
        "depth": 2,
        "hidden_size": vision_hidden_size if kind == "qwen2_5_vl" else hidden_size,
        "num_heads": max(2, vision_hidden_size // 16),
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "in_channels": 3,
    }
    common = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": True,
    }
    if kind == "qwen2_vl":
        vision.update(embed_dim=vision_hidden_size, mlp_ratio=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    if kind == "qwen3_vl":
        # Qwen3-VL: an explicit head_dim, interleaved M-RoPE, 16-pixel patches, a learned position grid that is
        # resampled to each image's grid (num_position_embeddings must be a square), and DeepStack: the merged
        # features of the vision layers in `deepstack_visual_indexes` are added to the first text layers' states.
        text.update(head_dim=hidden_size // heads)
        text["rope_parameters"].update(mrope_interleaved=True)
        vision.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
            patch_size=_QWEN3_PATCH,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, **common)
    vision.update(
        intermediate_size=2 * vision_hidden_size,
        out_hidden_size=hidden_size,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)


def _pinpoints(image_size: int) -> list[list[int]]:
    # Any-resolution tiling for LLaVA-OneVision: one tile, or two side by side / stacked.
    return [[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size]]


def _llava_config(tokenizer: PreTrainedTokenizerFast, hidden_size: int, image_size: int, vision_hidden_size: int = 32):
    text = _text_kwargs(tokenizer, hidden_size, layers=2, heads=4)
    text["model_type"] = "qwen2"
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": vision_hidden_size,
        "intermediate_size": 2 * vision_hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": max(2, vision_hidden_size // 16),
        "image_size": image_size,
        "patch_size": 14,
        "vision_use_head": False,
    }
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=_pinpoints(image_size),
        vision_aspect_ratio="anyres_max_1",
        tie_word_embeddings=True,
    )


def build_tiny_processor(
    kind: str,
    tokenizer: PreTrainedTokenizerFast,
    image_size: int = 28,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
):
    """The image-only processor of a tiny backbone: PIL image processor + tokenizer + chat template.

    `image_mean` / `image_std` replace the backbone's usual normalisation (CLIP's; Qwen3-VL's is 0.5 / 0.5), e.g.
    `(1, 1, 1)` / `(0.5, 0.5, 0.5)` maps a white background to zero input."""
    normalisation = {}
    if image_mean is not None:
        normalisation["image_mean"] = list(image_mean)
    if image_std is not None:
        normalisation["image_std"] = list(image_std)
    if kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        # min/max pixels keep every image at a handful of patches; patches merged 2x2 into one token.
        patch = _QWEN3_PATCH if kind == "qwen3_vl" else 14
        if kind == "qwen3_vl":
            # Qwen3-VL's own normalisation (its checkpoints use 0.5 / 0.5, not CLIP's statistics).
            normalisation = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, **normalisation}
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=4 * patch * patch,
            max_pixels=16 * patch * patch,
            patch_size=patch,
            merge_size=2,
            temporal_patch_size=2,
            **normalisation,
        )
        template = _CHAT_TEMPLATE.replace("IMAGE", "'<|vision_start|><|image_pad|><|vision_end|>'")
        return PROCESSOR_CLASSES[kind](image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
    if kind == "llava_onevision":
        image_processor = LlavaOnevisionImageProcessorPil(
            size={"height": image_size, "width": image_size},
            crop_size={"height": image_size, "width": image_size},
            image_grid_pinpoints=_pinpoints(image_size),
            do_pad=True,
            **normalisation,
        )
        template = _CHAT_TEMPLATE.replace("IMAGE", "'<image>'")
        return PROCESSOR_CLASSES[kind](
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=(image_size // 14) ** 2,
            vision_feature_select_strategy="full",
            vision_aspect_ratio="anyres_max_1",
            chat_template=template,
        )
    raise ValueError(f"Unknown tiny backbone kind {kind!r}; expected one of {TINY_KINDS}.")


def build_tiny_backbone(
    kind: str,
    path: str | Path,
    seed: int = 0,
    hidden_size: int = 64,
    vocab_size: int = 512,
    vision_hidden_size: int = 32,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> Path:
    """Write a random tiny generative VLM of the given architecture with its tokenizer and processor to `path`.

    Args:
        kind (`str`):
            One of `"qwen2_vl"`, `"qwen2_5_vl"`, `"qwen3_vl"`, `"llava_onevision"`.
        path (`str` or `Path`):
            Output folder (created; existing files are overwritten).
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights; the same seed gives byte-identical files.
        hidden_size (`int`, *optional*, defaults to 64):
            Hidden size of the language model (a multiple of 8).
        vocab_size (`int`, *optional*, defaults to 512):
            Target size of the byte-level BPE vocabulary (at least 256 + special tokens).
        vision_hidden_size (`int`, *optional*, defaults to 32):
            Width of the vision encoder (a multiple of 16); one attention head per 16 dimensions, at least 2.
        image_mean, image_std (`Sequence[float]`, *optional*):
            Image normalisation instead of the backbone's usual one; the demo uses `(1, 1, 1)` and `(0.5, 0.5, 0.5)`
            so that the shapes world's white background is zero input and only the shapes carry signal.

    Returns:
        `Path`: the folder, loadable with `AutoModelForImageTextToText.from_pretrained` and
        `AutoProcessor.from_pretrained(..., trust_remote_code=True)`.
    """
    if kind not in TINY_KINDS:
        raise ValueError(f"Unknown tiny backbone kind {kind!r}; expected one of {TINY_KINDS}.")
    if hidden_size % 8:
        raise ValueError(f"`hidden_size` must be a multiple of 8, got {hidden_size}.")
    if vision_hidden_size % 16 or vision_hidden_size < 32:
        raise ValueError(f"`vision_hidden_size` must be a multiple of 16 and >= 32, got {vision_hidden_size}.")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    special = _LLAVA_SPECIAL if kind == "llava_onevision" else _QWEN_SPECIAL
    tokenizer = _train_tokenizer(special, vocab_size)
    image_size = 28
    if kind == "llava_onevision":
        config = _llava_config(tokenizer, hidden_size, image_size, vision_hidden_size)
    else:
        config = _qwen_config(kind, tokenizer, hidden_size, vision_hidden_size)

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    save_processor(build_tiny_processor(kind, tokenizer, image_size, image_mean, image_std), path)
    return path
