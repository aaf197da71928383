"""`unime-hf train-reranker`: YAML + CLI overrides, data layouts, and a short end-to-end run from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unime_hf.scripts.train_reranker import load_reranker_data, make_parser, parse_args

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mined(root: Path):
    import datasets
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    corpus = []
    for i, colour in enumerate([(220, 30, 30), (40, 60, 220), (30, 180, 60), (230, 210, 40)]):
        path = str(root / f"c{i}.png")
        Image.new("RGB", (28, 28), colour).save(path)
        corpus.append({"id": f"i{i}", "text": "", "image": path})
        corpus.append({"id": f"t{i}", "text": f"colour {i}", "image": ""})
    rows = [
        {
            "query_id": f"q{q}",
            "query_text": f"find colour {q}",
            "query_image": "",
            "pos_id": f"i{q}",
            "pos_text": "",
            "pos_image": corpus[2 * q]["image"],
            "pos_score": 0.9,
            "hard_negative_ids": [f"t{(q + 1) % 4}", f"i{(q + 2) % 4}"],
            "hard_negative_scores": [0.4, 0.2],
        }
        for q in range(4)
    ]
    return datasets.DatasetDict(train=datasets.Dataset.from_list(rows), corpus=datasets.Dataset.from_list(corpus))


def test_parser_is_importable_and_yaml_is_overridden(tmp_path):
    assert make_parser().prog == "unime-hf train-reranker"
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_name_or_path: tiny:qwen2_vl\ntrain_file: x\nlist_size: 3\nlearning_rate: 0.1\nbf16: false\n"
    )
    script, args = parse_args(["--config", str(config), "--learning_rate", "0.5", "--output_dir", str(tmp_path)])
    assert (script.model_name_or_path, script.train_file) == ("tiny:qwen2_vl", "x")
    assert (args.list_size, args.learning_rate, args.lora_r) == (3, 0.5, 128)
    config.write_text("model_name_or_path: m\ntrain_file: x\nlist_sise: 3\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['list_sise'\]"):
        parse_args(["--config", str(config)])


@pytest.mark.parametrize("name", ["reranker_shapes.yaml", "reranker_qwen25vl_7b.yaml"])
def test_example_configs_parse(name, tmp_path):
    script, args = parse_args(["--config", str(EXAMPLES / "configs" / name), "--use_cpu", "true"])
    assert args.freeze_vision_tower and args.list_size == 4
    if "7b" in name:
        assert (args.lora_r, args.lora_alpha, args.learning_rate, args.num_train_epochs) == (128, 256, 2e-5, 1)
        assert str(args.lr_scheduler_type.value) == "cosine" and args.use_lora and args.bf16
        assert args.model_init_kwargs["dtype"] == "bfloat16"
        assert script.train_format == "unime_v2"


def test_data_layouts(tmp_path):
    from unime_hf.trainer.reranker_data import build_reranker_rows

    mined = _mined(tmp_path / "images")
    mined.save_to_disk(str(tmp_path / "mined"))
    data = load_reranker_data(tmp_path / "mined")
    assert set(data) == {"train", "corpus"} and len(data["train"]) == 4
    mined["train"].to_json(str(tmp_path / "mined.jsonl"))
    mined["corpus"].to_parquet(str(tmp_path / "corpus.parquet"))
    data = load_reranker_data(tmp_path / "mined.jsonl", corpus_file=tmp_path / "corpus.parquet")
    assert len(data["corpus"]) == 8
    build_reranker_rows(mined["train"], mined["corpus"]).save_to_disk(str(tmp_path / "rows"))
    assert "prompt" in load_reranker_data(tmp_path / "rows")["train"].column_names
    records = [
        {
            "query_text": "find colour 0",
            "query_image": "",
            "pos_text": "",
            "pos_image": "c0.png",
            "query_pos_scores": 0.9,
            "hard_negatives": [["colour 1", ""], ["", "c2.png"]],
            "hard_negatives_scores": [0.4, 0.2],
        }
    ]
    (tmp_path / "unime.json").write_text(json.dumps(records))
    data = load_reranker_data(tmp_path / "unime.json", image_root=str(tmp_path / "images"))
    assert data["train"][0]["pos_image"].endswith("c0.png") and len(data["corpus"]) == 3
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"query_text": "q", "pos_text": "p"}) + "\n")
    with pytest.raises(ValueError, match="mine"):
        load_reranker_data(tmp_path / "pairs.jsonl")


def test_cli_trains_and_saves_a_merged_reranker(tmp_path, tiny_backbones):
    from transformers import AutoModelForImageTextToText

    from unime_hf.cli import main as cli

    _mined(tmp_path / "images").save_to_disk(str(tmp_path / "mined"))
    out = tmp_path / "reranker"
    argv = [
        "train-reranker",
        "--model_name_or_path",
        tiny_backbones["qwen2_vl"],
        "--train_file",
        str(tmp_path / "mined"),
    ]
    argv += ["--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4", "--lora_r", "4"]
    argv += ["--lora_alpha", "8", "--gradient_checkpointing", "false", "--report_to", "none", "--save_strategy", "no"]
    argv += ["--disable_tqdm", "true"]
    assert cli(argv) == 0
    assert (out / "README.md").is_file() and (out / "processing_unime.py").is_file()
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert str(tmp_path / "mined") in (out / "README.md").read_text()
