# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""sentence-transformers input module for UniME checkpoints.

Copied next to every saved checkpoint and named in its `modules.json`, so that
`SentenceTransformer(path, trust_remote_code=True).encode(...)` gives the vectors of `model.encode(...)`. It imports
only `sentence_transformers`, `transformers` and `torch`, never `unime_hf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.base.modules.input_module import InputModule
from transformers import AutoModel, AutoProcessor


class UniMESentenceTransformerModule(InputModule):
    """Wraps a UniME embedding model and its processor as a sentence-transformers input module.

    Inputs are what `UniMEEmbeddingModel.encode` takes: strings, image paths, PIL images and
    `{"text": ..., "image": ...}` dicts. A sentence-transformers `prompt` becomes the UniME instruction.
    """

    save_in_root = True
    config_keys: list[str] = []

    def __init__(self, model: torch.nn.Module, processor: Any):
        super().__init__()
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer

    @property
    def modalities(self) -> list:
        # "message" lets sentence-transformers pass mixed batches (texts, images, pairs) through to `preprocess`.
        return ["text", "image", ("image", "text"), "message"]

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return dict(self.processor.prepare_items(list(inputs), instruction=prompt or None))

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        model_inputs = {k: v for k, v in features.items() if k not in ("sentence_embedding", "token_embeddings")}
        if "pixel_values" in model_inputs:
            model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.model.dtype)
        features["sentence_embedding"] = self.model(**model_inputs).embeddings
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.model.config.hidden_size

    def get_embedding_dimension(self) -> int:
        return self.model.config.hidden_size

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.model.processor = self.processor
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> UniMESentenceTransformerModule:
        hub_kwargs = {
            "subfolder": subfolder,
            "token": token,
            "cache_dir": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
        }
        model = AutoModel.from_pretrained(model_name_or_path, **hub_kwargs, **(model_kwargs or {}))
        processor = AutoProcessor.from_pretrained(model_name_or_path, **hub_kwargs)
        return cls(model, processor)
