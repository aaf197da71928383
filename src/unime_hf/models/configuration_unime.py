# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""UniME embedding model configuration.

This file is copied next to every saved checkpoint as remote code: it imports only `transformers` (and the sibling
remote-code files), never `unime_hf`.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("last_token", "mean")


class UniMEConfig(PreTrainedConfig):
    r"""
    Configuration of a [`UniMEEmbeddingModel`]: a multimodal LLM backbone whose last-layer hidden state at the last
    real token, L2-normalised, is the embedding.

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Configuration of the generative backbone (e.g. a `Qwen2VLConfig`, `Qwen2_5_VLConfig` or
            `LlavaOnevisionConfig`). A dict must carry its `model_type`.
        pooling (`str`, *optional*, defaults to `"last_token"`):
            How token states become one vector: `"last_token"` (the last non-padding token, whatever the padding
            side) or `"mean"` (masked mean).
        normalize (`bool`, *optional*, defaults to `True`):
            Whether embeddings are L2-normalised, so that the dot product is the cosine similarity.

    Example:

    ```python
    >>> from transformers import Qwen2VLConfig
    >>> config = UniMEConfig(backbone_config=Qwen2VLConfig())
    >>> config.backbone_config.model_type
    'qwen2_vl'
    ```
    """

    model_type = "unime"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2_vl", optional=True),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    pooling: str = "last_token"
    normalize: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.backbone_config, dict):
            # Build the sub-config here rather than through the generic sub-config path, which treats a key named
            # `backbone_config` as a timm/vision backbone.
            config_dict = dict(self.backbone_config)
            model_type = config_dict.pop("model_type", None)
            if model_type is None:
                raise ValueError("`backbone_config` must carry a `model_type` (e.g. 'qwen2_vl').")
            self.backbone_config = AutoConfig.for_model(model_type, **config_dict)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"`pooling` must be one of {POOLING_MODES}, got {self.pooling!r}.")
        super().__post_init__(**kwargs)

    @property
    def hidden_size(self) -> int | None:
        """Size of the embeddings: the backbone language model's hidden size."""
        if self.backbone_config is None:
            return None
        text_config = getattr(self.backbone_config, "text_config", self.backbone_config)
        return text_config.hidden_size
