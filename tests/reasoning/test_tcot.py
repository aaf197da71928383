"""T-CoT format: writing, parsing (never raising on malformed text), prompts, folding into embedding inputs."""

from __future__ import annotations

import pytest

from unime_hf.reasoning.tcot import (
    SHORT_TCOT_PROMPT,
    EvidenceBox,
    append_cot,
    build_tcot_messages,
    build_tcot_prompt,
    format_tcot,
    parse_tcot,
    tcot_embedding_text,
)

GOOD = (
    '<thinking>The query asks for a red shape. {"keywords": ["red circle", "top left"], '
    '"bbox_2d": [[0, 0, 333, 333], {"bbox_2d": [10, 20, 30, 40], "label": "circle"}], "key_frames": [1, 3]}'
    "</thinking>\n<rethink>The circle is red and at the top left.</rethink>\n"
    "<answer>a red circle at the top left</answer>"
)


def test_well_formed_tcot_parses_every_field():
    parsed = parse_tcot(GOOD, num_frames=3)
    assert parsed.ok and parsed.errors == [] and parsed.warnings == []
    assert parsed.keywords == ["red circle", "top left"]
    assert [b.as_list() for b in parsed.boxes] == [[0, 0, 333, 333], [10, 20, 30, 40]]
    assert parsed.boxes[1].label == "circle"
    assert parsed.key_frames == [1, 3]
    assert parsed.rethink == "The circle is red and at the top left."
    assert parsed.answer == "a red circle at the top left"
    assert parse_tcot(parsed.to_text()).ok


def test_format_tcot_round_trip():
    text = format_tcot(
        keywords=["blue square"],
        boxes=[[1.5, 2, 3, 4], EvidenceBox(0, 0, 10, 10, "square")],
        key_frames=[2],
        rethink="checked",
        answer="a blue square",
    )
    parsed = parse_tcot(text)
    assert parsed.ok, parsed.errors
    assert parsed.keywords == ["blue square"] and parsed.key_frames == [2] and parsed.answer == "a blue square"
    assert [b.as_list() for b in parsed.boxes] == [[1.5, 2, 3, 4], [0, 0, 10, 10]]
    assert parsed.boxes[1].label == "square"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "missing <thinking> block"),
        ("just some words", "missing <thinking> block"),
        ('<thinking>{"keywords": []}</thinking><answer>x</answer>', "missing <rethink> block"),
        ('<thinking>{"keywords": []}</thinking><rethink></rethink><answer></answer>', "<answer> is empty"),
        ('<thinking>{"keywords": []}<rethink></rethink><answer>x</answer>', "<thinking> is not closed"),
        ('<answer>x</answer><thinking>{"keywords": []}</thinking><rethink></rethink>', "blocks are in the order"),
        ('<thinking>{"keywords": []}</thinking><rethink></rethink><answer>x</answer><answer>y</answer>', "appears 2"),
        ('<thinking>{"keywords": []}</thinking><rethink></rethink><answer>x</answer> bye', "text outside"),
        ("<thinking>no json here</thinking><rethink></rethink><answer>x</answer>", "no JSON evidence"),
        ('<thinking>{"keywords": [</thinking><rethink></rethink><answer>x</answer>', "invalid JSON evidence"),
        ('<thinking>{"colour": "red"}</thinking><rethink></rethink><answer>x</answer>', "none of the keys"),
        ('<thinking>{"keywords": "red"}</thinking><rethink></rethink><answer>x</answer>', "keywords must be a list"),
        ('<thinking>{"bbox_2d": [[5, 5, 1, 1]]}</thinking><rethink></rethink><answer>x</answer>', "x1 must be < x2"),
        ('<thinking>{"bbox_2d": [[1, 2, 3]]}</thinking><rethink></rethink><answer>x</answer>', "four finite numbers"),
        ('<thinking>{"bbox_2d": [[1, 2, "a", 4]]}</thinking><rethink></rethink><answer>x</answer>', "four finite"),
        ('<thinking>{"key_frames": [0]}</thinking><rethink></rethink><answer>x</answer>', "numbered from 1"),
        ('<thinking>{"key_frames": [1.5]}</thinking><rethink></rethink><answer>x</answer>', "must be an integer"),
        ('<thinking>{"key_frames": [true]}</thinking><rethink></rethink><answer>x</answer>', "must be an integer"),
        ('<thinking>{"key_frames": [9]}</thinking><rethink></rethink><answer>x</answer>', "the input has 4 frames"),
        ('</thinking>{"keywords": []}<thinking><rethink></rethink><answer>x</answer>', "comes before"),
    ],
)
def test_malformed_tcot_is_reported_not_raised(text, expected):
    parsed = parse_tcot(text, num_frames=4)
    assert not parsed.ok
    assert any(expected in error for error in parsed.errors), parsed.errors


@pytest.mark.parametrize("value", [None, 3, ["<answer>x</answer>"], b"<answer>x</answer>"])
def test_non_string_input_is_an_error(value):
    parsed = parse_tcot(value)
    assert not parsed.ok and "expected the T-CoT as a string" in parsed.errors[0]


def test_partial_fields_are_kept_on_error_and_tolerances():
    parsed = parse_tcot('<thinking>{"keywords": ["a", 1]}</thinking><answer>an answer</answer>')
    assert not parsed.ok and parsed.keywords == ["a"] and parsed.answer == "an answer"
    # a single flat box, unknown keys, an empty rethink and text outside (when allowed) are only warnings
    text = 'hi <thinking>```json\n{"bbox_2d": [1, 2, 3, 4], "notes": 1}\n```</thinking>'
    text += "<rethink></rethink><answer>x</answer>"
    parsed = parse_tcot(text, allow_text_outside=True)
    assert parsed.ok, parsed.errors
    assert [b.as_list() for b in parsed.boxes] == [[1, 2, 3, 4]]
    assert len(parsed.warnings) == 4


def test_embedding_text_modes():
    assert tcot_embedding_text("  " + GOOD + " ") == GOOD
    assert tcot_embedding_text(GOOD, mode="answer") == "a red circle at the top left"
    assert tcot_embedding_text("garbled", mode="answer") == "garbled"
    with pytest.raises(ValueError, match="mode"):
        tcot_embedding_text(GOOD, mode="thinking")


def test_prompt_and_messages():
    messages = build_tcot_messages({"text": "<|image_1|>\nFind a caption.", "image": "cat.png"})
    assert messages[0]["role"] == "user"
    image_part, text_part = messages[0]["content"]
    assert image_part == {"type": "image", "image": "cat.png"}
    assert "<|image_1|>" not in text_part["text"]
    assert '"Find a caption."' in text_part["text"] and "0 to 1000" in text_part["text"]
    assert "<thinking>" in text_part["text"] and '"bbox_2d"' in text_part["text"]

    text_only = build_tcot_messages("a red circle", role="candidate", system_prompt="Be brief.")
    assert [m["role"] for m in text_only] == ["system", "user"]
    assert [p["type"] for p in text_only[1]["content"]] == ["text"]
    assert "this candidate" in text_only[1]["content"][0]["text"]

    absolute = build_tcot_prompt("x", has_image=True, coords="absolute", image_size=(56, 56))
    assert "pixels of the 56x56 image" in absolute
    assert build_tcot_prompt(None, has_image=True, template=SHORT_TCOT_PROMPT).endswith("the image above.")
    with pytest.raises(ValueError, match="text or an image"):
        build_tcot_prompt("", has_image=False)
    with pytest.raises(ValueError, match="coords"):
        build_tcot_prompt("x", has_image=False, coords="relative")


def test_append_cot_matches_encode_joining():
    assert append_cot("query", "cot") == "query\ncot"
    assert append_cot("", "cot") == "cot"
    assert append_cot("query", "") == "query"
    assert append_cot(None, None) == ""
