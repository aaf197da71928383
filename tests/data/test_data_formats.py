"""Readers on small files in the real layouts (fixtures/), and every malformed case naming its row and column."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unime_hf.data import schema
from unime_hf.data.formats import (
    read_compositional,
    read_corpus,
    read_image_caption_folder,
    read_mmeb_eval,
    read_mmeb_train,
    read_unime_v2_mined,
    write_unime_v2_mined,
)
from unime_hf.data.schema import DataFormatError, item_id, query_id

FIXTURES = Path(__file__).parent / "fixtures"
IMG = "<|image_1|>\nRepresent the given image."
CLS = "<|image_1|>\nRepresent the given image for classification"
VQA = "<|image_1|>\nRepresent the given image with the following question: What animal is this?"


def image(name: str) -> str:
    return str(FIXTURES / "images" / f"{name}.png")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def fixture_rows(name: str) -> list[dict]:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines()]


def to_parquet(rows: list[dict], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ------------------------------------------------------------------------------------------------- MMEB-train


def test_read_mmeb_train_exact_rows():
    data = read_mmeb_train(FIXTURES / "mmeb_train.jsonl", image_root=FIXTURES)
    cat, dog_text, dog_image = item_id("cat", ""), item_id("dog", ""), item_id(IMG, image("dog"))
    assert data["corpus"].to_list() == [
        {"id": cat, "text": "cat", "image": ""},
        {"id": dog_text, "text": "dog", "image": ""},
        {"id": dog_image, "text": IMG, "image": image("dog")},
    ]
    caption = "Find me an everyday image that matches the given caption: a dog on the grass"
    assert data["train"].to_list() == [
        {
            "query_id": query_id(CLS, image("cat")),
            "query_text": CLS,
            "query_image": image("cat"),
            "pos_id": cat,
            "pos_text": "cat",
            "pos_image": "",
            "neg_ids": [dog_text],
        },
        {
            "query_id": query_id(caption, ""),
            "query_text": caption,
            "query_image": "",
            "pos_id": dog_image,
            "pos_text": IMG,
            "pos_image": image("dog"),
            "neg_ids": [],
        },
        {
            "query_id": query_id(VQA, image("cat")),
            "query_text": VQA,
            "query_image": image("cat"),
            "pos_id": cat,  # the duplicate positive is merged, and the row keeps its reference
            "pos_text": "cat",
            "pos_image": "",
            "neg_ids": [],
        },
    ]
    schema.validate_training_dataset(data)


def test_read_mmeb_train_default_root_is_the_files_folder_and_parquet_matches(tmp_path):
    from_jsonl = read_mmeb_train(FIXTURES / "mmeb_train.jsonl")
    assert from_jsonl["train"][0]["query_image"] == image("cat")
    parquet = to_parquet(fixture_rows("mmeb_train.jsonl"), tmp_path / "train.parquet")
    from_parquet = read_mmeb_train(parquet, image_root=FIXTURES)
    assert from_parquet["train"].to_list() == from_jsonl["train"].to_list()
    assert from_parquet["corpus"].to_list() == from_jsonl["corpus"].to_list()


def test_read_mmeb_train_without_negatives_has_no_neg_ids_and_keeps_extra_columns():
    rows = [
        {k: v for k, v in r.items() if not k.startswith("neg")} | {"source": "x"}
        for r in fixture_rows("mmeb_train.jsonl")
    ]
    data = read_mmeb_train(rows, image_root=FIXTURES)
    assert "neg_ids" not in data["train"].column_names
    assert data["train"]["source"] == ["x", "x", "x"]
    assert len(data["corpus"]) == 2


def test_read_mmeb_train_absolute_paths_are_kept(tmp_path):
    rows = [{"qry": "q", "qry_image_path": "", "pos_text": "", "pos_image_path": image("bird")}]
    data = read_mmeb_train(write_jsonl(tmp_path / "t.jsonl", rows), image_root=tmp_path / "elsewhere")
    assert data["train"][0]["pos_image"] == image("bird")


# ----------------------------------------------------------------------------------------------- UniME-V2 mined


def test_read_unime_v2_mined_exact_rows():
    data = read_unime_v2_mined(FIXTURES / "unime_v2_mined.json", image_root=FIXTURES)
    cat, dog, bird = item_id("cat", ""), item_id("dog", ""), item_id("bird", "")
    bird_image, dog_image, cat_image = (item_id(IMG, image(n)) for n in ("bird", "dog", "cat"))
    a_bird = item_id("a bird", "")
    assert data["corpus"]["id"] == [cat, dog, bird, bird_image, dog_image, cat_image, a_bird]
    first, second = data["train"].to_list()
    assert first == {
        "query_id": query_id(VQA, image("cat")),
        "query_text": VQA,
        "query_image": image("cat"),
        "pos_id": cat,
        "pos_text": "cat",
        "pos_image": "",
        "pos_score": 0.97,
        "hard_negative_ids": [dog, bird] * 5,  # cyclic repeats keep every reference
        "hard_negative_scores": [0.12, 0.05] * 5,
    }
    assert second["pos_image"] == image("bird") and second["pos_score"] == 0.91
    assert second["hard_negative_ids"] == [dog_image, cat_image, a_bird] * 3 + [dog_image]
    assert second["hard_negative_scores"] == [0.3, 0.2, 0.6] * 3 + [0.3]
    schema.validate_training_dataset(data)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_unime_v2_round_trip(tmp_path, suffix):
    data = read_unime_v2_mined(FIXTURES / "unime_v2_mined.json", image_root=FIXTURES)
    path = write_unime_v2_mined(data["train"], data["corpus"], tmp_path / f"mined{suffix}", image_root=FIXTURES)
    written = fixture_rows("unime_v2_mined.json")
    if suffix == ".json":
        assert json.loads(path.read_text()) == written  # the released layout, paths relative to the root again
    again = read_unime_v2_mined(path, image_root=FIXTURES)
    assert again["train"].to_list() == data["train"].to_list()
    assert again["corpus"].to_list() == data["corpus"].to_list()


def test_unime_v2_round_trip_from_pipeline_output(tmp_path):
    """Mined rows over a larger corpus (as mining writes them) come back equal; the corpus is what they use."""
    pairs = read_mmeb_train(FIXTURES / "mmeb_train.jsonl", image_root=FIXTURES)
    corpus = schema.merge_corpora(pairs["corpus"], read_corpus([{"text": "unused"}, {"text": "bird"}]))
    bird = item_id("bird", "")
    mined = pairs["train"].remove_columns("neg_ids")
    mined = mined.add_column("pos_score", [1.0, 0.5, 0.25])
    mined = mined.add_column("hard_negative_ids", [[bird, bird], [bird], []])
    mined = mined.add_column("hard_negative_scores", [[0.1, 0.1], [0.2], []]).cast(schema.mined_features())
    path = write_unime_v2_mined(mined, corpus, tmp_path / "out" / "mined.json")  # absolute paths, no root
    again = read_unime_v2_mined(path, image_root=tmp_path / "unrelated")
    assert again["train"].to_list() == mined.to_list()
    assert set(again["corpus"]["id"]) == set(mined["pos_id"]) | {bird}


def test_write_unime_v2_mined_refuses_unknown_ids(tmp_path):
    data = read_unime_v2_mined(FIXTURES / "unime_v2_mined.json", image_root=FIXTURES)
    unknown = "c" + "0" * 16
    rows = data["train"].to_list()
    rows[1]["hard_negative_ids"][3] = unknown
    broken = datasets.Dataset.from_list(rows, features=schema.mined_features())
    with pytest.raises(DataFormatError, match=f"row 1, column 'hard_negative_ids': '{unknown}' is not a corpus id"):
        write_unime_v2_mined(broken, data["corpus"], tmp_path / "m.json")


# ------------------------------------------------------------------------------------------------- MMEB-eval


def test_read_mmeb_eval_exact_rows():
    data = read_mmeb_eval(FIXTURES / "mmeb_eval.jsonl", image_root=FIXTURES)
    assert data.to_list() == [
        {
            "dataset": "mmeb_eval",
            "query_text": CLS,
            "query_image": image("cat"),
            "candidate_texts": ["cat", "dog", "bird"],
            "candidate_images": ["", "", ""],
        },
        {
            "dataset": "mmeb_eval",
            "query_text": "Find me an everyday image that matches the given caption: a bird",
            "query_image": "",
            "candidate_texts": [IMG, IMG],
            "candidate_images": [image("bird"), image("dog")],
        },
    ]
    schema.validate_eval(data)


def test_read_mmeb_eval_names_and_parquet(tmp_path):
    parquet = to_parquet(fixture_rows("mmeb_eval.jsonl"), tmp_path / "VOC2007.parquet")
    data = read_mmeb_eval(parquet, image_root=FIXTURES)
    assert set(data["dataset"]) == {"VOC2007"}
    named = read_mmeb_eval(parquet, image_root=FIXTURES, dataset_name="voc")
    assert set(named["dataset"]) == {"voc"}
    assert named["candidate_images"] == read_mmeb_eval(FIXTURES / "mmeb_eval.jsonl")["candidate_images"]


def test_json_file_holding_json_lines_is_read(tmp_path):
    path = tmp_path / "eval.json"  # Dataset.to_json writes JSON Lines under a .json name
    path.write_text((FIXTURES / "mmeb_eval.jsonl").read_text())
    assert len(read_mmeb_eval(path, image_root=FIXTURES)) == 2


# ---------------------------------------------------------------------------------------------- other readers


def test_read_corpus_merges_equal_items_and_checks_ids(tmp_path):
    rows = [{"text": "a", "image": ""}, {"text": "", "image": "images/cat.png"}, {"text": "a", "image": None}]
    corpus = read_corpus(write_jsonl(tmp_path / "c.jsonl", rows), image_root=FIXTURES)
    assert corpus.to_list() == [
        {"id": item_id("a", ""), "text": "a", "image": ""},
        {"id": item_id("", image("cat")), "text": "", "image": image("cat")},
    ]
    saved = tmp_path / "saved.jsonl"
    corpus.to_json(saved)
    assert read_corpus(saved).to_list() == corpus.to_list()
    with pytest.raises(DataFormatError, match=r"row 0, column 'id': 'x' is not the content id"):
        read_corpus([{"id": "x", "text": "a"}])


def test_read_compositional(tmp_path):
    rows = [{"image": "images/cat.png", "caption": "a cat", "negative_caption": "a dog", "subset": "replace-obj"}]
    data = read_compositional(write_jsonl(tmp_path / "c.jsonl", rows), image_root=FIXTURES)
    assert data.to_list() == [{**rows[0], "image": image("cat")}]
    rows[0]["negative_caption"] = "a cat"
    with pytest.raises(DataFormatError, match=r"row 0, column 'negative_caption': equals the caption"):
        read_compositional(rows, image_root=FIXTURES)


def test_read_image_caption_folder(tmp_path):
    (tmp_path / "cat.png").write_bytes((FIXTURES / "images" / "cat.png").read_bytes())
    (tmp_path / "metadata.csv").write_text("file_name,text\ncat.png,a cat\ncat.png,an orange square\n")
    data = read_image_caption_folder(tmp_path)
    cat = str(tmp_path / "cat.png")
    assert data["corpus"].to_list() == [{"id": item_id("", cat), "text": "", "image": cat}]
    assert data["train"]["query_text"] == ["a cat", "an orange square"]
    assert data["train"]["pos_id"] == [item_id("", cat)] * 2
    schema.validate_training_dataset(data)


# ------------------------------------------------------------------------------------------------ bad files


def mmeb_row(**changes) -> dict:
    row = {"qry": "q", "qry_image_path": "", "pos_text": "p", "pos_image_path": "images/cat.png"}
    return {**row, **changes}


def mined_row(**changes) -> dict:
    row = {
        "query_text": "q",
        "query_image": "",
        "pos_text": "p",
        "pos_image": "",
        "query_pos_scores": 0.9,
        "hard_negatives": [["n", ""], ["", "images/dog.png"]],
        "hard_negatives_scores": [0.1, 0.2],
    }
    return {**row, **changes}


def eval_row(**changes) -> dict:
    row = {"qry_text": "q", "qry_img_path": "", "tgt_text": ["a", ""], "tgt_img_path": ["", "images/cat.png"]}
    return {**row, **changes}


@pytest.mark.parametrize(
    "bad, message",
    [
        (mmeb_row(qry=3), r"row 1, column 'qry': expected a string, got int"),
        (mmeb_row(qry=""), r"row 1, column 'qry/qry_image_path': empty item"),
        (mmeb_row(pos_text="", pos_image_path=""), r"row 1, column 'pos_text/pos_image_path': empty item"),
        (
            mmeb_row(pos_image_path="images/missing.png"),
            r"row 1, column 'pos_image_path': image file not found: .*missing\.png",
        ),
        (mmeb_row(neg_text=["x"]), r"row 1, column 'neg_text': expected a string, got list"),
        ({k: v for k, v in mmeb_row().items() if k != "pos_text"}, r"row 1, column 'pos_text': missing value"),
    ],
)
def test_mmeb_train_malformed_rows(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "train.jsonl", [mmeb_row(), bad])
    with pytest.raises(DataFormatError, match=f"{path}: {message}"):
        read_mmeb_train(path, image_root=FIXTURES)


@pytest.mark.parametrize(
    "bad, message",
    [
        (mined_row(query_pos_scores=float("nan")), r"row 1, column 'query_pos_scores': score is nan"),
        (mined_row(query_pos_scores="0.9"), r"row 1, column 'query_pos_scores': expected a number, got str"),
        (mined_row(query_pos_scores=True), r"row 1, column 'query_pos_scores': expected a number, got bool"),
        (
            mined_row(hard_negatives_scores=[0.1]),
            r"row 1, column 'hard_negatives_scores': 1 scores for 2 hard negatives",
        ),
        (
            mined_row(hard_negatives_scores=[0.1, math.inf]),
            r"row 1, column 'hard_negatives_scores\[1\]': score is inf",
        ),
        (
            mined_row(hard_negatives=[["n", ""], "m"]),
            r"row 1, column 'hard_negatives\[1\]': expected a \[text, image_path\] pair",
        ),
        (
            mined_row(hard_negatives=[["n", "", "x"], ["m", ""]]),
            r"row 1, column 'hard_negatives\[0\]': expected a \[text, image_path\] pair",
        ),
        (mined_row(hard_negatives=[["n", ""], ["", ""]]), r"row 1, column 'hard_negatives\[1\]': empty item"),
        (
            mined_row(hard_negatives=[["n", ""], [1, ""]]),
            r"row 1, column 'hard_negatives\[1\]': expected a string, got int",
        ),
        (mined_row(hard_negatives="n"), r"row 1, column 'hard_negatives': expected a list, got str"),
        (
            mined_row(hard_negatives=[["n", ""], ["", "images/nope.png"]]),
            r"row 1, column 'hard_negatives\[1\]': image file not found",
        ),
        (mined_row(pos_image=7), r"row 1, column 'pos_image': expected a string, got int"),
    ],
)
def test_unime_v2_malformed_rows(tmp_path, bad, message):
    path = tmp_path / "mined.json"
    path.write_text(json.dumps([mined_row(), bad]))
    with pytest.raises(DataFormatError, match=f"{path}: {message}"):
        read_unime_v2_mined(path, image_root=FIXTURES)


@pytest.mark.parametrize(
    "bad, message",
    [
        (eval_row(tgt_img_path=[""]), r"row 1, column 'tgt_img_path': 1 images for 2 texts"),
        (eval_row(tgt_text=[], tgt_img_path=[]), r"row 1, column 'tgt_text': no candidates"),
        (eval_row(tgt_text="a"), r"row 1, column 'tgt_text': expected a list, got str"),
        (
            eval_row(tgt_text=["a", ""], tgt_img_path=["", ""]),
            r"row 1, column 'tgt_text\[1\]/tgt_img_path\[1\]': empty item",
        ),
        (eval_row(tgt_text=["a", 5]), r"row 1, column 'tgt_text\[1\]': expected a string, got int"),
        (eval_row(tgt_img_path=["", "images/gone.png"]), r"row 1, column 'tgt_img_path\[1\]': image file not found"),
        (eval_row(qry_text="", qry_img_path=None), r"row 1, column 'qry_text/qry_img_path': empty item"),
    ],
)
def test_mmeb_eval_malformed_rows(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "eval.jsonl", [eval_row(), bad])
    with pytest.raises(DataFormatError, match=f"{path}: {message}"):
        read_mmeb_eval(path, image_root=FIXTURES)


def test_missing_columns_name_file_missing_unexpected_and_expected(tmp_path):
    path = write_jsonl(tmp_path / "eval.jsonl", [eval_row()])
    with pytest.raises(DataFormatError) as error:
        read_mmeb_train(path)
    message = str(error.value)
    assert str(path) in message
    assert "missing columns ['qry', 'qry_image_path', 'pos_text', 'pos_image_path']" in message
    assert "unexpected columns ['qry_text', 'qry_img_path', 'tgt_text', 'tgt_img_path']" in message
    assert "expected columns ['qry', 'qry_image_path', 'pos_text', 'pos_image_path']" in message
    with pytest.raises(DataFormatError, match=r"missing columns \['hard_negatives_scores'\]"):
        read_unime_v2_mined([{k: v for k, v in mined_row().items() if k != "hard_negatives_scores"}])


def test_file_level_errors(tmp_path):
    with pytest.raises(DataFormatError, match=r"unsupported file type '.csv'"):
        read_mmeb_eval(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_mmeb_eval(tmp_path / "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(eval_row()) + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"bad.jsonl: row 1 \(line 2\) is not valid JSON"):
        read_mmeb_eval(bad)
    (tmp_path / "obj.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(DataFormatError, match="expected a JSON list of records"):
        read_mmeb_eval(tmp_path / "obj.json")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataFormatError, match="no rows"):
        read_mmeb_eval(tmp_path / "empty.jsonl")
    with pytest.raises(DataFormatError, match=r"row 1 is a list, expected a record"):
        read_mmeb_eval([eval_row(), [1, 2]])
    with pytest.raises(DataFormatError, match=r"columns \['dataset'\] clash"):
        read_mmeb_eval([eval_row(dataset="x")], image_root=FIXTURES)


def test_check_images_false_skips_the_file_check(tmp_path):
    rows = [mmeb_row(pos_image_path="images/not-there.png")]
    data = read_mmeb_train(rows, image_root=tmp_path, check_images=False)
    assert data["train"][0]["pos_image"] == os.path.join(tmp_path, "images", "not-there.png")


def test_in_memory_dataset_is_accepted():
    rows = fixture_rows("mmeb_eval.jsonl")
    data = read_mmeb_eval(datasets.Dataset.from_list(rows), image_root=FIXTURES)
    assert data["dataset"] == ["eval", "eval"]
