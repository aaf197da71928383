# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Upload a checkpoint folder with its model card to the Hugging Face Hub.

The push validates everything it can offline first (the folder, its `config.json` and weights, the repo id, an
existing `README.md`), renders a missing card in memory, and touches the folder only once the Hub has answered: a
generated card is written as `README.md` after the repository exists and removed again if the upload fails. A push
that fails, offline or not, leaves the folder byte-for-byte as it was.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Files that hold weights, in the names transformers, safetensors sharding and PEFT save them under.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
DEFAULT_COMMIT_MESSAGE = "Upload UniME checkpoint with unime-hf"
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached (offline mode, no network, or an unreachable endpoint)."""


# ----------------------------------------------------------------------------------------------------- validation
def validate_repo_id(repo_id: str) -> str:
    """Check that `repo_id` is a Hub model id of the form `namespace/name` and return it.

    Raises:
        `ValueError`: naming what is wrong and what a valid id looks like.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(
            f"repo_id must look like 'namespace/name' (your user or organisation name, a slash, the model name), "
            f"got {repo_id!r}."
        )
    try:
        hub_validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {err}") from err
    return repo_id


def validate_checkpoint_folder(folder: str | os.PathLike) -> Path:
    """Check that `folder` is a saved checkpoint: a folder with a readable `config.json` and weights (a
    `model.safetensors`, a sharded index whose shards are all there, a `pytorch_model.bin` or PEFT adapter weights).

    Returns:
        `Path`: the folder, resolved.

    Raises:
        `FileNotFoundError`, `NotADirectoryError` or `ValueError`: saying which file is missing or broken.
    """
    path = Path(folder).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint folder {str(path)!r} does not exist.")
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file; pass the checkpoint folder that holds config.json.")
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} has no config.json: it is not a saved checkpoint. Save the model with "
            "`model.save_pretrained(folder)` (or `trainer.save_model(folder)`) and push that folder."
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(config)!r} is not valid JSON ({err}); re-save the model.") from err
    weights = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        raise FileNotFoundError(
            f"{str(path)!r} has config.json but no weights (looked for {', '.join(WEIGHT_FILES)}); the model was "
            "not saved completely. Re-run `save_pretrained` into that folder."
        )
    for name in weights:
        if name.endswith(".index.json"):
            _check_shards(path, name)
    return path.resolve()


def _check_shards(folder: Path, index_name: str) -> None:
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{str(index_path)!r} is not a valid shard index (needs a 'weight_map'): {err}") from err
    missing = sorted({shard for shard in weight_map.values() if not (folder / shard).is_file()})
    if missing:
        raise FileNotFoundError(
            f"{str(index_path)!r} names shards that are not in the folder: {', '.join(missing)}. Copy them in or "
            "re-save the model."
        )


def _check_existing_card(readme: Path) -> None:
    from huggingface_hub import ModelCard

    try:
        ModelCard.load(readme)
    except Exception as err:  # yaml errors and metadata validation errors of any kind
        raise ValueError(
            f"{str(readme)!r} has invalid card metadata ({err}); fix its YAML header, or delete it to have a card "
            "generated."
        ) from err


# -------------------------------------------------------------------------------------------------------- network
def hub_offline() -> bool:
    """Whether Hugging Face Hub offline mode is on (`HF_HUB_OFFLINE=1`), read now rather than at import."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or env.upper() in _TRUE


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning 'the Hub was not reached': connection and timeout errors of the HTTP client in use."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]  # OfflineModeIsEnabled is a ConnectionError
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


@contextmanager
def _hub_errors(endpoint: str, repo_id: str, folder: Path, stage: str) -> Iterator[None]:
    """Re-raise connection and permission failures as errors that say what happened to the upload and the folder."""
    from huggingface_hub.errors import HfHubHTTPError

    sent = "nothing was uploaded" if stage == "create" else "the upload did not finish (re-run to resume it)"
    try:
        yield
    except _network_errors() as err:
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub at {endpoint} ({err}): {sent}; the folder {str(folder)!r} is "
            "unchanged. Check your network connection or HF_ENDPOINT and retry."
        ) from err
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status in (401, 403):
            raise PermissionError(
                f"the Hub refused to write to {repo_id!r} (HTTP {status}): {sent}; the folder {str(folder)!r} is "
                "unchanged. Log in with `hf auth login` or pass a token with write access (--token / token=)."
            ) from err
        raise


# ----------------------------------------------------------------------------------------------------------- push
def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    create_card_if_missing: bool = True,
    card_kwargs: Mapping[str, Any] | None = None,
    ignore_patterns: str | Sequence[str] | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload a checkpoint folder (weights, config, remote code, processor, sentence-transformers files) and its
    model card to a Hub model repository, creating the repository if needed.

    Everything that can be checked offline is checked first. Without a `README.md` in the folder a card is rendered
    with [`~unime_hf.hub.model_card.card_for_checkpoint`] and, once the repository exists, saved into the folder as
    `README.md` and uploaded with the rest (so the folder mirrors the repo). If the Hub cannot be reached, or the
    upload fails, nothing in the folder changes.

    Args:
        folder (`str` or `os.PathLike`):
            A checkpoint folder written by `save_pretrained`.
        repo_id (`str`):
            The target repository, `namespace/name`.
        private (`bool`, *optional*, defaults to `False`):
            Create the repository as private (an existing repository keeps its visibility).
        token (`str`, *optional*):
            A Hub token with write access; defaults to the logged-in one (`hf auth login`) or `HF_TOKEN`.
        commit_message (`str`, *optional*, defaults to `"Upload UniME checkpoint with unime-hf"`):
            The commit message.
        create_card_if_missing (`bool`, *optional*, defaults to `True`):
            Generate a model card when the folder has no `README.md`.
        card_kwargs (`dict`, *optional*):
            Arguments for the generated card: `kind`, `base_model`, `datasets`, `training`, `results`, `license`,
            ... (see [`~unime_hf.hub.model_card.card_for_checkpoint`]).
        ignore_patterns (`str` or `list[str]`, *optional*):
            Glob patterns of files not to upload (e.g. `["checkpoint-*", "*.pt"]`).
        endpoint (`str`, *optional*):
            The Hub endpoint; defaults to `HF_ENDPOINT` or https://huggingface.co.

    Returns:
        `str`: the URL of the commit.

    Raises:
        `FileNotFoundError`, `NotADirectoryError`, `ValueError`: bad folder, repo id, or card inputs (nothing sent).
        [`HubUnreachableError`]: offline mode or no connection to the Hub (the folder is unchanged).
        `PermissionError`: the Hub refused the token (the folder is unchanged).

    Example:

    ```python
    >>> from unime_hf.hub import push_to_hub
    >>> url = push_to_hub("unime-v2-qwen2vl-2b", "my-org/unime-v2-qwen2vl-2b",  # doctest: +SKIP
    ...                   card_kwargs={"results": "eval/results.json", "datasets": ["my-org/mined-pairs"]})

    ```
    """
    from huggingface_hub import HfApi, constants

    from unime_hf.hub.model_card import README_NAME, card_for_checkpoint, write_model_card

    folder = validate_checkpoint_folder(folder)
    repo_id = validate_repo_id(repo_id)
    readme = folder / README_NAME
    card = None
    if readme.is_file():
        _check_existing_card(readme)
    elif create_card_if_missing:
        card = card_for_checkpoint(folder, model_id=repo_id, **dict(card_kwargs or {}))  # in memory only
    else:
        logger.warning("%s has no README.md; pushing without a model card.", folder)

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if hub_offline():
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub (offline mode: HF_HUB_OFFLINE is set): nothing was uploaded; the "
            f"folder {str(folder)!r} is unchanged. Unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) on a machine with "
            "network access and push again."
        )
    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(endpoint, repo_id, folder, stage="create"):
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    logger.info("Repository ready: %s", repo_url)

    written = False
    try:
        if card is not None:
            written = True  # set first: a write that fails halfway is cleaned up too (there was no README before)
            write_model_card(card, folder)
            logger.info("Wrote a model card to %s", readme)
        patterns = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        with _hub_errors(endpoint, repo_id, folder, stage="upload"):
            commit = api.upload_folder(
                folder_path=folder,
                repo_id=repo_id,
                repo_type="model",
                commit_message=commit_message,
                ignore_patterns=patterns or None,
            )
    except BaseException:
        if written:  # leave the folder as we found it
            readme.unlink(missing_ok=True)
        raise
    url = getattr(commit, "commit_url", None) or str(commit)
    logger.info("Pushed %s to %s (%s)", folder, repo_id, url)
    return url
