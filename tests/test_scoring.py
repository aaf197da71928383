"""Yes/no scoring: batched one-pass P(Yes) equals generate's first step, prompts keep every text and image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from unime_hf.scoring import JUDGE_PROMPT, PairError, YesNoScorer, build_pair_content
from unime_hf.testing.tiny import TINY_KINDS as KINDS

PAPER_HEAD = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements of "
    "the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'. Query:"
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two spin against each other on a busy 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """kind -> (model, processor) of a tiny random backbone, built once for this module."""
    from transformers import AutoModelForImageTextToText

    from unime_hf.models.processing_unime import load_processor
    from unime_hf.testing.tiny import build_tiny_backbone

    root = tmp_path_factory.mktemp("scoring-backbones")
    out = {}
    for kind in KINDS:
        path = build_tiny_backbone(kind, root / kind, seed=0)
        out[kind] = (AutoModelForImageTextToText.from_pretrained(path).eval(), load_processor(path))
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring-images")
    paths = {}
    # Sizes every tiny backbone accepts (the tiny LLaVA-OneVision processor and model disagree on 2:1 images).
    for name, size, colour in (("red", (40, 30), (220, 20, 20)), ("blue", (28, 28), (20, 20, 220))):
        image = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(image).ellipse([4, 4, 20, 20], fill=colour)
        image.save(root / f"{name}.png")
        paths[name] = str(root / f"{name}.png")
    return paths


def _pairs(images):
    red, blue = images["red"], images["blue"]
    return [
        ({"text": "a red circle", "image": red}, {"text": "a blue circle", "image": blue}),  # image+text both
        ({"text": "a red circle", "image": None}, {"text": "a small blue circle on the left", "image": ""}),  # text
        ({"text": None, "image": red}, {"text": None, "image": blue}),  # image-only both
        ({"text": "Which shape is this?", "image": Image.open(blue)}, {"text": "circle", "image": None}),  # PIL
        ({"text": "find the picture of a red circle", "image": None}, {"text": None, "image": red}),
        ({"text": "<|image_1|>\nRepresent the given image.", "image": red}, {"text": "red", "image": None}),  # MMEB
        ({"text": "one two three four five six seven eight nine ten", "image": None}, {"text": "ten", "image": None}),
    ]


def _reference_inputs(processor, query, candidate):
    """The judge prompt built by hand from the paper's wording, independent of `build_pair_content`."""

    def parts(item):
        out, imgs = [], []
        text = item["text"]
        if item["image"]:
            image = item["image"]
            imgs.append(image if isinstance(image, Image.Image) else Image.open(image).convert("RGB"))
            out.append({"type": "image"})
            text = (text or "").replace("<|image_1|>", "")
        if text:
            out.append({"type": "text", "text": text})
        return out, imgs

    query_parts, query_images = parts(query)
    candidate_parts, candidate_images = parts(candidate)
    content = [
        {"type": "text", "text": PAPER_HEAD},
        *query_parts,
        {"type": "text", "text": ", Candidates:"},
        *candidate_parts,
        {"type": "text", "text": "."},
    ]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    pictures = query_images + candidate_images
    kwargs = {"images": [pictures]} if pictures else {}
    return text, processor(text=[text], return_tensors="pt", **kwargs)


def _generate_p_yes(model, processor, scorer, query, candidate) -> float:
    _, inputs = _reference_inputs(processor, query, candidate)
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    logits = out.logits[0][0, [scorer.yes_token_id, scorer.no_token_id]].float()
    return torch.softmax(logits, dim=-1)[0].item()


@pytest.mark.parametrize("kind", KINDS)
def test_scores_equal_generate_first_step(backbones, images, kind):
    model, processor = backbones[kind]
    pairs = _pairs(images)
    scorer = YesNoScorer(model, processor, batch_size=1)
    reference = [_generate_p_yes(model, processor, scorer, query, candidate) for query, candidate in pairs]
    assert all(0.0 < value < 1.0 for value in reference)
    original_side = processor.tokenizer.padding_side
    try:
        for padding_side in ("right", "left"):
            processor.tokenizer.padding_side = padding_side
            for batch_size in (1, 3, len(pairs)):
                scorer.batch_size = batch_size
                scores = scorer.score(pairs)
                assert scores == pytest.approx(reference, abs=1e-4), (padding_side, batch_size)
    finally:
        processor.tokenizer.padding_side = original_side


@pytest.mark.parametrize("kind", KINDS)
def test_prompts_hold_both_texts_and_every_image(backbones, images, kind):
    model, processor = backbones[kind]
    scorer = YesNoScorer(model, processor)
    image_token_id = model.config.image_token_id if kind != "llava_onevision" else model.config.image_token_index
    for index, (query, candidate) in enumerate(_pairs(images)):
        prepared = scorer.prepare(query, candidate, index)
        text = scorer.render(prepared)
        expected_text, _ = _reference_inputs(processor, query, candidate)
        assert text == expected_text
        assert text.endswith("<|im_start|>assistant\n")
        assert PAPER_HEAD in text and ", Candidates:" in text
        for item in (query, candidate):
            if item["text"]:
                assert item["text"].replace("<|image_1|>", "").strip() in text
        num_images = sum(bool(item["image"]) for item in (query, candidate))
        assert prepared.num_images == num_images
        assert text.count(processor.image_prompt) == num_images
        inputs = scorer.build_inputs([(query, candidate)], index)
        image_tokens = int((inputs["input_ids"] == image_token_id).sum())
        if num_images == 0:
            assert image_tokens == 0 and "pixel_values" not in inputs
        elif kind == "llava_onevision":
            with torch.inference_mode():
                features = model.model.get_image_features(
                    inputs["pixel_values"], inputs["image_sizes"], batch_num_images=inputs["batch_num_images"]
                )
            assert image_tokens == sum(len(f) for f in features.pooler_output)
        else:
            merge = processor.image_processor.merge_size
            assert image_tokens == int(inputs["image_grid_thw"].prod(-1).sum()) // merge**2


def test_text_only_batches_skip_the_vision_tower(backbones, images, monkeypatch):
    model, processor = backbones["qwen2_vl"]
    seen = []
    forward = model.forward

    def spy(*args, **kwargs):
        seen.append(("pixel_values" in kwargs, int(kwargs["input_ids"].shape[0])))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    pairs = _pairs(images)
    scores = YesNoScorer(model, processor, batch_size=4).score(pairs)
    text_only = sum(not (q["image"] or c["image"]) for q, c in pairs)
    assert [has_pixels for has_pixels, _ in seen] == [True, True, False]  # 5 image pairs in 2 batches, then text
    assert seen[-1][1] == text_only
    assert len(scores) == len(pairs)


def test_prefetch_and_order_do_not_change_scores(backbones, images):
    model, processor = backbones["qwen2_5_vl"]
    pairs = _pairs(images)
    base = YesNoScorer(model, processor, batch_size=2, prefetch=False).score(pairs)
    assert YesNoScorer(model, processor, batch_size=2, prefetch=True).score(pairs) == pytest.approx(base, abs=1e-6)
    reversed_scores = YesNoScorer(model, processor, batch_size=2).score(pairs[::-1])
    assert reversed_scores[::-1] == pytest.approx(base, abs=1e-6)
    assert YesNoScorer(model, processor).score([]) == []


def test_answer_tokens_must_be_single_tokens(backbones):
    model, processor = backbones["qwen2_vl"]
    with pytest.raises(ValueError, match=r"yes_token='Yes maybe' encodes to \d+ tokens"):
        YesNoScorer(model, processor, yes_token="Yes maybe")
    with pytest.raises(ValueError, match="no_token="):
        YesNoScorer(model, processor, no_token="Nope, not at all")
    with pytest.raises(ValueError, match="same token"):
        YesNoScorer(model, processor, yes_token="Yes", no_token="Yes")
    with pytest.raises(ValueError, match=r"\{query\} once and then \{candidate\}"):
        YesNoScorer(model, processor, prompt_template="Is {candidate} good for {query}?")


def test_bad_items_name_the_pair(backbones, images, tmp_path):
    model, processor = backbones["qwen2_vl"]
    scorer = YesNoScorer(model, processor, batch_size=2)
    good = ({"text": "a red circle", "image": None}, {"text": "blue", "image": images["blue"]})
    missing = str(tmp_path / "missing.png")
    with pytest.raises(PairError, match=r"pair 2 \(candidate\): image file not found: .*missing\.png") as info:
        scorer.score([good, good, (good[0], {"text": "x", "image": missing})])
    assert (info.value.index, info.value.side) == (2, "candidate")
    assert isinstance(info.value, ValueError)
    with pytest.raises(PairError, match=r"pair 1 \(query\): the item has neither text nor image"):
        scorer.score([good, ({"text": "", "image": ""}, good[1])])
    with pytest.raises(PairError, match=r"pair 0 \(pair\): expected a \(query, candidate\) tuple"):
        scorer.score([{"query": "a", "candidate": "b"}])
    with pytest.raises(PairError, match=r"pair 0 \(query\): 'text' must be a string"):
        scorer.score([({"text": 3, "image": None}, good[1])])
    with pytest.raises(PairError, match=r"pair 0 \(candidate\): .*placeholder"):
        scorer.score([(good[0], {"text": "<|image_1|> what?", "image": None})])


def test_build_pair_content_layout():
    prepared = build_pair_content({"text": "q", "image": "q.png"}, {"text": "c", "image": None})
    assert prepared.content == [
        {"type": "text", "text": JUDGE_PROMPT.split("{query}")[0]},
        {"type": "image"},
        {"type": "text", "text": "q, Candidates:c."},
    ]
    assert prepared.images == [("query", "q.png")]
    # Strings and PIL images are items too.
    assert build_pair_content("just text", "pic.jpg").images == [("candidate", "pic.jpg")]
