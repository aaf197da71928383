# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""[`UniMEReranker`]: pointwise and listwise reranking with a UniME-V2 reranker (any generative VLM checkpoint).

- **Pointwise**: `P(Yes)` of each (query, candidate) pair with the judge prompt, computed by
  [`~unime_hf.scoring.YesNoScorer`] (the same number the MLLM judge gives); candidates are sorted by it.
- **Listwise**: the candidates are numbered in one prompt ([`~unime_hf.trainer.reranker_data.LISTWISE_PROMPT`]), the
  model answers the number of the best one by greedy decoding, and [`parse_listwise_answer`] reads it. The chosen
  candidate goes first; the others keep their input order (the retriever's ranking, which the listwise answer says
  nothing about), or, with `rest_order="pointwise"`, are sorted by `P(Yes)`. An answer that names no candidate falls
  back to the pointwise order for that query and is counted in `reranker.stats["listwise_fallbacks"]`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unime_hf.scoring import JUDGE_PROMPT, YesNoScorer
from unime_hf.trainer.reranker_data import LISTWISE_PROMPT, build_listwise_content

logger = logging.getLogger(__name__)

MODES = ("listwise", "pointwise")
REST_ORDERS = ("input", "pointwise")
_NUMBER = re.compile(r"\d+")


def parse_listwise_answer(text: str, num_candidates: int) -> int | None:
    """The 0-based candidate index a listwise answer names, or `None` when it names none of `1..num_candidates`.

    The first integer in the text is read, so `"(3)"`, `"3"`, `" (3)."`, `"Candidate 3"` and `"(3) a red circle"` all
    give 2; `"(0)"`, `"(12)"` for 10 candidates, `""` and `"Yes"` give `None`.

    Example:

    ```python
    >>> parse_listwise_answer(" (3).", 5), parse_listwise_answer("Candidate 3", 5), parse_listwise_answer("(9)", 5)
    (2, 2, None)
    ```
    """
    if not isinstance(text, str):
        return None
    match = _NUMBER.search(text)
    if match is None:
        return None
    number = int(match.group())
    return number - 1 if 1 <= number <= num_candidates else None


def pointwise_order(scores: Sequence[float]) -> list[int]:
    """Candidate indices by decreasing score; ties keep the input order."""
    return sorted(range(len(scores)), key=lambda index: -scores[index])


class UniMEReranker:
    """Reranks a query's candidates with a generative VLM trained as a UniME-V2 reranker.

    Args:
        model (`PreTrainedModel`):
            The generative VLM (`AutoModelForImageTextToText`), placed where it should run.
        processor (`ProcessorMixin`):
            Its processor, with a chat template (see [`~unime_hf.models.processing_unime.load_processor`]).
        batch_size (`int`, *optional*, defaults to 8):
            Pairs per forward pass (pointwise) and prompts per `generate` call (listwise).
        judge_prompt (`str`, *optional*, defaults to [`~unime_hf.scoring.JUDGE_PROMPT`]):
            Pointwise prompt with `{query}` and `{candidate}`: the one the reranker was trained with.
        listwise_prompt (`str`, *optional*, defaults to [`~unime_hf.trainer.reranker_data.LISTWISE_PROMPT`]):
            Listwise prompt with `{query}` and `{candidates}`.
        max_new_tokens (`int`, *optional*, defaults to 8):
            Tokens generated for a listwise answer (`(10)` and an end-of-turn token fit).
        rest_order (`str`, *optional*, defaults to `"input"`):
            Listwise: how the candidates after the chosen one are ordered, `"input"` (as given, i.e. the
            retriever's order) or `"pointwise"` (by `P(Yes)`, one extra forward pass per candidate).

    Attributes:
        stats (`dict[str, int]`): `listwise_queries` (queries ranked listwise) and `listwise_fallbacks` (of those,
            answers that named no candidate, ranked pointwise instead).

    Example:

    ```python
    >>> from unime_hf.rerank import UniMEReranker
    >>> reranker = UniMEReranker.from_pretrained("runs/reranker")
    >>> query = {"text": "a red circle above a blue square", "image": None}
    >>> candidates = [{"text": None, "image": "a.png"}, {"text": None, "image": "b.png"}]
    >>> reranker.score(query, candidates)
    [0.12, 0.97]
    >>> reranker.rank(query, candidates, mode="pointwise")
    [1, 0]
    ```
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        judge_prompt: str = JUDGE_PROMPT,
        listwise_prompt: str = LISTWISE_PROMPT,
        max_new_tokens: int = 8,
        rest_order: str = "input",
    ) -> None:
        if rest_order not in REST_ORDERS:
            raise ValueError(f"`rest_order` must be one of {REST_ORDERS}, got {rest_order!r}.")
        if max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}.")
        self.model = model
        self.processor = processor
        self.scorer = YesNoScorer(model, processor, prompt_template=judge_prompt, batch_size=batch_size)
        self.batch_size = batch_size
        self.listwise_prompt = listwise_prompt
        self.max_new_tokens = max_new_tokens
        self.rest_order = rest_order
        self.stats: dict[str, int] = {"listwise_queries": 0, "listwise_fallbacks": 0}
        build_listwise_content("q", ["c"], listwise_prompt)  # fail now on a template without the fields

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: Any = "auto",
        device: str | None = None,
        device_map: Any = None,
        processor: Any = None,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> UniMEReranker:
        """Load a reranker checkpoint (a generative VLM folder or Hub id) and its processor.

        Args:
            name_or_path (`str` or `os.PathLike`):
                The checkpoint `RerankerSFTTrainer.save_model` wrote, or any generative VLM.
            dtype (*optional*, defaults to `"auto"`):
                Weights dtype (`"auto"`: as saved).
            device (`str`, *optional*):
                Where to put the model (`"cuda"`, `"cpu"`); ignored with `device_map`.
            device_map (*optional*):
                Passed to `from_pretrained` (e.g. `"auto"` for a model over several GPUs).
            processor (*optional*):
                A processor to use instead of the checkpoint's.
            model_kwargs (`dict`, *optional*):
                More keyword arguments for `AutoModelForImageTextToText.from_pretrained`.
            kwargs:
                Options of [`UniMEReranker`] (`batch_size`, `rest_order`, ...). `judge_prompt` and `listwise_prompt`
                default to the ones the checkpoint was trained with (its `reranker_config.json`), else the paper's.
        """
        from transformers import AutoModelForImageTextToText

        from unime_hf.models.processing_unime import load_processor

        for key, value in _saved_settings(name_or_path).items():
            kwargs.setdefault(key, value)
        load_kwargs = {"dtype": dtype, **(model_kwargs or {})}
        if device_map is not None:
            load_kwargs["device_map"] = device_map
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **load_kwargs)
        if device is not None and device_map is None:
            model = model.to(device)
        model.eval()
        return cls(model, processor if processor is not None else load_processor(name_or_path), **kwargs)

    # --------------------------------------------------------------------------------------------------- pointwise
    def score(self, query: Any, candidates: Sequence[Any]) -> list[float]:
        """Pointwise `P(Yes)` of each candidate for `query` (see [`~unime_hf.scoring.YesNoScorer.score`]).

        Items are `{"text": ..., "image": ...}` dicts (`""` / `None` = absent), strings or PIL images.
        """
        return self.score_many([query], [candidates])[0]

    def score_many(self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Any]]) -> list[list[float]]:
        """[`score`] for many queries at once (all pairs batched together)."""
        _check_lists(queries, candidate_lists)
        pairs = [(query, candidate) for query, candidates in zip(queries, candidate_lists) for candidate in candidates]
        flat = self.scorer.score(pairs) if pairs else []
        scores, start = [], 0
        for candidates in candidate_lists:
            scores.append(flat[start : start + len(candidates)])
            start += len(candidates)
        return scores

    # ---------------------------------------------------------------------------------------------------- listwise
    def listwise_answers(self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Any]]) -> list[str]:
        """The raw listwise answers (greedy decoding, special tokens removed), one per query."""
        import torch

        _check_lists(queries, candidate_lists)
        prepared = [
            build_listwise_content(query, candidates, self.listwise_prompt, index)
            for index, (query, candidates) in enumerate(zip(queries, candidate_lists))
        ]
        tokenizer = self.scorer.tokenizer
        answers: list[str] = [""] * len(prepared)
        # Sorted by length so that a batch pads little; left padding so every prompt ends at the last position.
        order = sorted(range(len(prepared)), key=lambda i: (prepared[i].num_images, len(prepared[i].content)))
        self.model.eval()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            texts = self.scorer.render_many([prepared[i] for i in batch])
            images = [self.scorer.load_images(prepared[i], i) for i in batch]
            kwargs: dict[str, Any] = {"text": texts, "padding": True, "padding_side": "left", "return_tensors": "pt"}
            if any(images):
                kwargs["images"] = images
            inputs = self.processor(**kwargs)
            inputs = _to_model(inputs, self.model)
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            for index, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[index] = text
        return answers

    # -------------------------------------------------------------------------------------------------------- rank
    def rank(self, query: Any, candidates: Sequence[Any], mode: str = "listwise") -> list[int]:
        """A permutation of `range(len(candidates))`, best first.

        Args:
            query, candidates:
                Items: `{"text": ..., "image": ...}` dicts, strings or PIL images.
            mode (`str`, *optional*, defaults to `"listwise"`):
                `"listwise"` (one generated answer names the best candidate; see the class docstring for the rest)
                or `"pointwise"` (sorted by `P(Yes)`, ties in input order).
        """
        return self.rank_many([query], [candidates], mode=mode)[0]

    def rank_many(
        self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Any]], mode: str = "listwise"
    ) -> list[list[int]]:
        """[`rank`] for many queries, batched."""
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        _check_lists(queries, candidate_lists)
        results: list[list[int] | None] = [None] * len(queries)
        trivial = [i for i, candidates in enumerate(candidate_lists) if len(candidates) <= 1]
        for i in trivial:
            results[i] = list(range(len(candidate_lists[i])))
        todo = [i for i in range(len(queries)) if results[i] is None]
        if mode == "pointwise":
            for i, scores in zip(
                todo, self.score_many([queries[i] for i in todo], [candidate_lists[i] for i in todo])
            ):
                results[i] = pointwise_order(scores)
            return results  # type: ignore[return-value]

        answers = self.listwise_answers([queries[i] for i in todo], [candidate_lists[i] for i in todo])
        self.stats["listwise_queries"] += len(todo)
        chosen: dict[int, int] = {}
        fallback: list[int] = []
        for i, answer in zip(todo, answers):
            best = parse_listwise_answer(answer, len(candidate_lists[i]))
            if best is None:
                logger.debug("Listwise answer %r names none of %d candidates", answer, len(candidate_lists[i]))
                fallback.append(i)
            else:
                chosen[i] = best
        self.stats["listwise_fallbacks"] += len(fallback)
        need_scores = fallback + (list(chosen) if self.rest_order == "pointwise" else [])
        scores = dict(
            zip(
                need_scores,
                self.score_many([queries[i] for i in need_scores], [candidate_lists[i] for i in need_scores]),
            )
        )
        for i in fallback:
            results[i] = pointwise_order(scores[i])
        for i, best in chosen.items():
            rest = pointwise_order(scores[i]) if self.rest_order == "pointwise" else range(len(candidate_lists[i]))
            results[i] = [best, *(j for j in rest if j != best)]
        return results  # type: ignore[return-value]


def _saved_settings(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The prompts a reranker was trained with (`reranker_config.json`, written by `RerankerSFTTrainer.save_model`)."""
    import json

    from transformers.utils import cached_file

    path = cached_file(name_or_path, "reranker_config.json", _raise_exceptions_for_missing_entries=False)
    if path is None:
        return {}
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    return {key: saved[key] for key in ("judge_prompt", "listwise_prompt") if key in saved}


def _check_lists(queries: Sequence[Any], candidate_lists: Sequence[Sequence[Any]]) -> None:
    if len(queries) != len(candidate_lists):
        raise ValueError(
            f"{len(queries)} queries but {len(candidate_lists)} candidate lists; give one list per query."
        )
    for index, candidates in enumerate(candidate_lists):
        if isinstance(candidates, (str, dict)):
            raise TypeError(f"query {index}: candidates must be a list of items, got one {type(candidates).__name__}.")


def _to_model(inputs: Any, model: Any) -> dict[str, Any]:
    import torch

    device = getattr(model, "device", None) or next(model.parameters()).device
    dtype = getattr(model, "dtype", None)
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() and dtype else value.to(device)
        moved[key] = value
    return moved
