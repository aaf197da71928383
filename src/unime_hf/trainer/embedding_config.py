# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Configuration of [`EmbeddingDistillTrainer`]: `TrainingArguments` plus the UniME-V2 loss, data and LoRA options."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

EMBEDDING_LOSSES = ("symmetric_kl", "js", "info_nce", "hard_negative_ce")
# Losses computed over each query's own candidates [positive, hard negatives], with judge scores or hard labels.
LISTWISE_LOSSES = ("symmetric_kl", "js", "hard_negative_ce")
SOFT_LABEL_LOSSES = ("symmetric_kl", "js")
IMAGE_RESIZE_POLICIES = ("square", "longest_side")


@dataclass
class EmbeddingDistillConfig(TrainingArguments):
    r"""Configuration of [`EmbeddingDistillTrainer`] (UniME-V2 training, METHOD.md §3).

    Everything of [`~transformers.TrainingArguments`] plus the fields below. Defaults follow the paper: symmetric-KL
    distillation of the judge's scores at temperature 0.02 over the positive and 8 hard negatives; LoRA r=16,
    alpha=64, dropout 0.1 on the language model when `use_lora=True`.

    Parameters:
        loss (`str`, *optional*, defaults to `"symmetric_kl"`):
            `"symmetric_kl"` (UniME-V2, needs mined data), `"js"` (true Jensen-Shannon, needs mined data),
            `"info_nce"` (in-batch negatives, plus each query's hard negatives when the data is mined and
            `num_hard_negatives > 0`) or `"hard_negative_ce"` (cross-entropy over the positive and its hard
            negatives, needs mined data).
        loss_temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature of the loss (for both the model's and the judge's distributions).
        num_hard_negatives (`int`, *optional*, defaults to `8`):
            Hard negatives per query, taken in order from the mined ones.
        mask_duplicate_positives (`bool`, *optional*, defaults to `True`):
            InfoNCE: leave in-batch copies of a query's own positive (rows sharing the same corpus item, e.g. two VQA
            queries answered "yellow") out of its negatives. `False` counts them as negatives, as VLM2Vec does.
        grad_cache_chunk_size (`int`, *optional*):
            Items per forward pass with GradCache (embed without graph, loss on cached embeddings, backward chunk by
            chunk); `None` turns GradCache off. Gradients are those of the whole batch either way.
        max_length (`int`, *optional*):
            Truncate token sequences (image tokens included) to this length; `None` keeps them whole.
        image_size (`int`, *optional*):
            Resize images before the processor (672 for Qwen2-VL, 336 for LLaVA-OneVision in the paper); `None`
            leaves them to the processor.
        image_resize (`str`, *optional*, defaults to `"square"`):
            How `image_size` is applied: `"square"` (`image_size` x `image_size`) or `"longest_side"`.
        image_root (`str`, *optional*):
            Folder that relative image paths in the data are relative to.
        use_lora (`bool`, *optional*, defaults to `False`):
            Train LoRA adapters on the language model instead of all weights; merged into the weights on the final
            `save_model`.
        lora_r (`int`, *optional*, defaults to `16`):
            LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `64`):
            LoRA scaling numerator.
        lora_dropout (`float`, *optional*, defaults to `0.1`):
            Dropout on the LoRA input.
        use_dora (`bool`, *optional*, defaults to `False`):
            Weight-decomposed LoRA (DoRA).
        freeze_vision_tower (`bool`, *optional*, defaults to `False`):
            Keep everything outside the language model (vision encoder, projector) fixed in full fine-tuning. Under
            DeepSpeed ZeRO-2 every process must give gradients to the same parameters, which text-only batches next
            to image batches break unless the vision side is frozen (or LoRA is used).
        lora_target_modules (`list[str]`, *optional*):
            Names of linear layers (e.g. `["q_proj", "v_proj"]`) to adapt, matched inside the language model only;
            `None` adapts every linear layer of the language model. The vision tower is never adapted.
        model_init_kwargs (`dict` or `str`, *optional*):
            Keyword arguments for loading the model when the trainer gets a path (e.g. `{"dtype": "bfloat16",
            "attn_implementation": "sdpa"}`); a JSON string is accepted.
        dataset_name (`str`, *optional*):
            Name or path of the training data, written into the model card.

    Example:

    ```python
    >>> from unime_hf.trainer import EmbeddingDistillConfig
    >>> args = EmbeddingDistillConfig(output_dir="runs/unime", loss="symmetric_kl", grad_cache_chunk_size=32,
    ...                               use_lora=True, learning_rate=1e-4, warmup_steps=200, max_steps=2000)
    ```
    """

    loss: str = field(
        default="symmetric_kl",
        metadata={"help": "Training loss.", "choices": list(EMBEDDING_LOSSES)},
    )
    loss_temperature: float = field(
        default=0.02, metadata={"help": "Softmax temperature of the loss (model and judge distributions)."}
    )
    num_hard_negatives: int = field(
        default=8, metadata={"help": "Hard negatives per query, taken in order from the mined ones."}
    )
    mask_duplicate_positives: bool = field(
        default=True,
        metadata={"help": "InfoNCE: do not count in-batch copies of a query's own positive as its negatives."},
    )
    grad_cache_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Items per forward pass with GradCache; unset turns GradCache off."},
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate token sequences (image tokens included) to this length."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize images to this size first (672 Qwen2-VL, 336 LLaVA-OV); unset keeps them as they are."
        },
    )
    image_resize: str = field(
        default="square",
        metadata={"help": "How image_size is applied.", "choices": list(IMAGE_RESIZE_POLICIES)},
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder that relative image paths in the data are relative to."}
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={"help": "Keep the vision encoder and projector fixed (full fine-tuning of the language model)."},
    )
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters on the language model."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA alpha (scaling numerator)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    use_dora: bool = field(default=False, metadata={"help": "Use DoRA (weight-decomposed LoRA); needs use_lora."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Linear layer names to adapt inside the language model; unset = all its linear layers."},
    )
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments (dict or JSON string) for loading the model from a path."},
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Name or path of the training data, written into the model card."}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep dataset columns: the collator reads ids, texts, images and scores."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self) -> None:
        self._validate_embedding_options()
        if isinstance(self.model_init_kwargs, str):
            try:
                self.model_init_kwargs = json.loads(self.model_init_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"`model_init_kwargs` must be a dict or a JSON object string, got {self.model_init_kwargs!r} "
                    f'({err}); write e.g. \'{{"dtype": "bfloat16"}}\'.'
                ) from err
        super().__post_init__()

    def _validate_embedding_options(self) -> None:
        if self.loss not in EMBEDDING_LOSSES:
            raise ValueError(f"`loss` must be one of {list(EMBEDDING_LOSSES)}, got {self.loss!r}.")
        if not (isinstance(self.loss_temperature, int | float) and math.isfinite(self.loss_temperature)) or (
            self.loss_temperature <= 0
        ):
            raise ValueError(
                f"`loss_temperature` must be a finite number > 0, got {self.loss_temperature!r}; the paper uses 0.02."
            )
        if not isinstance(self.num_hard_negatives, int) or self.num_hard_negatives < 0:
            raise ValueError(
                f"`num_hard_negatives` must be an int >= 0, got {self.num_hard_negatives!r}; the paper uses 8."
            )
        if self.loss in LISTWISE_LOSSES and self.num_hard_negatives < 1:
            raise ValueError(
                f"`loss={self.loss!r}` compares each positive with its hard negatives, so `num_hard_negatives` must "
                f"be >= 1 (got {self.num_hard_negatives}); set it to 8, or use `loss='info_nce'` for plain pairs."
            )
        if self.grad_cache_chunk_size is not None and self.grad_cache_chunk_size < 1:
            raise ValueError(
                f"`grad_cache_chunk_size` must be >= 1 or None (GradCache off), got {self.grad_cache_chunk_size!r}."
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"`max_length` must be >= 1 or None (no truncation), got {self.max_length!r}.")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(
                f"`image_size` must be >= 1 or None (keep the processor's sizes), got {self.image_size!r}; the paper "
                "uses 672 for Qwen2-VL and 336 for LLaVA-OneVision."
            )
        if self.image_resize not in IMAGE_RESIZE_POLICIES:
            raise ValueError(
                f"`image_resize` must be one of {list(IMAGE_RESIZE_POLICIES)}, got {self.image_resize!r}."
            )
        if self.lora_r < 1:
            raise ValueError(f"`lora_r` must be >= 1, got {self.lora_r!r}; the paper uses 16.")
        if self.lora_alpha <= 0:
            raise ValueError(f"`lora_alpha` must be > 0, got {self.lora_alpha!r}; the paper uses 64.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}; the paper uses 0.1.")
        if self.use_dora and not self.use_lora:
            raise ValueError("`use_dora=True` needs `use_lora=True` (DoRA is a LoRA variant); set both.")
        if self.lora_target_modules is not None and (
            isinstance(self.lora_target_modules, str) or not all(isinstance(n, str) for n in self.lora_target_modules)
        ):
            raise ValueError(
                f"`lora_target_modules` must be a list of layer names such as ['q_proj', 'v_proj'], got "
                f"{self.lora_target_modules!r}."
            )
        if self.model_init_kwargs is not None and not isinstance(self.model_init_kwargs, dict | str):
            raise ValueError(
                f"`model_init_kwargs` must be a dict or a JSON string, got {type(self.model_init_kwargs).__name__}."
            )
