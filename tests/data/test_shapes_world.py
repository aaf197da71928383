"""The shapes world: determinism, layouts readable by the readers, the world's truth, hardness, held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unime_hf.data import schema
from unime_hf.data.formats import read_mmeb_eval, read_mmeb_train
from unime_hf.data.shapes import (
    ObjectSpec,
    QuerySpec,
    Question,
    Scene,
    ShapeObject,
    ShapesTruth,
    ShapesWorldConfig,
    answer,
    caption_text,
    class_label,
    exact_spec,
    generate_shapes_world,
    is_one_off,
    load_shapes_compositional,
    load_shapes_eval,
    load_shapes_gallery,
    load_shapes_train,
    question_text,
    render_scene,
    satisfies,
)
from unime_hf.scripts.shapes import main

TINY = ShapesWorldConfig.preset("tiny", seed=7)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shapes")
    return out, generate_shapes_world(out, TINY)


@pytest.fixture(scope="module")
def truth(world) -> ShapesTruth:
    return ShapesTruth.from_dir(world[0])


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- the world model

RED_CIRCLE = ShapeObject(cell=1, shape="circle", colour="red", size="small")  # top middle
BLUE_TRIANGLE = ShapeObject(cell=6, shape="triangle", colour="blue", size="large")  # bottom left
RED_SQUARE = ShapeObject(cell=8, shape="square", colour="red", size="medium")  # bottom right
SCENE = Scene((RED_SQUARE, RED_CIRCLE, BLUE_TRIANGLE))


def test_satisfies_relations_counts_and_exactness():
    red_circle, blue_triangle = ObjectSpec("circle", "red"), ObjectSpec("triangle", "blue")
    assert satisfies(SCENE, QuerySpec((red_circle, blue_triangle), ((0, "above", 1),)))
    assert satisfies(SCENE, QuerySpec((red_circle, blue_triangle), ((0, "right of", 1),)))
    assert not satisfies(SCENE, QuerySpec((red_circle, blue_triangle), ((0, "below", 1),)))
    assert not satisfies(SCENE, QuerySpec((red_circle, blue_triangle), ((0, "left of", 1),)))
    red = ObjectSpec(colour="red")
    assert satisfies(SCENE, QuerySpec((red, red)))  # two distinct red objects
    assert not satisfies(SCENE, QuerySpec((red, red, red)))  # but not three: objects are matched once
    assert satisfies(SCENE, QuerySpec((red,), count=3)) and not satisfies(SCENE, QuerySpec((red,), count=2))
    assert satisfies(SCENE, exact_spec(SCENE))
    assert not satisfies(SCENE, QuerySpec(exact_spec(SCENE).objects[:2], exact=True))  # a full caption is all
    assert not satisfies(SCENE, QuerySpec((ObjectSpec("circle", "red", "large"),)))
    assert satisfies(SCENE, QuerySpec((ObjectSpec(cell=8),)))


def test_texts():
    assert caption_text(exact_spec(SCENE), 3) == (
        "a small red circle at the top middle, a large blue triangle at the bottom left "
        "and a medium red square at the bottom right"
    )
    spec = QuerySpec((ObjectSpec("circle", "red"), ObjectSpec("triangle", "blue")), ((0, "above", 1),))
    assert caption_text(spec, 3) == "an image with a red circle above a blue triangle"
    assert caption_text(QuerySpec((ObjectSpec(colour="orange"),), count=3), 3) == (
        "an image with exactly three objects, including an orange object"
    )
    question = Question("relation", ObjectSpec("triangle"), "left of")
    assert question_text(question, 3) == "What is to the left of the triangle?"
    assert answer(SCENE, question) is None  # nothing is left of the bottom-left triangle
    question = Question("relation", ObjectSpec("circle"), "below")
    assert answer(SCENE, question) is None  # two objects are below the circle: no single answer
    assert answer(SCENE, Question("colour", ObjectSpec("square"))) == "red"
    assert answer(SCENE, Question("where", ObjectSpec("circle", "red"))) == "top middle"
    assert answer(SCENE, Question("count", ObjectSpec(colour="red"))) == "two"
    assert question_text(Question("count", ObjectSpec("cross")), 3) == "How many crosses are there?"
    assert answer(SCENE, Question("exists", ObjectSpec("circle", "blue"))) == "no"
    assert class_label(SCENE) == "three objects; the largest: blue triangle"


def test_rendering_is_small_deterministic_and_one_attribute_shows():
    image = render_scene(SCENE, 56)
    assert image.size == (56, 56) and image.mode == "RGB"
    assert image.tobytes() == render_scene(SCENE, 56).tobytes()
    orange = Scene((RED_SQUARE, ShapeObject(1, "circle", "orange", "small"), BLUE_TRIANGLE))
    assert render_scene(orange, 56).tobytes() != image.tobytes()


def test_config_validation():
    with pytest.raises(ValueError, match="max_objects"):
        ShapesWorldConfig(max_objects=5)
    with pytest.raises(ValueError, match="colours must be"):
        ShapesWorldConfig(colours=("red", "mauve"))
    with pytest.raises(ValueError, match="candidates must be >= 2"):
        ShapesWorldConfig(candidates=1)
    with pytest.raises(ValueError, match="unknown tasks"):
        ShapesWorldConfig(train_pairs={"captioning": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        ShapesWorldConfig.preset("huge")


def test_easy_preset_generates_with_its_vocabulary(tmp_path):
    sizes = {k: ShapesWorldConfig.preset("tiny").to_dict()[k] for k in ("train_families", "train_pairs", "candidates")}
    config = ShapesWorldConfig.preset("easy", eval_queries=4, heldout_queries=2, compositional_per_subset=2, **sizes)
    assert (config.grid, config.max_objects, len(config.colours), len(config.shapes)) == (2, 2, 6, 4)
    generate_shapes_world(tmp_path, config)
    captions = " ".join(json.loads(line)["caption"] for line in (tmp_path / "gallery.jsonl").open())
    assert "medium" not in captions and "orange" not in captions and "center" not in captions
    # The presets are copied: changing one config leaves the next one alone.
    config.train_pairs["t2i"] = 0
    assert ShapesWorldConfig.preset("easy").train_pairs["t2i"] == 600


# --------------------------------------------------------------------------------------------- the generated world


def test_same_seed_same_bytes(world, tmp_path):
    out, _ = world
    generate_shapes_world(tmp_path / "again", TINY)
    first, second = files_of(out), files_of(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    generate_shapes_world(tmp_path / "again", ShapesWorldConfig.preset("tiny", seed=8, heldout_queries=0))
    assert (tmp_path / "again" / "train.jsonl").read_bytes() != first["train.jsonl"]
    assert not list((tmp_path / "again" / "eval").glob("heldout_*"))  # the earlier world is replaced, not mixed


def test_layout_and_statistics(world):
    out, stats = world
    for name in ("world.json", "train.jsonl", "corpus.jsonl", "compositional.jsonl", "gallery.jsonl"):
        assert (out / name).is_file(), name
    assert stats["seconds"] < 10
    info = json.loads((out / "world.json").read_text())
    assert info["config"]["seed"] == 7 and "seconds" not in info["statistics"]
    assert info["statistics"]["train_pairs"] == {**TINY.train_pairs, "total": sum(TINY.train_pairs.values())}
    assert len(info["heldout_combos"]) == TINY.heldout_combos
    assert {s["split"] for s in info["eval_sets"].values()} == {"ind", "ood"}
    assert {s["meta_task"] for s in info["eval_sets"].values()} == {"retrieval", "vqa", "classification", "grounding"}
    # hardness where the method acts: false negatives in training, one-attribute-off distractors in eval
    assert stats["train_queries_with_several_true_items"]["t2i"]["queries"] > 0
    assert stats["train_queries_with_several_true_items"]["i2t"]["queries"] > 0
    assert all(row["hard_negatives_per_query"] >= 3 for row in stats["eval"].values())
    assert all(row["false_negatives"] == 0 for row in stats["eval"].values())


def test_training_pairs_read_with_read_mmeb_train(world):
    out, _ = world
    direct = read_mmeb_train(out / "train.jsonl", image_root=out)
    assert len(direct["train"]) == sum(TINY.train_pairs.values())
    data = load_shapes_train(out)
    schema.validate_training_dataset(data)
    assert len(data["corpus"]) > len(direct["corpus"])  # plus the corpus.jsonl distractors
    assert set(direct["corpus"]["id"]) <= set(data["corpus"]["id"])
    meta = [json.loads(line) for line in (out / "meta" / "train.jsonl").read_text().splitlines()]
    assert len(meta) == len(direct["train"])
    assert {m["task"] for m in meta} == {"t2i", "i2t", "vqa", "classification", "grounding"}


def test_eval_sets_read_with_read_mmeb_eval(world):
    out, _ = world
    names = sorted(path.stem for path in (out / "eval").glob("*.jsonl"))
    assert names == sorted(json.loads((out / "world.json").read_text())["eval_sets"])
    for name in names:
        data = read_mmeb_eval(out / "eval" / f"{name}.jsonl", image_root=out)
        assert len(data) == (TINY.heldout_queries if name.startswith("heldout_") else TINY.eval_queries)
        assert all(len(texts) == TINY.candidates for texts in data["candidate_texts"])
        meta = (out / "meta" / "eval" / f"{name}.jsonl").read_text().splitlines()
        assert len(meta) == len(data)
    assert set(load_shapes_eval(out, "ood")) == {name for name in names if name.startswith("heldout_")}


def test_truth_of_every_pair_and_every_candidate(world, truth):
    out, _ = world
    train = load_shapes_train(out)["train"]
    for row in train:
        query = {"text": row["query_text"], "image": row["query_image"]}
        assert truth(query, {"text": row["pos_text"], "image": row["pos_image"]}), row
    for name, data in load_shapes_eval(out).items():
        for row in data:
            query = (row["query_text"], row["query_image"])
            verdicts = [truth(query, c) for c in zip(row["candidate_texts"], row["candidate_images"])]
            assert verdicts == [True] + [False] * (len(verdicts) - 1), name


def test_false_negatives_are_real(world, truth):
    """Some training text query is true of several corpus images (the mining stage must filter those)."""
    data = load_shapes_train(out := world[0])
    images = [(text, image) for text, image in zip(data["corpus"]["text"], data["corpus"]["image"]) if image]
    several = 0
    for row in data["train"]:
        if not row["query_image"] and not row["pos_text"].startswith("<|image_1|>\nRepresent the given cropped"):
            several += sum(truth((row["query_text"], ""), item) for item in images) > 1
    assert several > 0, out


def test_heldout_combos_never_in_training(world, truth):
    out, _ = world
    heldout = {tuple(c) for c in json.loads((out / "world.json").read_text())["heldout_combos"]}
    train = load_shapes_train(out)
    for image in {*train["corpus"]["image"], *train["train"]["query_image"]} - {""}:
        if "/crops/" in image:
            shape, colour, _ = truth.crop(image)
            assert (colour, shape) not in heldout
        else:
            assert not {(o.colour, o.shape) for o in truth.scene(image).objects} & heldout
    texts = set(train["train"]["query_text"]) | set(train["corpus"]["text"])
    words = {f"{colour} {shape}" for colour, shape in heldout}
    assert not [text for text in texts if any(word in text for word in words)]
    for row in load_shapes_eval(out, "ood")["heldout_t2i_retrieval"]:
        gold = truth.scene(row["candidate_images"][0])
        assert {(o.colour, o.shape) for o in gold.objects} & heldout


def test_compositional(world, truth):
    out, stats = world
    data = load_shapes_compositional(out)
    assert sorted(set(data["subset"])) == sorted(schema.COMPOSITIONAL_SUBSETS)
    for row in data:
        scene = truth.scene(row["image"])
        caption, negative = (
            QuerySpec.from_json(truth.meaning(t)["spec"]) for t in (row["caption"], row["negative_caption"])
        )
        assert satisfies(scene, caption) and not satisfies(scene, negative), row


def test_gallery_has_one_attribute_off_families(world, truth):
    gallery = load_shapes_gallery(world[0])
    signatures = sorted({truth.scene(image).signature for image in gallery["image"]})
    assert len(signatures) == len(gallery)  # every scene of the world is unique
    neighbours = sum(is_one_off(("scene", a), ("scene", b)) for a in signatures for b in signatures)
    assert neighbours >= len(signatures)  # on average each image has at least one neighbour one attribute off
    for image, caption in zip(gallery["image"], gallery["caption"]):
        assert satisfies(truth.scene(image), QuerySpec.from_json(truth.meaning(caption)["spec"]))


def test_cli(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path / "w"), "--preset", "tiny", "--seed", "3", "--quiet", "--candidates", "12"]) == 0
    )
    printed = capsys.readouterr().out
    assert "eval set" in printed and "t2i_retrieval" in printed and "false negatives" in printed
    assert json.loads((tmp_path / "w" / "world.json").read_text())["config"]["candidates"] == 12
    config = tmp_path / "shapes.yaml"
    config.write_text("train_families: 4\nheldout_queries: 0\n")
    assert main(["--out", str(tmp_path / "y"), "--preset", "tiny", "--config", str(config), "--quiet"]) == 0
    assert not list((tmp_path / "y" / "eval").glob("heldout_*"))
    assert main(["--out", str(tmp_path / "z"), "--max-objects", "7", "--quiet"]) == 2


@pytest.mark.slow
def test_default_world_in_under_a_minute(tmp_path):
    stats = generate_shapes_world(tmp_path, ShapesWorldConfig())
    assert stats["seconds"] < 60
    assert stats["train_pairs"]["total"] == 8000
    assert all(row["candidates_per_query"] >= 100 for row in stats["eval"].values())
