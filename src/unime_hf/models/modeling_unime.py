# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""UniME embedding model: a multimodal LLM backbone, last-token pooling, L2 normalisation.

This file is copied next to every saved checkpoint as remote code: it imports only `torch`, `transformers` and its
sibling remote-code files, never `unime_hf`. With transformers alone:

```python
>>> from transformers import AutoModel, AutoProcessor
>>> model = AutoModel.from_pretrained(path, trust_remote_code=True)
>>> processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
>>> item = {"image": "cat.png", "text": "<|image_1|>\\nRepresent the given image."}
>>> embeddings = model.encode(["a red circle", item], processor=processor)
```
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_unime import UniMEConfig
from .processing_unime import as_unime_processor, load_processor, save_processor

# Remote-code files written next to a checkpoint; the last one is only there when sentence-transformers support is.
REMOTE_CODE_FILES = (
    "configuration_unime.py",
    "modeling_unime.py",
    "processing_unime.py",
    "sentence_transformers_unime.py",
)
SENTENCE_TRANSFORMERS_MODULE = "sentence_transformers_unime.UniMESentenceTransformerModule"


@dataclass
class UniMEEmbeddingOutput(ModelOutput):
    """Output of [`UniMEEmbeddingModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            Pooled (and, by default, L2-normalised) embeddings.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
            The backbone's last-layer token states, returned when `output_hidden_states=True`.
    """

    embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


def last_token_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """State of the last real token of each row, right for left padding, right padding and no padding alike."""
    if attention_mask is None:
        return hidden_states[:, -1]
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    # Index of the last position whose mask is 1 (argmax of mask * position picks the largest such position).
    last = (attention_mask.to(positions.dtype) * positions).argmax(dim=1)
    return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class UniMEPreTrainedModel(PreTrainedModel):
    config_class = UniMEConfig
    base_model_prefix = "unime"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = "past_key_values"

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The backbone initialises its own modules; the wrapper adds no parameters.
        backbone = getattr(self, "backbone", None)
        if backbone is not None and hasattr(backbone, "_init_weights"):
            backbone._init_weights(module)


class UniMEEmbeddingModel(UniMEPreTrainedModel):
    """A universal multimodal embedding model (UniME-V2): the base model of a generative VLM whose last-layer state
    at the last real token, L2-normalised, embeds text, image and image+text inputs in one space.

    Build one from a generative checkpoint with [`~UniMEEmbeddingModel.from_backbone`], load a saved one with
    `from_pretrained` (or `AutoModel.from_pretrained(path, trust_remote_code=True)`), and embed with
    [`~UniMEEmbeddingModel.encode`].
    """

    # Trainer must not skip gradient-accumulation scaling because forward takes **kwargs.
    accepts_loss_kwargs = False

    def __init__(self, config: UniMEConfig):
        super().__init__(config)
        if config.backbone_config is None:
            raise ValueError("UniMEConfig.backbone_config is required to build a UniMEEmbeddingModel.")
        self.backbone = AutoModel.from_config(config.backbone_config)
        self._no_split_modules = getattr(self.backbone, "_no_split_modules", None)
        self._processor = None
        self.post_init()

    @classmethod
    def from_backbone(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> UniMEEmbeddingModel:
        """Wrap a generative VLM checkpoint (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision) keeping its weights.

        Args:
            name_or_path (`str` or `os.PathLike`):
                A Hub id or a local folder of the generative model.
            kwargs:
                `pooling` and `normalize` go to [`UniMEConfig`]; the rest (`dtype`, `attn_implementation`,
                `device_map`, ...) to `AutoModel.from_pretrained` of the backbone.

        Example:

        ```python
        >>> model = UniMEEmbeddingModel.from_backbone("Qwen/Qwen2-VL-2B-Instruct", dtype=torch.bfloat16)
        ```
        """
        config_kwargs = {key: kwargs.pop(key) for key in ("pooling", "normalize") if key in kwargs}
        backbone = AutoModel.from_pretrained(name_or_path, **kwargs)
        # Build the (parameter-free) wrapper on the meta device around a copy of the backbone config, then attach the
        # loaded backbone: nothing is allocated twice and the backbone's attention implementation is kept.
        config = UniMEConfig(backbone_config=copy.deepcopy(backbone.config), **config_kwargs)
        config._attn_implementation = backbone.config._attn_implementation
        text_config = getattr(backbone.config, "text_config", backbone.config)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            # Top-level special token ids, where the Trainer looks for them.
            setattr(config, key, getattr(text_config, key, None))
        with torch.device("meta"):
            model = cls(config)
        model.backbone = backbone
        model.config.backbone_config = backbone.config
        model.config._name_or_path = str(name_or_path)
        return model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> UniMEEmbeddingOutput | tuple:
        r"""
        Args:
            input_ids, attention_mask:
                As for the backbone.
            kwargs:
                The backbone's image inputs (`pixel_values`, `image_grid_thw`, `image_sizes`, ...).

        Returns:
            [`UniMEEmbeddingOutput`] with `embeddings` of shape `(batch_size, hidden_size)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        kwargs.pop("labels", None)
        kwargs.pop("return_loss", None)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        hidden = outputs.last_hidden_state
        if self.config.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)
        else:
            pooled = last_token_pool(hidden, attention_mask)
        if self.config.normalize:
            pooled = F.normalize(pooled.float(), p=2, dim=-1).to(pooled.dtype)
        last_hidden_state = hidden if output_hidden_states else None
        if not return_dict:
            return (pooled,) if last_hidden_state is None else (pooled, last_hidden_state)
        return UniMEEmbeddingOutput(embeddings=pooled, last_hidden_state=last_hidden_state)

    # ----------------------------------------------------------------------------------------------------- encoding
    @property
    def processor(self):
        """The processor saved with the model, loaded on first use (or the one set with `model.processor = ...`)."""
        if self._processor is None:
            source = self.config._name_or_path
            if not source:
                raise ValueError(
                    "This model has no processor attached and was not loaded from a path; pass `processor=` to "
                    "`encode` or set `model.processor`."
                )
            self._processor = load_processor(source)
        return self._processor

    @processor.setter
    def processor(self, value) -> None:
        self._processor = value

    @torch.inference_mode()
    def encode(
        self,
        items: Any,
        processor: Any = None,
        batch_size: int = 16,
        instruction: str | None = None,
        image_root: str | os.PathLike | None = None,
        show_progress_bar: bool = False,
    ) -> torch.Tensor:
        """Embed items: strings, image paths, PIL images or `{"text", "image"}` dicts (MMEB `<|image_1|>` markers in
        the text are placed where the image goes).

        Args:
            items (`str`, `PIL.Image.Image`, `dict` or a list of them):
                What to embed.
            processor (*optional*):
                A UniME processor (`AutoProcessor.from_pretrained(path, trust_remote_code=True)`); defaults to the
                one saved with the model.
            batch_size (`int`, *optional*, defaults to 16):
                Items per forward pass. Items are sorted by length first so batches pad little.
            instruction (`str`, *optional*):
                Instruction prepended to every item without one of its own.
            image_root (`str`, *optional*):
                Folder that relative image paths are relative to.
            show_progress_bar (`bool`, *optional*, defaults to `False`):
                Show a tqdm bar over batches.

        Returns:
            `torch.Tensor` of shape `(len(items), hidden_size)` on the CPU, float32, L2-normalised (unless the
            config says otherwise), in the order of `items`.
        """
        processor = processor if processor is not None else self.processor
        if not hasattr(processor, "prepare_items"):
            processor = as_unime_processor(processor, self.config.backbone_config.model_type)
        single = not isinstance(items, (list, tuple))
        items = [items] if single else list(items)
        if not items:
            return torch.empty(0, self.config.hidden_size)
        # Sort by a cheap length proxy so that each batch pads little; restore the order at the end.
        order = sorted(range(len(items)), key=lambda i: _length_hint(items[i]), reverse=True)
        was_training = self.training
        self.eval()
        chunks = []
        starts = range(0, len(items), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Encoding", unit="batch")
        try:
            for start in starts:
                batch_items = [items[i] for i in order[start : start + batch_size]]
                batch_offset = start
                try:
                    inputs = processor.prepare_items(batch_items, instruction=instruction, image_root=image_root)
                except ValueError as err:
                    raise _renumber(err, batch_offset, order) from err
                inputs = inputs.to(self.device)
                if "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
                chunks.append(self(**inputs).embeddings.float().cpu())
        finally:
            self.train(was_training)
        embeddings = torch.cat(chunks)
        result = torch.empty_like(embeddings)
        result[torch.tensor(order)] = embeddings
        return result

    # ------------------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Save weights and config with `auto_map`, the remote-code files, the processor (if known) and the
        sentence-transformers files, so the folder loads with `AutoModel`, `AutoProcessor` and `SentenceTransformer`
        (all with `trust_remote_code=True`) without unime-hf installed."""
        save_directory = Path(save_directory)
        self.config.auto_map = {
            "AutoConfig": "configuration_unime.UniMEConfig",
            "AutoModel": "modeling_unime.UniMEEmbeddingModel",
        }
        self.config.architectures = [type(self).__name__]
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True) is False:
            return
        here = Path(__file__).parent
        for name in REMOTE_CODE_FILES:
            if (here / name).exists():
                shutil.copyfile(here / name, save_directory / name)
        processor = self._processor
        if processor is None and self.config._name_or_path and Path(self.config._name_or_path).is_dir():
            try:
                processor = self.processor
            except (OSError, ValueError):
                processor = None
        if processor is not None:
            save_processor(processor, save_directory)
        if (save_directory / "sentence_transformers_unime.py").exists():
            write_sentence_transformers_files(save_directory)


def _length_hint(item: Any) -> int:
    if isinstance(item, dict):
        text = (item.get("text") or "") + (item.get("cot") or "")
        return len(text) + (10_000 if item.get("image") else 0)
    if isinstance(item, str) and not item.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")):
        return len(item)
    return 10_000


def _renumber(err: ValueError, offset: int, order: list[int]) -> ValueError:
    """Rewrite 'item k' in a batch-level error into the item's index in the caller's list."""
    message = str(err)
    if message.startswith("item "):
        head, _, rest = message.partition(" (")
        try:
            local = int(head.split()[1])
            message = f"item {order[offset + local]} (" + rest
        except (IndexError, ValueError):
            pass
    return type(err)(message)


def write_sentence_transformers_files(save_directory: str | os.PathLike) -> None:
    """Write `modules.json` and `config_sentence_transformers.json` pointing at the UniME sentence-transformers
    module, so `SentenceTransformer(path, trust_remote_code=True)` embeds exactly like `model.encode`."""
    save_directory = Path(save_directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": SENTENCE_TRANSFORMERS_MODULE}]
    (save_directory / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    st_config = {
        "model_type": "SentenceTransformer",
        "prompts": {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    (save_directory / "config_sentence_transformers.json").write_text(
        json.dumps(st_config, indent=2) + "\n", encoding="utf-8"
    )
