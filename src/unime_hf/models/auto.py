"""Load whatever a user names as an embedder: a UniME checkpoint, a raw VLM backbone, or a sentence-transformers model.

(Package-only helper: not copied next to checkpoints.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODEL_KINDS = ("auto", "unime", "backbone", "sentence-transformers")


def detect_model_kind(name_or_path: str) -> str:
    """`"unime"` for a UniME checkpoint, `"sentence-transformers"` for another sentence-transformers folder,
    `"backbone"` for a generative VLM to wrap with [`UniMEEmbeddingModel.from_backbone`]."""
    path = Path(name_or_path)
    if path.is_dir():
        config_file = path / "config.json"
        model_type = None
        if config_file.is_file():
            model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        if model_type == "unime":
            return "unime"
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        return "backbone"
    from transformers import AutoConfig

    return "unime" if AutoConfig.from_pretrained(name_or_path).model_type == "unime" else "backbone"


def load_embedder(
    name_or_path: str,
    kind: str = "auto",
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = True,
) -> Any:
    """Load an embedder by name or path.

    Args:
        name_or_path (`str`): Hub id or folder.
        kind (`str`, *optional*, defaults to `"auto"`): one of `"auto"`, `"unime"`, `"backbone"`,
            `"sentence-transformers"`.
        device (`str`, *optional*): defaults to CUDA when available, else CPU.
        dtype (`str`, *optional*): e.g. `"bfloat16"` or `"auto"`.
        trust_remote_code (`bool`, *optional*, defaults to `True`): for sentence-transformers models.

    Returns:
        A `UniMEEmbeddingModel` in eval mode, or a `SentenceTransformer`; both have `encode`.
    """
    import torch

    if kind not in MODEL_KINDS:
        raise ValueError(f"`kind` must be one of {MODEL_KINDS}, got {kind!r}.")
    kind = detect_model_kind(name_or_path) if kind == "auto" else kind
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {}
    if dtype:
        kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
    logger.info("loading %s as %s on %s", name_or_path, kind, device)
    if kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model_kwargs = {"dtype": kwargs["dtype"]} if "dtype" in kwargs else None
        return SentenceTransformer(
            name_or_path, device=device, trust_remote_code=trust_remote_code, model_kwargs=model_kwargs
        )
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    if kind == "unime":
        model = UniMEEmbeddingModel.from_pretrained(name_or_path, **kwargs)
    else:
        model = UniMEEmbeddingModel.from_backbone(name_or_path, **kwargs)
    return model.to(device).eval()
