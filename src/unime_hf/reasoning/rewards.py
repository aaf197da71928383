# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
r"""Embed-RL rewards for GRPO on the Reasoner: format, outcome (embedder-guided) and process (discriminator).

The total reward is `a * format + b * outcome + c * process` with `a, b, c = 0.05, 0.8, 0.2` (the authors' weights,
METHOD.md §6; GRPO applies them through `GRPOConfig.reward_weights`). For a completion `c` of the query `q` whose
positive is `t+`, with `s(x, y)` the Embedder's cosine between `[q, c]` (the query followed by its T-CoT) and an
in-batch target `y`:

- **format** = 1 when `c` follows the T-CoT format ([`~unime_hf.reasoning.tcot.parse_tcot`]), else 0.
- **outcome** = `scale * share * margin` with `scale = 0.5` (as in the authors' code), where
  `share` = the share of the query's positives ranked in its top `n` among the batch's targets (recall@n; with one
  positive, 1 when it is in the top n, else 0; ties count in the positive's favour), and
  `margin = s(q, t+) - sum_j w_j s(q, t_j)` over the in-batch negatives `t_j`, `w = softmax(s(q, t_j) / tau)`
  (with several positives, `s(q, t+)` is their mean).
- **process** = `margin` when a discriminator MLLM, shown the positive `t+` and the T-CoTs of the query and of the
  queries of its `k = 4` hardest in-batch negatives (in a shuffled order), picks the query's T-CoT; else 0. This
  rewards T-CoTs that trace evidence specific to their own target.

`n` and `tau` are not published: they are parameters (defaults 5 and 0.02, the temperature of the embedding loss).
Rows whose reward is undefined (no in-batch negative, or no negative T-CoT to compare against) get `None`, which
GRPO leaves out of that reward.

The arithmetic is in pure functions ([`outcome_terms`], [`outcome_rewards`], [`process_rewards`],
[`hardest_negatives`]) tested on hand-built similarities; [`EmbedderGuidedRewards`] calls the Embedder and the
discriminator and exposes the three rewards with TRL's reward-function signature
`reward(prompts, completions, **kwargs) -> list[float | None]` (dataset columns such as `query_id`, `pos_id`,
`pos_text`, `pos_image` arrive in `kwargs`, one value per completion).

Example:

```python
>>> import torch
>>> from unime_hf.reasoning.rewards import outcome_rewards
>>> sims = torch.tensor([[0.9, 0.5, 0.1]])  # the query against its positive (column 0) and two negatives
>>> positives = torch.tensor([[True, False, False]])
>>> [round(r, 4) for r in outcome_rewards(sims, positives, top_n=1, temperature=1.0)]
[0.2803]

```
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from unime_hf.reasoning.crops import crop_evidence, fold_crops
from unime_hf.reasoning.tcot import BOX_COORDS, EMBEDDING_TEXT_MODES, parse_tcot, tcot_embedding_text

logger = logging.getLogger(__name__)

#: The authors' reward weights: format, outcome, process (METHOD.md §6).
DEFAULT_REWARD_WEIGHTS: dict[str, float] = {"format": 0.05, "outcome": 0.8, "process": 0.2}

#: Listwise prompt of the discriminator: `{query}` is the positive target, `{candidates}` the numbered T-CoTs.
DISCRIMINATOR_PROMPT = (
    "I will provide you with an item followed by multiple reasoning traces in the format: (1) trace1 (2) trace2, "
    "etc. Each trace was written for a different query. Respond with the number of the trace written for a query "
    "that this item answers. Item: {query}, Traces: {candidates}."
)


def completion_text(completion: Any) -> str:
    """The text of a GRPO completion: a string (standard format) or a list of messages (conversational format,
    the last assistant message's text)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        message = completion[-1]
        content = message.get("content") if isinstance(message, Mapping) else message
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


# ------------------------------------------------------------------------------------------------ pure functions
def format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for each completion that is a well-formed T-CoT, 0.0 otherwise (never raises on malformed text).

    Example:

    ```python
    >>> format_reward(None, ["<thinking>{\\"keywords\\": []}</thinking><rethink></rethink><answer>a</answer>", "oops"])
    [1.0, 0.0]

    ```
    """
    return [1.0 if parse_tcot(completion_text(c)).ok else 0.0 for c in completions]


@dataclass
class OutcomeTerms:
    """Per-query terms of the outcome reward (`Q` queries).

    Attributes:
        share (`torch.Tensor` of shape `(Q,)`): Share of the query's positives ranked in its top `n`.
        margin (`torch.Tensor` of shape `(Q,)`): Mean positive similarity minus the softmax-weighted mean negative
            similarity; NaN where the query has no negative or no positive.
        positive_similarity (`torch.Tensor` of shape `(Q,)`): Mean similarity to the positives.
        weighted_negative_similarity (`torch.Tensor` of shape `(Q,)`): The softmax-weighted mean over negatives.
    """

    share: torch.Tensor
    margin: torch.Tensor
    positive_similarity: torch.Tensor
    weighted_negative_similarity: torch.Tensor


def outcome_terms(
    similarities: torch.Tensor,
    positives: torch.Tensor,
    *,
    top_n: int = 5,
    temperature: float = 0.02,
    negatives: torch.Tensor | None = None,
) -> OutcomeTerms:
    """Share-in-top-n and margin of each query against the batch's targets.

    Args:
        similarities (`torch.Tensor` of shape `(Q, T)`):
            Similarity of each query (with its T-CoT) to each target.
        positives (`torch.Tensor` of shape `(Q, T)`, bool):
            Which targets are positives of each query.
        top_n (`int`, *optional*, defaults to 5):
            The `n` of the share.
        temperature (`float`, *optional*, defaults to 0.02):
            Softmax temperature of the negative weights.
        negatives (`torch.Tensor` of shape `(Q, T)`, bool, *optional*):
            Which targets are negatives (defaults to every non-positive). Targets that are neither (e.g. known false
            negatives) are left out of both the ranking and the margin.
    """
    if similarities.ndim != 2 or similarities.shape != positives.shape:
        raise ValueError(
            f"`similarities` and `positives` must both have shape (queries, targets); got {tuple(similarities.shape)} "
            f"and {tuple(positives.shape)}."
        )
    if top_n < 1 or not temperature > 0:
        raise ValueError(f"need top_n >= 1 and temperature > 0, got top_n={top_n}, temperature={temperature}.")
    sims = similarities.double()
    positives = positives.bool()
    negatives = ~positives if negatives is None else negatives.bool() & ~positives
    counted = positives | negatives
    # rank of a target = how many counted targets are strictly more similar (ties in the target's favour)
    masked = sims.masked_fill(~counted, float("-inf"))
    ranks = (masked.unsqueeze(1) > sims.unsqueeze(2)).sum(dim=2)
    num_positives = positives.sum(dim=1)
    in_top = ((ranks < top_n) & positives).sum(dim=1)
    share = torch.where(num_positives > 0, in_top.double() / num_positives.clamp(min=1), torch.zeros_like(sims[:, 0]))
    positive_similarity = (sims * positives).sum(dim=1) / num_positives.clamp(min=1)
    weights = torch.softmax(sims.masked_fill(~negatives, float("-inf")) / temperature, dim=1)
    weights = torch.nan_to_num(weights, nan=0.0)  # rows without negatives: all -inf -> NaN -> 0
    weighted_negative = (weights * sims.masked_fill(~negatives, 0.0)).sum(dim=1)
    defined = (num_positives > 0) & negatives.any(dim=1)
    margin = torch.where(defined, positive_similarity - weighted_negative, torch.full_like(share, float("nan")))
    return OutcomeTerms(share, margin, positive_similarity, weighted_negative)


def outcome_rewards(
    similarities: torch.Tensor,
    positives: torch.Tensor,
    *,
    top_n: int = 5,
    temperature: float = 0.02,
    scale: float = 0.5,
    negatives: torch.Tensor | None = None,
) -> list[float | None]:
    """The outcome reward `scale * share * margin` of each query (`None` where the margin is undefined).

    Example:

    ```python
    >>> sims = torch.tensor([[0.2, 0.6, 0.1], [0.3, 0.1, 0.8]])
    >>> positives = torch.tensor([[True, False, False], [False, False, True]])
    >>> [round(r, 4) for r in outcome_rewards(sims, positives, top_n=1)]  # query 0 ranks its positive 2nd
    [0.0, 0.25]

    ```
    """
    terms = outcome_terms(similarities, positives, top_n=top_n, temperature=temperature, negatives=negatives)
    values = scale * terms.share * terms.margin
    return [None if torch.isnan(value) else float(value) + 0.0 for value in values]  # + 0.0: no -0.0


def hardest_negatives(
    similarities: torch.Tensor, positives: torch.Tensor, k: int, negatives: torch.Tensor | None = None
) -> list[list[int]]:
    """Column indices of each query's `k` most similar negatives, most similar first (ties: lower index first).

    Example:

    ```python
    >>> hardest_negatives(torch.tensor([[0.9, 0.2, 0.7, 0.7]]), torch.tensor([[True, False, False, False]]), k=2)
    [[2, 3]]

    ```
    """
    negatives = ~positives.bool() if negatives is None else negatives.bool() & ~positives.bool()
    result = []
    for row, mask in zip(similarities.tolist(), negatives.tolist()):
        columns = [j for j, is_negative in enumerate(mask) if is_negative]
        columns.sort(key=lambda j: (-row[j], j))
        result.append(columns[:k])
    return result


def process_rewards(
    picks: Sequence[int | None], positive_slots: Sequence[int | None], margins: Sequence[float | None]
) -> list[float | None]:
    """The process reward of each query: its margin when the discriminator picked the positive's T-CoT, else 0.

    Args:
        picks (`Sequence[int | None]`):
            The slot the discriminator picked (`None`: it named none).
        positive_slots (`Sequence[int | None]`):
            The slot of the query's own T-CoT; `None` where there was nothing to compare (reward `None`).
        margins (`Sequence[float | None]`):
            The outcome margins (`None` / NaN: undefined, reward `None`).

    Example:

    ```python
    >>> process_rewards([2, 0, None, 1], [2, 1, 0, None], [0.3, 0.4, 0.5, 0.6])
    [0.3, 0.0, 0.0, None]

    ```
    """
    if not len(picks) == len(positive_slots) == len(margins):
        raise ValueError(f"got {len(picks)} picks, {len(positive_slots)} slots and {len(margins)} margins.")
    rewards: list[float | None] = []
    for pick, slot, margin in zip(picks, positive_slots, margins):
        if slot is None or margin is None or margin != margin:  # NaN check
            rewards.append(None)
        else:
            rewards.append(float(margin) if pick == slot else 0.0)
    return rewards


# --------------------------------------------------------------------------------------------------- discriminators
class Discriminator(Protocol):
    """Picks, for each anchor item, the candidate T-CoT (0-based slot) that was written for it; `None` for none."""

    def __call__(self, anchors: Sequence[Any], candidate_lists: Sequence[Sequence[str]]) -> list[int | None]: ...


class RerankerDiscriminator:
    """A discriminator MLLM through [`~unime_hf.rerank.UniMEReranker`]'s listwise prompt: the anchor (the positive
    target, text and/or image) is the "query", the T-CoTs are the numbered candidates, and the answer's number is
    the pick (unreadable answers fall back to the pointwise `P(Yes)` order, as in the reranker).

    Args:
        reranker ([`~unime_hf.rerank.UniMEReranker`]):
            Wraps the discriminator model (any generative VLM) and its processor.
        prompt (`str`, *optional*, defaults to [`DISCRIMINATOR_PROMPT`]):
            Listwise template with `{query}` and `{candidates}`; set on the reranker.

    Example:

    ```python
    >>> from unime_hf.rerank import UniMEReranker
    >>> judge = UniMEReranker.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct")  # doctest: +SKIP
    >>> discriminator = RerankerDiscriminator(judge)  # doctest: +SKIP

    ```
    """

    def __init__(self, reranker: Any, prompt: str | None = DISCRIMINATOR_PROMPT) -> None:
        self.reranker = reranker
        if prompt is not None:
            reranker.listwise_prompt = prompt

    def __call__(self, anchors: Sequence[Any], candidate_lists: Sequence[Sequence[str]]) -> list[int | None]:
        ranked = self.reranker.rank_many(list(anchors), [list(c) for c in candidate_lists], mode="listwise")
        return [order[0] if order else None for order in ranked]


class EmbedderDiscriminator:
    """A cheap stand-in for the discriminator MLLM: picks the T-CoT whose embedding is closest to the anchor's.

    It is not the paper's discriminator (an MLLM); it suits smoke runs and tests where no second MLLM is available.

    Args:
        embedder ([`~unime_hf.models.modeling_unime.UniMEEmbeddingModel`]):
            The (frozen) Embedder.
        processor (*optional*):
            Its UniME processor.
        batch_size (`int`, *optional*, defaults to 32):
            Items per forward pass.
        image_root (`str`, *optional*):
            Folder of relative image paths.
    """

    def __init__(self, embedder: Any, processor: Any = None, batch_size: int = 32, image_root: str | None = None):
        self.embedder = embedder
        self.processor = processor
        self.batch_size = batch_size
        self.image_root = image_root

    def __call__(self, anchors: Sequence[Any], candidate_lists: Sequence[Sequence[str]]) -> list[int | None]:
        if not anchors:
            return []
        texts = [text if text.strip() else " " for candidates in candidate_lists for text in candidates]
        anchor_embeddings = self.embedder.encode(
            list(anchors), processor=self.processor, batch_size=self.batch_size, image_root=self.image_root
        )
        text_embeddings = self.embedder.encode(texts, processor=self.processor, batch_size=self.batch_size)
        picks: list[int | None] = []
        start = 0
        for anchor, candidates in zip(anchor_embeddings, candidate_lists):
            block = text_embeddings[start : start + len(candidates)]
            start += len(candidates)
            picks.append(int((block @ anchor).argmax()) if len(candidates) else None)
        return picks


# ------------------------------------------------------------------------------------------- the GRPO reward glue
@dataclass
class RewardColumns:
    """Dataset columns the rewards read (they reach reward functions as keyword arguments).

    Args:
        query_id, query_text, query_image (`str`):
            The query (the input the Reasoner wrote the T-CoT for).
        target_id, target_text, target_image (`str`):
            Its positive (the retrieval target).
        target_cot (`str`, *optional*, defaults to `"pos_cot"`):
            An optional column with the target's own T-CoT, embedded after the target when present.
        extra_positive_ids (`str`, *optional*, defaults to `"positive_ids"`):
            An optional column listing more target ids that are also right for the query (known false negatives).
    """

    query_id: str = "query_id"
    query_text: str = "query_text"
    query_image: str = "query_image"
    target_id: str = "pos_id"
    target_text: str = "pos_text"
    target_image: str = "pos_image"
    target_cot: str = "pos_cot"
    extra_positive_ids: str = "positive_ids"


@dataclass
class _BatchTerms:
    key: tuple
    texts: list[str]
    similarities: torch.Tensor
    positives: torch.Tensor
    terms: OutcomeTerms
    target_ids: list[str]
    target_items: list[dict[str, Any]]


class EmbedderGuidedRewards:
    r"""The three Embed-RL rewards as TRL reward functions, sharing one Embedder pass per batch.

    Use [`~EmbedderGuidedRewards.reward_functions`] as `GRPOTrainer(reward_funcs=...)` with
    `GRPOConfig(reward_weights=[0.05, 0.8, 0.2])`. Targets are embedded once and cached by id (the Embedder is
    frozen); each batch embeds its queries with their T-CoTs, and the outcome and process rewards of that batch
    reuse the same similarities.

    Args:
        embedder ([`~unime_hf.models.modeling_unime.UniMEEmbeddingModel`]):
            The frozen Embedder (`encode(items, processor=...)`).
        processor (*optional*):
            Its UniME processor (defaults to the one saved with the Embedder).
        discriminator ([`Discriminator`], *optional*):
            Picks the positive's T-CoT for the process reward; without one the process reward is not offered.
        top_n (`int`, *optional*, defaults to 5):
            `n` of the outcome share.
        temperature (`float`, *optional*, defaults to 0.02):
            Softmax temperature of the negative weights in the margin.
        outcome_scale (`float`, *optional*, defaults to 0.5):
            Factor of `share * margin` (0.5 in the authors' code).
        num_process_negatives (`int`, *optional*, defaults to 4):
            Hardest negatives whose T-CoTs the discriminator sees next to the query's.
        cot_mode (`str`, *optional*, defaults to `"full"`):
            What the Embedder reads after the input: the whole T-CoT (`"full"`) or its `<answer>` (`"answer"`).
        discriminator_cot_mode (`str`, *optional*, defaults to `"full"`):
            The same for the T-CoTs shown to the discriminator.
        embed_crops (`bool`, *optional*, defaults to `False`):
            Fold the crops of the T-CoT's evidence boxes into the query image
            ([`~unime_hf.reasoning.crops.fold_crops`]).
        box_coords (`str`, *optional*, defaults to `"normalized"`), box_scale (`float`, defaults to 1000):
            How the Reasoner writes boxes (see [`~unime_hf.reasoning.crops.crop_evidence`]).
        batch_size (`int`, *optional*, defaults to 32):
            Items per Embedder forward pass.
        image_root (`str`, *optional*):
            Folder of relative image paths in the data.
        columns ([`RewardColumns`], *optional*):
            Names of the dataset columns read.
        seed (`int`, *optional*, defaults to 0):
            Seeds the order of the discriminator's candidates.

    Example:

    ```python
    >>> rewards = EmbedderGuidedRewards(embedder, discriminator=EmbedderDiscriminator(embedder))  # doctest: +SKIP
    >>> args = GRPOConfig("runs/reasoner", reward_weights=[0.05, 0.8, 0.2])  # doctest: +SKIP
    >>> trainer = GRPOTrainer(reasoner, reward_funcs=rewards.reward_functions(), args=args,  # doctest: +SKIP
    ...                       train_dataset=prompts)

    ```
    """

    def __init__(
        self,
        embedder: Any,
        processor: Any = None,
        *,
        discriminator: Discriminator | None = None,
        top_n: int = 5,
        temperature: float = 0.02,
        outcome_scale: float = 0.5,
        num_process_negatives: int = 4,
        cot_mode: str = "full",
        discriminator_cot_mode: str = "full",
        embed_crops: bool = False,
        box_coords: str = "normalized",
        box_scale: float = 1000,
        batch_size: int = 32,
        image_root: str | None = None,
        columns: RewardColumns | None = None,
        seed: int = 0,
    ) -> None:
        for name, mode in (("cot_mode", cot_mode), ("discriminator_cot_mode", discriminator_cot_mode)):
            if mode not in EMBEDDING_TEXT_MODES:
                raise ValueError(f"`{name}` must be one of {EMBEDDING_TEXT_MODES}, got {mode!r}.")
        if box_coords not in BOX_COORDS:
            raise ValueError(f"`box_coords` must be one of {BOX_COORDS}, got {box_coords!r}.")
        if top_n < 1 or not temperature > 0 or num_process_negatives < 1 or batch_size < 1:
            raise ValueError(
                "need top_n >= 1, temperature > 0, num_process_negatives >= 1 and batch_size >= 1; got "
                f"{top_n}, {temperature}, {num_process_negatives}, {batch_size}."
            )
        self.embedder = embedder
        self.processor = processor
        self.discriminator = discriminator
        self.top_n = top_n
        self.temperature = temperature
        self.outcome_scale = outcome_scale
        self.num_process_negatives = num_process_negatives
        self.cot_mode = cot_mode
        self.discriminator_cot_mode = discriminator_cot_mode
        self.embed_crops = embed_crops
        self.box_coords = box_coords
        self.box_scale = box_scale
        self.batch_size = batch_size
        self.image_root = image_root
        self.columns = columns or RewardColumns()
        self.seed = seed
        self._target_cache: dict[str, torch.Tensor] = {}
        self._last: _BatchTerms | None = None

    # ------------------------------------------------------------------------------------------ reward functions
    def reward_functions(self, process: bool | None = None) -> list[Callable[..., list[float | None]]]:
        """`[format_reward, outcome_reward, process_reward]` (the last only with a discriminator, or when `process`
        says so), in the order of [`DEFAULT_REWARD_WEIGHTS`]."""
        process = self.discriminator is not None if process is None else process
        if process and self.discriminator is None:
            raise ValueError("The process reward needs a discriminator; pass `discriminator=` to the rewards.")
        functions = [self.format_reward, self.outcome_reward]
        return [*functions, self.process_reward] if process else functions

    def format_reward(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """1.0 for a well-formed T-CoT, else 0.0."""
        return format_reward(prompts, completions, **kwargs)

    def outcome_reward(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        """`outcome_scale * share * margin` of each completion, from the Embedder (see the module docstring)."""
        batch = self._batch_terms(completions, kwargs)
        values = self.outcome_scale * batch.terms.share * batch.terms.margin
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("outcome/share", float(batch.terms.share.mean()))
            margins = batch.terms.margin[~torch.isnan(batch.terms.margin)]
            if len(margins):
                log_metric("outcome/margin", float(margins.mean()))
        return [None if torch.isnan(v) else float(v) + 0.0 for v in values]

    def process_reward(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        """The margin when the discriminator picks the completion's T-CoT among those of the hardest negatives."""
        if self.discriminator is None:
            raise ValueError("The process reward needs a discriminator; pass `discriminator=` to the rewards.")
        batch = self._batch_terms(completions, kwargs)
        step = getattr(kwargs.get("trainer_state"), "global_step", 0)
        anchors, candidate_lists, slots = self.discriminator_inputs(batch, kwargs, step=step)
        asked = [i for i, slot in enumerate(slots) if slot is not None]
        picks: list[int | None] = [None] * len(slots)
        if asked:
            answers = self.discriminator([anchors[i] for i in asked], [candidate_lists[i] for i in asked])
            for i, pick in zip(asked, answers):
                picks[i] = pick
        margins = [None if torch.isnan(m) else float(m) for m in batch.terms.margin]
        rewards = process_rewards(picks, slots, margins)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and asked:
            log_metric("process/accuracy", sum(picks[i] == slots[i] for i in asked) / len(asked))
        return rewards

    # -------------------------------------------------------------------------------------------------- internals
    def _column(self, kwargs: Mapping[str, Any], name: str, size: int, required: bool = True) -> list[Any]:
        values = kwargs.get(name)
        if values is None:
            if required:
                raise KeyError(
                    f"The rewards read the dataset column {name!r}, which the batch does not have (columns: "
                    f"{sorted(k for k in kwargs if k not in ('trainer_state', 'log_extra', 'log_metric'))}); keep "
                    "it in the dataset (GRPOConfig.remove_unused_columns=False) or set `columns=` of the rewards."
                )
            return [None] * size
        values = list(values)
        if len(values) != size:
            raise ValueError(f"column {name!r} has {len(values)} values for {size} completions.")
        return values

    def _query_item(self, text: str | None, image: Any, cot: str, completion: str) -> dict[str, Any]:
        item: dict[str, Any] = {"text": text or "", "image": image or ""}
        if cot:
            item["cot"] = cot
        if self.embed_crops and item["image"]:
            from unime_hf.models.processing_unime import load_image

            boxes = parse_tcot(completion).boxes
            if boxes:
                picture = load_image(item["image"], image_root=self.image_root)
                crops = crop_evidence(picture, boxes, coords=self.box_coords, scale=self.box_scale).crops
                if crops:
                    item["image"] = fold_crops(picture, crops)
        return item

    def _batch_terms(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> _BatchTerms:
        texts = [completion_text(c) for c in completions]
        size = len(texts)
        c = self.columns
        query_ids = self._column(kwargs, c.query_id, size)
        key = (tuple(texts), tuple(map(str, query_ids)))
        if self._last is not None and self._last.key == key:
            return self._last
        query_texts = self._column(kwargs, c.query_text, size)
        query_images = self._column(kwargs, c.query_image, size, required=False)
        target_ids = [str(i) for i in self._column(kwargs, c.target_id, size)]
        target_texts = self._column(kwargs, c.target_text, size, required=False)
        target_images = self._column(kwargs, c.target_image, size, required=False)
        target_cots = self._column(kwargs, c.target_cot, size, required=False)
        extra = self._column(kwargs, c.extra_positive_ids, size, required=False)

        unique: dict[str, dict[str, Any]] = {}
        for tid, text, image, cot in zip(target_ids, target_texts, target_images, target_cots):
            if tid not in unique:
                item: dict[str, Any] = {"text": text or "", "image": image or ""}
                if cot:
                    item["cot"] = cot
                unique[tid] = item
        missing = [tid for tid in unique if tid not in self._target_cache]
        if missing:
            embedded = self._encode([unique[tid] for tid in missing])
            self._target_cache.update(zip(missing, embedded))
        order = list(unique)
        targets = torch.stack([self._target_cache[tid] for tid in order])

        queries = [
            self._query_item(text, image, tcot_embedding_text(raw, self.cot_mode), raw)
            for text, image, raw in zip(query_texts, query_images, texts)
        ]
        query_embeddings = self._encode(queries)
        similarities = query_embeddings @ targets.T
        column = {tid: j for j, tid in enumerate(order)}
        positives = torch.zeros(size, len(order), dtype=torch.bool)
        for i, (tid, more) in enumerate(zip(target_ids, extra)):
            positives[i, column[tid]] = True
            for other in more or ():
                if str(other) in column:
                    positives[i, column[str(other)]] = True
        terms = outcome_terms(similarities, positives, top_n=self.top_n, temperature=self.temperature)
        self._last = _BatchTerms(key, texts, similarities, positives, terms, order, [unique[t] for t in order])
        return self._last

    def _encode(self, items: list[dict[str, Any]]) -> torch.Tensor:
        return self.embedder.encode(
            items, processor=self.processor, batch_size=self.batch_size, image_root=self.image_root
        ).float()

    def discriminator_inputs(
        self, batch: _BatchTerms, kwargs: Mapping[str, Any], step: int = 0
    ) -> tuple[list[dict[str, Any]], list[list[str]], list[int | None]]:
        """Per completion: the anchor (its positive target), the candidate T-CoTs in shuffled order, and the slot
        of its own T-CoT (`None` when no hardest negative has a T-CoT in the batch).

        The T-CoT standing for a negative target `t_j` is a completion of a query whose positive is `t_j`: the one
        with the same position within its group of generations when there is one, else the first.
        """
        size = len(batch.texts)
        query_ids = [str(q) for q in self._column(kwargs, self.columns.query_id, size)]
        target_ids = [str(t) for t in self._column(kwargs, self.columns.target_id, size)]
        generation: list[int] = []
        seen: dict[str, int] = {}
        for qid in query_ids:
            generation.append(seen.get(qid, 0))
            seen[qid] = generation[-1] + 1
        rows_by_target: dict[str, list[int]] = {}
        for i, tid in enumerate(target_ids):
            rows_by_target.setdefault(tid, []).append(i)
        cot = [tcot_embedding_text(text, self.discriminator_cot_mode) for text in batch.texts]
        hardest = hardest_negatives(batch.similarities, batch.positives, k=len(batch.target_ids))
        anchors, candidate_lists, slots = [], [], []
        for i in range(size):
            others: list[int] = []
            for j in hardest[i]:
                rows = rows_by_target.get(batch.target_ids[j], [])
                if rows:
                    same = [r for r in rows if generation[r] == generation[i]]
                    others.append(same[0] if same else rows[0])
                if len(others) == self.num_process_negatives:
                    break
            target = batch.target_items[batch.target_ids.index(target_ids[i])]
            anchors.append({"text": target["text"], "image": target["image"]})
            if not others:
                candidate_lists.append([])
                slots.append(None)
                continue
            candidates = [i, *others]
            rng = random.Random(zlib.crc32(f"{self.seed}|{step}|{query_ids[i]}|{generation[i]}".encode()))
            rng.shuffle(candidates)
            candidate_lists.append([cot[r] for r in candidates])
            slots.append(candidates.index(i))
        return anchors, candidate_lists, slots
