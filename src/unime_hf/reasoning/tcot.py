# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Traceability chains of thought (T-CoT, Embed-RL): the format, prompts that ask a Reasoner MLLM for one, a parser.

A T-CoT has three blocks, in this order (METHOD.md §6):

```text
<thinking>{"keywords": ["red circle", "top left"], "bbox_2d": [[0, 0, 333, 333]], "key_frames": []}</thinking>
<rethink>The red circle is at the top left; the box covers it.</rethink>
<answer>an image with a red circle at the top left</answer>

```

- `<thinking>` holds a JSON object of evidence (free text may surround it): `keywords` (the words that identify the
  match), `bbox_2d` (boxes `[x1, y1, x2, y2]` of the key image regions; Qwen-style `{"bbox_2d": [...], "label": ...}`
  entries are accepted too) and `key_frames` (1-based numbers of the key video frames). Absent evidence is `[]`.
- `<rethink>` checks the evidence against the input.
- `<answer>` is a retrieval-oriented summary.

[`parse_tcot`] never raises: it returns a [`ParsedTCoT`] whose `ok` says whether the text follows the format,
`errors` what is wrong and the parsed fields whatever could be read. [`format_tcot`] writes a well-formed one.
[`build_tcot_messages`] asks a Reasoner for one (chat messages with an image part).

Example:

```python
>>> from unime_hf.reasoning.tcot import format_tcot, parse_tcot
>>> text = format_tcot(keywords=["red circle"], boxes=[[0, 0, 333, 333]], answer="an image with a red circle")
>>> parsed = parse_tcot(text)
>>> parsed.ok, parsed.keywords, parsed.boxes[0].as_list()
(True, ['red circle'], [0.0, 0.0, 333.0, 333.0])
>>> parse_tcot("<answer>a red circle</answer>").errors[0]
'missing <thinking> block'

```
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TAGS: tuple[str, ...] = ("thinking", "rethink", "answer")
EVIDENCE_KEYS: tuple[str, ...] = ("keywords", "bbox_2d", "key_frames")
#: How a T-CoT is turned into the text the Embedder reads: the whole T-CoT or only its `<answer>`.
EMBEDDING_TEXT_MODES: tuple[str, ...] = ("full", "answer")
#: Box coordinate systems: pixels of the image, or normalised to `[0, scale]` (Qwen2-VL / Qwen3-VL: 0-1000).
BOX_COORDS: tuple[str, ...] = ("absolute", "normalized")

_TAG = re.compile(r"<(/?)(thinking|rethink|answer)>")
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
_MMEB_IMAGE = re.compile(r"<\|image_\d+\|>")

#: The user-message template that asks a Reasoner for a T-CoT. `{role}` becomes "query" or "candidate", `{input}` the
#: item's text (or a note that it is an image), `{coords}` how boxes are measured. Braces elsewhere are literal.
TCOT_PROMPT = (
    "Write a traceability chain of thought that helps retrieve the match of this {role}.\n"
    "{input}\n"
    "Reply in exactly this format:\n"
    '<thinking>{"keywords": [...], "bbox_2d": [[x1, y1, x2, y2], ...], "key_frames": [...]}</thinking>\n'
    "<rethink>...</rethink>\n"
    "<answer>...</answer>\n"
    "keywords: the words that identify the match. bbox_2d: boxes of the key image regions, {coords}. "
    "key_frames: 1-based numbers of the key video frames. Use [] for evidence the input does not have. "
    "rethink: check the evidence against the input and correct it. answer: a one-sentence summary for retrieval."
)

#: A short template for tiny test models (fewer prompt tokens); same fields as [`TCOT_PROMPT`].
SHORT_TCOT_PROMPT = "T-CoT for this {role}: {input}"


@dataclass(frozen=True)
class EvidenceBox:
    """One evidence box `[x1, y1, x2, y2]` as written in a T-CoT (coordinates as given: pixels or normalised)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str | None = None

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass
class ParsedTCoT:
    """The result of [`parse_tcot`]: whether the text follows the T-CoT format, what is wrong, and what was read.

    Attributes:
        text (`str`): The parsed text (`""` when the input was not a string).
        ok (`bool`): `True` when there are no errors.
        errors (`list[str]`): Format violations, each a short sentence.
        warnings (`list[str]`): Tolerated oddities (unknown evidence keys, an empty `<rethink>`, ...).
        thinking, rethink, answer (`str`, *optional*): The stripped contents of the blocks that were found.
        evidence (`dict`, *optional*): The JSON object of `<thinking>`, when it decoded.
        keywords (`list[str]`), boxes (`list[EvidenceBox]`), key_frames (`list[int]`): The valid evidence entries.
    """

    text: str
    ok: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    thinking: str | None = None
    rethink: str | None = None
    answer: str | None = None
    evidence: dict[str, Any] | None = None
    keywords: list[str] = field(default_factory=list)
    boxes: list[EvidenceBox] = field(default_factory=list)
    key_frames: list[int] = field(default_factory=list)

    def to_text(self) -> str:
        """The T-CoT re-written in the canonical format from the fields that were read."""
        return format_tcot(
            keywords=self.keywords,
            boxes=self.boxes,
            key_frames=self.key_frames,
            rethink=self.rethink or "",
            answer=self.answer or "",
        )


# ------------------------------------------------------------------------------------------------------- writing
def format_tcot(
    *,
    answer: str,
    keywords: Iterable[str] = (),
    boxes: Iterable[EvidenceBox | Sequence[float]] = (),
    key_frames: Iterable[int] = (),
    rethink: str = "",
    separator: str = "\n",
) -> str:
    """Write a well-formed T-CoT.

    Args:
        answer (`str`):
            The retrieval-oriented summary.
        keywords (`Iterable[str]`, *optional*):
            Text evidence.
        boxes (`Iterable`, *optional*):
            Evidence boxes: [`EvidenceBox`]es or `[x1, y1, x2, y2]` sequences (labels are kept as Qwen-style
            `{"bbox_2d": ..., "label": ...}` entries).
        key_frames (`Iterable[int]`, *optional*):
            1-based key frame numbers.
        rethink (`str`, *optional*):
            The check of the evidence.
        separator (`str`, *optional*, defaults to `"\\n"`):
            What goes between the blocks.

    Example:

    ```python
    >>> print(format_tcot(keywords=["cat"], answer="a cat"))
    <thinking>{"keywords": ["cat"], "bbox_2d": [], "key_frames": []}</thinking>
    <rethink></rethink>
    <answer>a cat</answer>

    ```
    """
    box_entries: list[Any] = []
    for box in boxes:
        if isinstance(box, EvidenceBox):
            coords = [_plain_number(v) for v in box.as_list()]
            box_entries.append({"bbox_2d": coords, "label": box.label} if box.label else coords)
        else:
            box_entries.append([_plain_number(v) for v in box])
    evidence = {"keywords": list(keywords), "bbox_2d": box_entries, "key_frames": [int(f) for f in key_frames]}
    blocks = [
        f"<thinking>{json.dumps(evidence, ensure_ascii=False)}</thinking>",
        f"<rethink>{rethink}</rethink>",
        f"<answer>{answer}</answer>",
    ]
    return separator.join(blocks)


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# ------------------------------------------------------------------------------------------------------- parsing
def parse_tcot(text: Any, *, num_frames: int | None = None, allow_text_outside: bool = False) -> ParsedTCoT:
    """Parse and validate a T-CoT. Never raises: problems are listed in `errors` of the result.

    The text is well-formed (`ok`) when it has exactly one `<thinking>`, `<rethink>` and `<answer>` block, in that
    order, nothing but whitespace outside them (unless `allow_text_outside`), a JSON object in `<thinking>` with at
    least one of `keywords` (list of non-empty strings), `bbox_2d` (list of `[x1, y1, x2, y2]` with `x1 < x2`,
    `y1 < y2`, finite numbers) and `key_frames` (list of integers >= 1, and <= `num_frames` when given), and a
    non-empty `<answer>`. Entries that are invalid are left out of `keywords` / `boxes` / `key_frames`.

    Args:
        text (`str`):
            The Reasoner's output (any object is accepted; a non-string is reported, not raised).
        num_frames (`int`, *optional*):
            Number of frames of the input video, to check key frames against.
        allow_text_outside (`bool`, *optional*, defaults to `False`):
            Tolerate text before, between or after the blocks (reported as a warning instead of an error).

    Returns:
        [`ParsedTCoT`]

    Example:

    ```python
    >>> parsed = parse_tcot('<thinking>{"keywords": ["dog"]}</thinking><rethink></rethink><answer>a dog</answer>')
    >>> parsed.ok, parsed.answer, parsed.warnings
    (True, 'a dog', ['<rethink> is empty'])
    >>> parse_tcot('<thinking>{"keywords": [1]}</thinking>').errors
    ['missing <rethink> block', 'missing <answer> block', 'keywords[0] must be a non-empty string, got 1']

    ```
    """
    if not isinstance(text, str):
        result = ParsedTCoT(text="")
        result.errors.append(f"expected the T-CoT as a string, got {type(text).__name__}")
        return result
    result = ParsedTCoT(text=text)
    try:
        _parse_into(result, num_frames, allow_text_outside)
    except Exception as err:  # a parser bug must not stop a training run; report it as a format error
        result.errors.append(f"could not parse the T-CoT ({type(err).__name__}: {err})")
    result.ok = not result.errors
    return result


def _parse_into(result: ParsedTCoT, num_frames: int | None, allow_text_outside: bool) -> None:
    text = result.text
    tokens = [(m.group(1) == "/", m.group(2), m.start(), m.end()) for m in _TAG.finditer(text)]
    blocks: dict[str, tuple[int, int, str]] = {}  # tag -> (start of open tag, end of close tag, content)
    for name in TAGS:
        opens = [t for t in tokens if t[1] == name and not t[0]]
        closes = [t for t in tokens if t[1] == name and t[0]]
        if not opens and not closes:
            result.errors.append(f"missing <{name}> block")
            continue
        if len(opens) > 1 or len(closes) > 1:
            result.errors.append(f"<{name}> appears {max(len(opens), len(closes))} times; expected once")
        if not opens:
            result.errors.append(f"</{name}> without an opening <{name}>")
            continue
        if not closes:
            result.errors.append(f"<{name}> is not closed with </{name}>")
            continue
        open_tag = opens[0]
        close_tag = next((t for t in closes if t[2] >= open_tag[3]), None)
        if close_tag is None:
            result.errors.append(f"</{name}> comes before <{name}>")
            continue
        blocks[name] = (open_tag[2], close_tag[3], text[open_tag[3] : close_tag[2]])

    found = [name for name in TAGS if name in blocks]
    ordered = sorted(found, key=lambda name: blocks[name][0])
    if ordered != found:
        result.errors.append(f"blocks are in the order {ordered}; expected {[n for n in TAGS if n in found]}")
    spans = sorted((blocks[name][0], blocks[name][1]) for name in found)
    if any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])):
        result.errors.append("blocks overlap or are nested")
    elif spans:
        outside = text[: spans[0][0]] + "".join(
            text[a_end:b_start] for (_, a_end), (b_start, _) in zip(spans, spans[1:])
        )
        outside += text[spans[-1][1] :]
        if outside.strip():
            message = f"text outside the blocks: {_clip(outside.strip())!r}"
            (result.warnings if allow_text_outside else result.errors).append(message)

    if "thinking" in blocks:
        result.thinking = blocks["thinking"][2].strip()
        _parse_evidence(result, result.thinking, num_frames)
    if "rethink" in blocks:
        result.rethink = blocks["rethink"][2].strip()
        if not result.rethink:
            result.warnings.append("<rethink> is empty")
    if "answer" in blocks:
        result.answer = blocks["answer"][2].strip()
        if not result.answer:
            result.errors.append("<answer> is empty")


def _parse_evidence(result: ParsedTCoT, thinking: str, num_frames: int | None) -> None:
    body = _FENCE.sub("", thinking)
    start = body.find("{")
    if start < 0:
        result.errors.append("no JSON evidence object in <thinking>")
        return
    try:
        evidence, _ = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError as err:
        result.errors.append(f"invalid JSON evidence in <thinking>: {err.msg} at character {err.pos - start}")
        return
    if not isinstance(evidence, dict):  # raw_decode at "{" gives a dict; kept for clarity
        result.errors.append("the evidence in <thinking> must be a JSON object")
        return
    result.evidence = evidence
    present = [key for key in EVIDENCE_KEYS if key in evidence]
    if not present:
        result.errors.append(f"the evidence object has none of the keys {list(EVIDENCE_KEYS)}")
    unknown = sorted(set(evidence) - set(EVIDENCE_KEYS))
    if unknown:
        result.warnings.append(f"unknown evidence keys {unknown}")
    if "keywords" in evidence:
        result.keywords = _keywords(evidence["keywords"], result.errors)
    if "bbox_2d" in evidence:
        result.boxes = _boxes(evidence["bbox_2d"], result.errors, result.warnings)
    if "key_frames" in evidence:
        result.key_frames = _key_frames(evidence["key_frames"], num_frames, result.errors)


def _keywords(value: Any, errors: list[str]) -> list[str]:
    if not isinstance(value, list):
        errors.append(f"keywords must be a list of strings, got {type(value).__name__}")
        return []
    keywords = []
    for index, keyword in enumerate(value):
        if isinstance(keyword, str) and keyword.strip():
            keywords.append(keyword.strip())
        else:
            errors.append(f"keywords[{index}] must be a non-empty string, got {_clip(repr(keyword))}")
    return keywords


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _boxes(value: Any, errors: list[str], warnings: list[str]) -> list[EvidenceBox]:
    if not isinstance(value, list):
        errors.append(f"bbox_2d must be a list of [x1, y1, x2, y2] boxes, got {type(value).__name__}")
        return []
    if len(value) == 4 and all(_is_number(v) for v in value):
        warnings.append("bbox_2d is a single box, not a list of boxes")
        value = [value]
    boxes = []
    for index, entry in enumerate(value):
        box = check_box(entry, f"bbox_2d[{index}]")
        if isinstance(box, str):
            errors.append(box)
        else:
            boxes.append(box)
    return boxes


def check_box(entry: Any, where: str = "box") -> EvidenceBox | str:
    """An [`EvidenceBox`] from `[x1, y1, x2, y2]` (or `{"bbox_2d": [...], "label": ...}`), or a message saying what
    is wrong with it (never raises).

    Example:

    ```python
    >>> check_box([10, 20, 30, 40])
    EvidenceBox(x1=10.0, y1=20.0, x2=30.0, y2=40.0, label=None)
    >>> check_box([30, 20, 10, 40])
    'box [30, 20, 10, 40]: x1 must be < x2 and y1 < y2'

    ```
    """
    label = None
    if isinstance(entry, EvidenceBox):
        return entry
    if isinstance(entry, Mapping):
        label = entry.get("label")
        label = label if isinstance(label, str) and label.strip() else None
        entry = entry.get("bbox_2d", entry.get("bbox"))
    if isinstance(entry, tuple):
        entry = list(entry)
    if not isinstance(entry, list) or len(entry) != 4 or not all(_is_number(v) for v in entry):
        return f"{where} {_clip(repr(entry))}: must be four finite numbers [x1, y1, x2, y2]"
    x1, y1, x2, y2 = (float(v) for v in entry)
    if not (x1 < x2 and y1 < y2):
        return f"{where} {entry}: x1 must be < x2 and y1 < y2"
    return EvidenceBox(x1, y1, x2, y2, label)


def _key_frames(value: Any, num_frames: int | None, errors: list[str]) -> list[int]:
    if not isinstance(value, list):
        errors.append(f"key_frames must be a list of 1-based frame numbers, got {type(value).__name__}")
        return []
    frames = []
    for index, frame in enumerate(value):
        if not isinstance(frame, int) or isinstance(frame, bool):
            errors.append(f"key_frames[{index}] must be an integer, got {_clip(repr(frame))}")
        elif frame < 1:
            errors.append(f"key_frames[{index}] = {frame}: frames are numbered from 1")
        elif num_frames is not None and frame > num_frames:
            errors.append(f"key_frames[{index}] = {frame}: the input has {num_frames} frames")
        else:
            frames.append(frame)
    return frames


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def tcot_embedding_text(tcot: str | ParsedTCoT, mode: str = "full") -> str:
    """The part of a T-CoT the Embedder reads after the input: the whole text (`"full"`, stripped) or its `<answer>`
    (`"answer"`; the whole text when there is no readable answer, so a malformed T-CoT still counts).

    Example:

    ```python
    >>> tcot_embedding_text("<thinking>{}</thinking><rethink></rethink><answer> a cat </answer>", mode="answer")
    'a cat'

    ```
    """
    if mode not in EMBEDDING_TEXT_MODES:
        raise ValueError(f"`mode` must be one of {EMBEDDING_TEXT_MODES}, got {mode!r}.")
    parsed = tcot if isinstance(tcot, ParsedTCoT) else None
    text = parsed.text if parsed is not None else (tcot if isinstance(tcot, str) else "")
    if mode == "full":
        return text.strip()
    parsed = parsed if parsed is not None else parse_tcot(text)
    return parsed.answer or text.strip()


def append_cot(text: str | None, cot: str | None) -> str:
    """An input text followed by its T-CoT, exactly as `UniMEEmbeddingModel.encode` joins an item's `text` and `cot`
    (a newline between them; the T-CoT alone when there is no text).

    Example:

    ```python
    >>> append_cot("<|image_1|>\\nFind a caption.", "<answer>a cat</answer>")
    '<|image_1|>\\nFind a caption.\\n<answer>a cat</answer>'

    ```
    """
    if not cot:
        return text or ""
    return f"{text}\n{cot}" if text else str(cot)


def attach_cot(
    dataset: Any,
    cot_column: str = "query_cot",
    text_column: str = "query_text",
    *,
    mode: str = "full",
    remove_cot_column: bool = True,
) -> Any:
    """Fold a T-CoT column into a text column, so that any trainer that reads `text` / `image` columns (such as
    `EmbeddingDistillTrainer`) trains the Embedder on `[input, T-CoT]` exactly as `encode` embeds
    `{"text", "image", "cot"}` items.

    Args:
        dataset (`datasets.Dataset`):
            Rows with `text_column` and `cot_column` (`""` / `None`: no T-CoT, the text is kept).
        cot_column (`str`, *optional*, defaults to `"query_cot"`):
            The T-CoTs (e.g. written by the Reasoner).
        text_column (`str`, *optional*, defaults to `"query_text"`):
            The input text to extend (`"pos_text"` for candidate-side T-CoTs).
        mode (`str`, *optional*, defaults to `"full"`):
            `"full"` (the whole T-CoT) or `"answer"` (its `<answer>`), see [`tcot_embedding_text`].
        remove_cot_column (`bool`, *optional*, defaults to `True`):
            Drop `cot_column` afterwards.

    Example:

    ```python
    >>> pairs = attach_cot(pairs.add_column("query_cot", cots))  # doctest: +SKIP
    >>> args = EmbeddingDistillConfig("runs/embedder-tcot", loss="info_nce")  # doctest: +SKIP
    >>> trainer = EmbeddingDistillTrainer(backbone, args=args, train_dataset=pairs)  # doctest: +SKIP

    ```
    """
    for column in (cot_column, text_column):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset has no {column!r} column (columns: {dataset.column_names}).")
    if mode not in EMBEDDING_TEXT_MODES:
        raise ValueError(f"`mode` must be one of {EMBEDDING_TEXT_MODES}, got {mode!r}.")

    def fold(row: dict[str, Any]) -> dict[str, str]:
        cot = tcot_embedding_text(row[cot_column] or "", mode)
        return {text_column: append_cot(row[text_column], cot)}

    folded = dataset.map(fold, desc=f"{cot_column} -> {text_column}")
    return folded.remove_columns(cot_column) if remove_cot_column else folded


# ------------------------------------------------------------------------------------------------------- prompts
def describe_coords(coords: str = "normalized", scale: float = 1000, image_size: tuple[int, int] | None = None) -> str:
    """How boxes are measured, in words, for the prompt."""
    if coords == "normalized":
        return f"in coordinates from 0 to {_plain_number(scale)} relative to the image width and height"
    if coords == "absolute":
        if image_size is not None:
            return f"in pixels of the {image_size[0]}x{image_size[1]} image"
        return "in pixels of the image"
    raise ValueError(f"`coords` must be one of {BOX_COORDS}, got {coords!r}.")


def build_tcot_prompt(
    text: str | None,
    *,
    has_image: bool,
    role: str = "query",
    template: str = TCOT_PROMPT,
    coords: str = "normalized",
    scale: float = 1000,
    image_size: tuple[int, int] | None = None,
) -> str:
    """The user text that asks for a T-CoT of an item (its image, if any, goes in a separate image part).

    Args:
        text (`str`, *optional*):
            The item's text; MMEB `<|image_1|>` markers are removed (the image is given as an image part).
        has_image (`bool`):
            Whether the item has an image.
        role (`str`, *optional*, defaults to `"query"`):
            `"query"` or `"candidate"`, said in the prompt.
        template (`str`, *optional*, defaults to [`TCOT_PROMPT`]):
            The template, with `{role}`, `{input}` and `{coords}` fields (other braces are literal).
        coords, scale, image_size:
            How boxes are measured (see [`describe_coords`]).

    Example:

    ```python
    >>> build_tcot_prompt("<|image_1|>\\nFind a caption.", has_image=True, template=SHORT_TCOT_PROMPT)
    'T-CoT for this query: Input: the image above and the text "Find a caption."'

    ```
    """
    clean = _MMEB_IMAGE.sub("", text or "").strip()
    if has_image and clean:
        described = f'Input: the image above and the text "{clean}"'
    elif has_image:
        described = "Input: the image above."
    elif clean:
        described = f'Input: the text "{clean}"'
    else:
        raise ValueError("A T-CoT prompt needs an item with text or an image.")
    coords_text = describe_coords(coords, scale, image_size)
    return template.replace("{role}", role).replace("{input}", described).replace("{coords}", coords_text)


def build_tcot_messages(
    item: Mapping[str, Any] | str,
    *,
    role: str = "query",
    template: str = TCOT_PROMPT,
    coords: str = "normalized",
    scale: float = 1000,
    image_size: tuple[int, int] | None = None,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """Chat messages asking a Reasoner MLLM for the T-CoT of one item, with the item's image as an image part.

    Args:
        item (`dict` or `str`):
            `{"text": ..., "image": ...}` (image: a path or a PIL image; `""` / `None` = absent) or a text.
        role, template, coords, scale, image_size:
            As for [`build_tcot_prompt`].
        system_prompt (`str`, *optional*):
            A system message to put first.

    Returns:
        `list[dict]`: `[{"role": "user", "content": [{"type": "image", "image": ...}, {"type": "text", ...}]}]` (no
        image part for a text-only item), ready for `processor.apply_chat_template(..., add_generation_prompt=True)`.

    Example:

    ```python
    >>> messages = build_tcot_messages({"text": "<|image_1|>\\nFind a caption.", "image": "cat.png"})
    >>> [part["type"] for part in messages[0]["content"]]
    ['image', 'text']

    ```
    """
    if isinstance(item, str):
        item = {"text": item}
    image = item.get("image") or None
    prompt = build_tcot_prompt(
        item.get("text"),
        has_image=image is not None,
        role=role,
        template=template,
        coords=coords,
        scale=scale,
        image_size=image_size,
    )
    content: list[dict[str, Any]] = [{"type": "image", "image": image}] if image is not None else []
    content.append({"type": "text", "text": prompt})
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages
