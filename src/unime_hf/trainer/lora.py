# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""LoRA on the language model of a UniME embedding model, and merging it back for a full checkpoint."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel


def language_model_name(model: nn.Module) -> str:
    """Qualified name of the language model inside a UniME model (e.g. `"backbone.language_model"`).

    Raises:
        `ValueError`: if the backbone exposes no language model (`language_model` or `get_decoder()`).
    """
    backbone = getattr(model, "backbone", model)
    language_model = getattr(backbone, "language_model", None)
    if language_model is None and hasattr(backbone, "get_decoder"):
        language_model = backbone.get_decoder()
    for name, module in model.named_modules():
        if module is language_model and name:
            return name
    raise ValueError(
        f"Cannot find the language model of {type(backbone).__name__}: expected a `language_model` attribute or "
        "`get_decoder()`. Pass explicit `lora_target_modules` names of its linear layers."
    )


def lora_target_regex(model: nn.Module, names: list[str] | None = None) -> str:
    """A PEFT `target_modules` regex matching linear layers of the language model only (never the vision tower).

    Args:
        model (`nn.Module`):
            The UniME model.
        names (`list[str]`, *optional*):
            Leaf names to adapt (e.g. `["q_proj", "v_proj"]`); defaults to every linear layer of the language model.

    Example:

    ```python
    >>> lora_target_regex(model)
    'backbone\\\\.language_model\\\\..*\\\\.(down_proj|gate_proj|k_proj|o_proj|q_proj|up_proj|v_proj)'
    ```
    """
    prefix = language_model_name(model)
    language_model = model.get_submodule(prefix)
    linear = {
        name.rsplit(".", 1)[-1] for name, module in language_model.named_modules() if isinstance(module, nn.Linear)
    }
    if names is None:
        names = sorted(linear)
    else:
        unknown = sorted(set(names) - linear)
        if unknown:
            raise ValueError(
                f"`lora_target_modules` {unknown} are not linear layers of the language model ({prefix}); "
                f"choose from {sorted(linear)}."
            )
    if not names:
        raise ValueError(f"The language model ({prefix}) has no linear layers to adapt with LoRA.")
    return rf"{re.escape(prefix)}\..*\.({'|'.join(re.escape(name) for name in sorted(names))})"


def freeze_vision_tower(model: nn.Module) -> list[str]:
    """Stop gradients to all parameters outside the language model (vision encoder, projector); returns their names."""
    prefix = language_model_name(model) + "."
    frozen = []
    for name, parameter in model.named_parameters():
        if not name.startswith(prefix) and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def build_lora_config(model: nn.Module, args: Any) -> LoraConfig:
    """The `peft.LoraConfig` described by an [`EmbeddingDistillConfig`] (`lora_r`, `lora_alpha`, `lora_dropout`,
    `use_dora`, `lora_target_modules`), targeting the language model of `model`."""
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        use_dora=args.use_dora,
        target_modules=lora_target_regex(model, args.lora_target_modules),
        bias="none",
    )


def apply_lora(model: nn.Module, config: LoraConfig) -> PeftModel:
    """Wrap `model` with LoRA adapters; only the adapters train. PEFT injects the adapter layers into `model` itself,
    so keep using the returned model (and save through [`merged_state_dict`] for a plain checkpoint)."""
    from peft import get_peft_model

    return get_peft_model(model, config)


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def merged_state_dict(model: PeftModel) -> dict[str, torch.Tensor]:
    """The base model's state dict with the adapters merged into the weights, under the base model's own keys, on
    the CPU. The model is left as it was (adapters merged, the weights copied, then unmerged).

    Example:

    ```python
    >>> state_dict = merged_state_dict(peft_model)
    >>> peft_model.get_base_model().save_pretrained("out", state_dict=state_dict)
    ```
    """
    model.merge_adapter()
    try:
        state_dict = {}
        for key, value in model.get_base_model().state_dict().items():
            if "lora_" in key:
                continue
            state_dict[key.replace(".base_layer.", ".")] = value.detach().to("cpu", copy=True)
    finally:
        model.unmerge_adapter()
    return state_dict
