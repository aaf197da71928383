"""Yes/no scoring of (query, candidate) pairs with any generative VLM: the MLLM judge and the pointwise reranker.

A pair is shown to the model as one user message of its chat template (METHOD.md section 2):

    I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements of
    the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'. Query:<Query>, Candidates:<Candidate>.

where `<Query>` and `<Candidate>` are the item's image (an image part) followed by its text, and the assistant turn
is opened (`add_generation_prompt=True`). The score is `P(Yes) = softmax([logit_Yes, logit_No])[0]` at the last
position, which is the logit `generate` would read for the first answer token: one forward pass per pair, batched.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from unime_hf.models.processing_unime import (
    MMEB_IMAGE_PLACEHOLDER,
    ItemError,
    load_image,
    looks_like_image_path,
    resize_image,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

QUERY_FIELD = "{query}"
CANDIDATE_FIELD = "{candidate}"

#: The judge prompt of UniME-V2 (METHOD.md section 2); `{query}` and `{candidate}` mark where the items go.
JUDGE_PROMPT = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements of "
    "the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'. "
    "Query:{query}, Candidates:{candidate}."
)

Item = Mapping[str, Any]
Pair = tuple[Any, Any]

_SIDES = ("query", "candidate")


class PairError(ItemError):
    """A (query, candidate) pair that cannot be scored.

    Attributes:
        index (`int`): Position of the pair in the list given to [`YesNoScorer.score`].
        side (`str`): `"query"` or `"candidate"`, or `"pair"` when the pair itself is malformed.
        reason (`str`): What is wrong, without the location (so callers can name their own rows and columns).
    """

    def __init__(self, index: int, side: str, reason: str) -> None:
        self.index = index
        self.side = side
        self.reason = reason
        super().__init__(f"pair {index} ({side}): {reason}")


def resolve_answer_token(tokenizer: Any, token: str, name: str = "token") -> int:
    """The id of `token`, which must encode to exactly one token (without special tokens).

    Raises:
        `ValueError`: when `token` is not a single token for this tokenizer.
    """
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids) if ids else []
        raise ValueError(
            f"{name}={token!r} encodes to {len(ids)} tokens {pieces} with this tokenizer; yes/no scoring reads the "
            "logit of one token at the answer position. Pass a string the tokenizer keeps whole (check with "
            f"`tokenizer.tokenize({token!r})`), e.g. 'Yes' / 'No' for Qwen and LLaVA tokenizers."
        )
    return int(ids[0])


def check_prompt_template(prompt_template: str) -> None:
    """Raise `ValueError` unless the template holds `{query}` and `{candidate}` exactly once each, in that order."""
    counts = {key: prompt_template.count(key) for key in (QUERY_FIELD, CANDIDATE_FIELD)}
    if any(count != 1 for count in counts.values()) or (
        prompt_template.index(QUERY_FIELD) > prompt_template.index(CANDIDATE_FIELD)
    ):
        raise ValueError(
            f"The prompt template must contain {QUERY_FIELD} once and then {CANDIDATE_FIELD} once (found {counts}); "
            f"they mark where the query and the candidate go. Default: JUDGE_PROMPT = {JUDGE_PROMPT!r}."
        )


@dataclass
class PreparedPair:
    """A pair turned into one user message: content parts plus its not-yet-loaded images, in order."""

    content: list[dict[str, Any]]
    images: list[tuple[str, Any]] = field(default_factory=list)  # (side, PIL image or path), in prompt order

    @property
    def num_images(self) -> int:
        return len(self.images)


def normalize_item(item: Any, where: str = "item") -> tuple[str | None, Any]:
    """Return `(text, image)` of an item, either possibly `None`.

    An item is a `{"text": ..., "image": ...}` dict (`""` or `None` means absent), a PIL image, an image path, or a
    string (text). Images are not opened here.
    """
    from PIL import Image

    if isinstance(item, Mapping):
        if "text" not in item and "image" not in item:
            raise ItemError(f"{where}: a dict item needs a 'text' and/or an 'image' key, got keys {sorted(item)}.")
        text, image = item.get("text"), item.get("image")
    elif isinstance(item, Image.Image) or looks_like_image_path(item):
        text, image = None, item
    elif isinstance(item, str):
        text, image = item, None
    else:
        kind = type(item).__name__
        raise ItemError(f"{where}: expected a dict, a string, a PIL image or an image path, got {kind}.")
    if text is not None and not isinstance(text, str):
        raise ItemError(f"{where}: 'text' must be a string, got {type(text).__name__}.")
    if image is not None and not isinstance(image, (str, os.PathLike, Image.Image)):
        raise ItemError(f"{where}: 'image' must be a path or a PIL image, got {type(image).__name__}.")
    text = text or None
    image = None if image is None or (isinstance(image, str) and image == "") else image
    if text is None and image is None:
        raise ItemError(f"{where}: the item has neither text nor image.")
    return text, image


def _item_parts(text: str | None, image: Any, side: str, where: str) -> tuple[list[dict[str, Any]], list]:
    """Content parts of one item: its image, then its text (or the image at an MMEB `<|image_1|>` placeholder)."""
    placeholders = MMEB_IMAGE_PLACEHOLDER.findall(text) if text else []
    if placeholders and image is None:
        raise ItemError(f"{where}: the text has an image placeholder like <|image_1|> but the item has no image.")
    if len(placeholders) > 1:
        count = len(placeholders)
        raise ItemError(f"{where}: the text has {count} image placeholders; one image per item is allowed.")
    if image is None:
        return [{"type": "text", "text": text}], []
    before, after = MMEB_IMAGE_PLACEHOLDER.split(text, maxsplit=1) if placeholders else ("", text or "")
    parts = [{"type": "text", "text": before}, {"type": "image"}, {"type": "text", "text": after}]
    return parts, [(side, image)]


def build_pair_content(
    query: Any, candidate: Any, prompt_template: str = JUDGE_PROMPT, index: int = 0
) -> PreparedPair:
    """The content parts of the user message that asks about `(query, candidate)`.

    Texts are always kept; each item contributes its image as an image part (at its `<|image_1|>` placeholder if the
    text has one, else before its text). Adjacent text parts are merged.

    Example:

    ```python
    >>> prepared = build_pair_content({"text": "a red square", "image": "red.png"}, {"text": "a red shape"})
    >>> [part["type"] for part in prepared.content]
    ['text', 'image', 'text']
    ```
    """
    check_prompt_template(prompt_template)
    head, rest = prompt_template.split(QUERY_FIELD, 1)
    middle, tail = rest.split(CANDIDATE_FIELD, 1)
    parts: list[dict[str, Any]] = [{"type": "text", "text": head}]
    images: list[tuple[str, Any]] = []
    for side, item, suffix in (("query", query, middle), ("candidate", candidate, tail)):
        where = f"pair {index} ({side})"
        try:
            text, image = normalize_item(item, where)
            item_parts, item_images = _item_parts(text, image, side, where)
        except ItemError as err:
            raise PairError(index, side, _strip_where(str(err), where)) from err
        parts.extend(item_parts)
        parts.append({"type": "text", "text": suffix})
        images.extend(item_images)
    merged: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text":
            if not part["text"]:
                continue
            if merged and merged[-1]["type"] == "text":
                merged[-1] = {"type": "text", "text": merged[-1]["text"] + part["text"]}
                continue
        merged.append(part)
    return PreparedPair(merged, images)


def _accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward takes `logits_to_keep` (a PEFT wrapper passes it on to its base model)."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    try:
        return "logits_to_keep" in inspect.signature(type(base).forward).parameters
    except (TypeError, ValueError):
        return False


def _strip_where(message: str, where: str) -> str:
    prefix = f"{where}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


class YesNoScorer:
    """Scores (query, candidate) pairs by a generative VLM's probability of answering `Yes` rather than `No`.

    For each pair, one user message is built from `prompt_template` (see [`build_pair_content`]) and rendered with
    the processor's chat template with `add_generation_prompt=True`; one forward pass gives the logits at the last
    real position, and the score is `softmax([logit_yes, logit_no])[0]`, the same number as the first step of
    `model.generate(..., output_logits=True)` on that prompt. Pairs are sorted by size (number of images, prompt
    length) and batched, so padding is small; text-only pairs are batched apart and never touch the vision tower.
    Left and right padding are both handled (the last real position is read from the attention mask).

    Args:
        model (`PreTrainedModel`):
            A generative VLM (e.g. `Qwen2VLForConditionalGeneration`), placed where it should run.
        processor (`ProcessorMixin`):
            Its processor, with a chat template that accepts `{"type": "image"}` and `{"type": "text"}` parts.
            A UniME processor's `image_root`, `resize_policy`, `image_size` and `max_image_pixels` are honoured.
        prompt_template (`str`, *optional*, defaults to [`JUDGE_PROMPT`]):
            The instruction, with `{query}` and `{candidate}` where the items go.
        batch_size (`int`, *optional*, defaults to 16):
            Pairs per forward pass.
        yes_token (`str`, *optional*, defaults to `"Yes"`):
            The positive answer; must be a single token.
        no_token (`str`, *optional*, defaults to `"No"`):
            The negative answer; must be a single token.
        image_root (`str`, *optional*):
            Directory that relative image paths are relative to (defaults to the processor's `image_root`).
        prefetch (`bool`, *optional*, defaults to `True`):
            Build the next batch (image loading, chat template, processor) in a background thread while the model
            runs the current one. Scores are the same either way.

    Example:

    ```python
    >>> from transformers import AutoModelForImageTextToText
    >>> from unime_hf.models.processing_unime import load_processor
    >>> from unime_hf.scoring import YesNoScorer
    >>> model = AutoModelForImageTextToText.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct", dtype="bfloat16")
    >>> scorer = YesNoScorer(model, load_processor("Qwen/Qwen2.5-VL-7B-Instruct"), batch_size=16)
    >>> scorer.score([({"text": "a red square", "image": None}, {"text": None, "image": "red_square.png"})])
    [0.93...]
    ```
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        prompt_template: str = JUDGE_PROMPT,
        batch_size: int = 16,
        yes_token: str = "Yes",
        no_token: str = "No",
        image_root: str | os.PathLike | None = None,
        prefetch: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        check_prompt_template(prompt_template)
        self.model = model
        self.processor = processor
        self.prompt_template = prompt_template
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.yes_token, self.no_token = yes_token, no_token
        self.yes_token_id = resolve_answer_token(self.tokenizer, yes_token, "yes_token")
        self.no_token_id = resolve_answer_token(self.tokenizer, no_token, "no_token")
        if self.yes_token_id == self.no_token_id:
            raise ValueError(f"yes_token {yes_token!r} and no_token {no_token!r} are the same token.")
        if not (getattr(processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)):
            raise ValueError(
                "The processor has no chat template; yes/no scoring renders each pair as a chat turn. Load the "
                "processor of an instruction-tuned checkpoint or set `processor.chat_template`."
            )
        self.image_root = image_root if image_root is not None else getattr(processor, "image_root", None)
        self._accepts_logits_to_keep = _accepts_logits_to_keep(model)

    # ---------------------------------------------------------------------------------------------------- prompts
    def prepare(self, query: Any, candidate: Any, index: int = 0) -> PreparedPair:
        """The message content and (unloaded) images of one pair; raises [`PairError`] for bad items."""
        return build_pair_content(query, candidate, self.prompt_template, index)

    def render(self, prepared: PreparedPair) -> str:
        """The full prompt text of a prepared pair (chat template, generation prompt added)."""
        return self.render_many([prepared])[0]

    def render_many(self, prepared: Sequence[PreparedPair]) -> list[str]:
        """[`render`] for many pairs in one chat-template call (about twice as fast as one call per pair)."""
        if not prepared:
            return []
        conversations = [[{"role": "user", "content": pair.content}] for pair in prepared]
        texts = self.processor.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
        return [texts] if isinstance(texts, str) else list(texts)

    def load_images(self, prepared: PreparedPair, index: int) -> list[Image.Image]:
        """Open (and resize, following the processor's policy) the images of a pair, in prompt order."""
        policy = getattr(self.processor, "resize_policy", "none")
        size = getattr(self.processor, "image_size", None)
        limit = getattr(self.processor, "max_image_pixels", 89_478_485)
        loaded = []
        for side, image in prepared.images:
            where = f"pair {index} ({side})"
            try:
                opened = load_image(image, image_root=self.image_root, max_image_pixels=limit, where=where)
            except ItemError as err:
                raise PairError(index, side, _strip_where(str(err), where)) from err
            loaded.append(resize_image(opened, policy, size))
        return loaded

    def build_inputs(self, pairs: Sequence[Pair], start_index: int = 0) -> Any:
        """Processor outputs (a `BatchFeature`, not moved to the model) for a list of pairs, in the given order."""
        prepared = [self._prepare(pair, start_index + offset) for offset, pair in enumerate(pairs)]
        return self._collate(prepared, list(range(start_index, start_index + len(prepared))))

    def _prepare(self, pair: Any, index: int) -> PreparedPair:
        if isinstance(pair, (str, bytes, Mapping)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise PairError(index, "pair", f"expected a (query, candidate) tuple, got {type(pair).__name__}.")
        return self.prepare(pair[0], pair[1], index)

    def _collate(
        self, prepared: Sequence[PreparedPair], indices: Sequence[int], texts: Sequence[str] | None = None
    ) -> Any:
        texts = list(texts) if texts is not None else self.render_many(prepared)
        images = [self.load_images(pair, index) for pair, index in zip(prepared, indices)]
        # One list of images per prompt: processors that treat multi-image prompts differently (LLaVA-OneVision)
        # must see which images belong together. Text-only batches carry no image inputs at all.
        kwargs: dict[str, Any] = {"images": images} if any(images) else {}
        # NumPy outputs turned into tensors without a copy: the same values, and faster than "pt", which validates
        # and converts nested Python lists element by element.
        features = self.processor(text=texts, padding=True, return_tensors="np", **kwargs)
        if any(isinstance(value, np.ndarray) and value.dtype == object for value in features.values()):
            return self.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
        import torch

        for key, value in features.items():
            if isinstance(value, np.ndarray):
                features[key] = torch.from_numpy(np.ascontiguousarray(value))
        return features

    # ---------------------------------------------------------------------------------------------------- scoring
    def score(self, pairs: Sequence[Pair], show_progress_bar: bool = False, progress: Any = None) -> list[float]:
        """P(`yes_token`) against `no_token` for every `(query, candidate)` pair, in the input order.

        Args:
            pairs (`Sequence[tuple]`):
                `(query_item, candidate_item)` tuples; an item is `{"text": str | None, "image": path | PIL | None}`
                (`""` counts as absent), a string or a PIL image.
            show_progress_bar (`bool`, *optional*, defaults to `False`):
                Show a tqdm bar over pairs.
            progress (*optional*):
                An existing tqdm-like bar to advance by the number of pairs scored (instead of a new one).

        Returns:
            `list[float]`: one probability in `(0, 1)` per pair.

        Raises:
            [`PairError`] (a `ValueError`): for a malformed pair or item, or an image that cannot be read; the message
            names the pair index and side.
        """
        import torch

        prepared = [self._prepare(pair, index) for index, pair in enumerate(pairs)]
        scores: list[float] = [0.0] * len(prepared)
        bar = progress
        if bar is None and show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prepared), desc="Scoring pairs", unit="pair")
        self.model.eval()
        try:
            with torch.inference_mode():
                texts = self.render_many(prepared)
                batches = self._batches(prepared, [len(text) for text in texts])
                for batch, inputs in self._iter_inputs(prepared, texts, batches):
                    for index, value in zip(batch, self._forward(inputs)):
                        scores[index] = value
                    if bar is not None:
                        bar.update(len(batch))
        finally:
            if bar is not None and progress is None:
                bar.close()
        return scores

    def _iter_inputs(
        self, prepared: Sequence[PreparedPair], texts: Sequence[str], batches: Sequence[list[int]]
    ) -> Iterator[tuple[list[int], Any]]:
        """Processor outputs batch after batch; with `prefetch`, the next batch is built while the model runs."""

        def collate(batch: list[int]) -> Any:
            return self._collate([prepared[i] for i in batch], batch, [texts[i] for i in batch])

        if not self.prefetch or len(batches) < 2:
            for batch in batches:
                yield batch, collate(batch)
            return
        # One worker is enough: it only has to stay one batch ahead. Errors surface in order through result().
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unime-scoring") as pool:
            pending = pool.submit(collate, batches[0])
            for position, batch in enumerate(batches):
                inputs = pending.result()
                if position + 1 < len(batches):
                    pending = pool.submit(collate, batches[position + 1])
                yield batch, inputs

    def _batches(self, prepared: Sequence[PreparedPair], lengths: Sequence[int]) -> list[list[int]]:
        """Pair indices grouped into batches: text-only pairs apart, each group sorted longest first."""
        batches = []
        with_images = [i for i, pair in enumerate(prepared) if pair.num_images]
        text_only = [i for i, pair in enumerate(prepared) if not pair.num_images]
        for group in (with_images, text_only):
            # Longest first: a batch that does not fit in memory fails at once, not at the end.
            group.sort(key=lambda i: (prepared[i].num_images, lengths[i]), reverse=True)
            batches.extend(group[start : start + self.batch_size] for start in range(0, len(group), self.batch_size))
        return batches

    def _forward(self, inputs: Any) -> list[float]:
        import torch

        device = getattr(self.model, "device", None) or next(self.model.parameters()).device
        dtype = getattr(self.model, "dtype", None)
        batch = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and dtype is not None:
                    value = value.to(device=device, dtype=dtype)
                else:
                    value = value.to(device)
            batch[key] = value
        mask = batch["attention_mask"]
        length = mask.shape[1]
        positions = torch.arange(length, device=mask.device)
        # The last real token of each row, whatever the padding side.
        last = (mask.to(torch.long) * positions).argmax(dim=-1)
        keep: int | torch.Tensor | None = None
        if self._accepts_logits_to_keep:
            keep = 1 if bool((last == length - 1).all()) else torch.unique(last)
            batch["logits_to_keep"] = keep
        logits = self.model(**batch, use_cache=False).logits
        rows = torch.arange(logits.shape[0], device=logits.device)
        if logits.shape[1] == length:  # full logits (model without logits_to_keep)
            picked = logits[rows, last.to(logits.device)]
        elif isinstance(keep, int):
            picked = logits[:, -1]
        else:
            picked = logits[rows, torch.searchsorted(keep, last).to(logits.device)]
        pair_logits = picked[:, [self.yes_token_id, self.no_token_id]].float()
        return torch.softmax(pair_logits, dim=-1)[:, 0].tolist()
