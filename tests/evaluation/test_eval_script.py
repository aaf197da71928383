"""`unime-hf eval --config ...` end to end on a tiny model and small fixture files; config handling and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unime_hf.cli import main as cli_main
from unime_hf.evaluation.plots import is_png
from unime_hf.evaluation.results import read_results
from unime_hf.scripts.evaluate import EvalConfig, load_config, make_parser

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"
IMAGE_ITEM = "<|image_1|>\nRepresent the given image."


@pytest.fixture()
def fixture_dir(tmp_path):
    """Three coloured images, two MMEB-format sets, a gallery, a compositional set and judge scores."""
    from PIL import Image

    colours = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}
    (tmp_path / "images").mkdir()
    for name, rgb in colours.items():
        Image.new("RGB", (28, 28), rgb).save(tmp_path / "images" / f"{name}.png")
    names = list(colours)
    (tmp_path / "mmeb").mkdir()
    with (tmp_path / "mmeb" / "VOC2007.jsonl").open("w") as handle:
        for colour in names:
            row = {
                "qry_text": "<|image_1|>\nRepresent the given image for classification",
                "qry_img_path": f"images/{colour}.png",
                "tgt_text": [colour] + [c for c in names if c != colour],
                "tgt_img_path": ["", "", ""],
            }
            handle.write(json.dumps(row) + "\n")
    with (tmp_path / "mmeb" / "shapes_t2i.jsonl").open("w") as handle:
        for colour in names:
            row = {
                "qry_text": f"Find an image of a {colour} square",
                "qry_img_path": "",
                "tgt_text": [IMAGE_ITEM] * 3,
                "tgt_img_path": [f"images/{colour}.png"] + [f"images/{c}.png" for c in names if c != colour],
            }
            handle.write(json.dumps(row) + "\n")
    gallery = [{"image": f"images/{c}.png", "caption": f"a {c} square"} for c in names]
    gallery.append({"image": "images/red.png", "caption": "a square that is red"})
    (tmp_path / "gallery.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gallery))
    compositional = [
        {
            "image": "images/red.png",
            "caption": "a red square",
            "negative_caption": "a blue square",
            "subset": "replace-att",
        },
        {
            "image": "images/blue.png",
            "caption": "a blue square",
            "negative_caption": "a blue circle",
            "subset": "replace-obj",
        },
        {
            "image": "images/green.png",
            "caption": "a green square",
            "negative_caption": "a green square and a circle",
            "subset": "add-obj",
        },
    ]
    (tmp_path / "compositional.jsonl").write_text("".join(json.dumps(r) + "\n" for r in compositional))
    mined = [{"pos_score": 0.9, "hard_negative_scores": [0.1, 0.4]}, {"pos_score": 0.7, "hard_negative_scores": [0.8]}]
    (tmp_path / "mined.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mined))
    return tmp_path


def _config(fixture_dir: Path, model: str) -> dict:
    return {
        "model": model,
        "output_dir": str(fixture_dir / "run"),
        "batch_size": 4,
        "show_progress": True,
        "mmeb": {"data_dir": str(fixture_dir / "mmeb"), "image_root": str(fixture_dir)},
        "retrieval": {"colours": {"path": str(fixture_dir / "gallery.jsonl"), "image_prompt": IMAGE_ITEM}},
        "compositional": {"colours": {"path": str(fixture_dir / "compositional.jsonl")}},
        "plots": {"judge_scores": str(fixture_dir / "mined.jsonl"), "judge_threshold": 0.5},
    }


def test_cli_eval_runs_end_to_end(fixture_dir, tiny_backbones):
    config_file = fixture_dir / "eval.yaml"
    config_file.write_text(yaml.safe_dump(_config(fixture_dir, tiny_backbones["qwen2_vl"])))
    status = cli_main(
        [
            "eval",
            "--config",
            str(config_file),
            "--set",
            "mmeb.meta_tasks={shapes_t2i: retrieval}",
            "--log_level",
            "WARNING",
        ]
    )
    assert status == 0
    run = fixture_dir / "run"
    results = read_results(run)
    assert results["model"]["name_or_path"] == tiny_backbones["qwen2_vl"]
    assert results["config"]["batch_size"] == 4
    mmeb = results["mmeb"]
    assert set(mmeb["datasets"]) == {"VOC2007", "shapes_t2i"}
    assert mmeb["datasets"]["shapes_t2i"]["meta_task"] == "retrieval"  # from --set
    assert mmeb["datasets"]["VOC2007"]["split"] == "ind"
    assert mmeb["datasets"]["VOC2007"]["path"] == str(fixture_dir / "mmeb" / "VOC2007.jsonl")
    assert mmeb["image_root"] == str(fixture_dir)
    assert mmeb["encoded_items"] == 12 and mmeb["num_queries"] == 6
    assert set(mmeb["meta_tasks"]) == {"classification", "retrieval"}
    retrieval = results["retrieval"]["colours"]
    assert retrieval["num_images"] == 3 and retrieval["num_captions"] == 4
    assert set(retrieval["image_to_text"]) == {"recall@1", "recall@5", "recall@10"}
    assert retrieval["image_to_text"]["recall@5"] == 1.0  # 4 captions: everything is in the top 5
    assert "centroid_distance" in retrieval["modality_gap"]
    compositional = results["compositional"]["colours"]
    assert compositional["num_rows"]["overall"] == 3
    assert set(compositional["groups"]) == {"replace", "add"}
    # predictions and pictures
    lines = (run / results["predictions"]["mmeb"]).read_text().splitlines()
    assert len(lines) == 6 and {"dataset", "row", "prediction", "gold_rank", "score"} <= json.loads(lines[0]).keys()
    assert len((run / results["predictions"]["retrieval/colours"]).read_text().splitlines()) == 3 + 4
    assert len((run / results["predictions"]["compositional/colours"]).read_text().splitlines()) == 3
    assert sorted(results["plots"]) == ["plots/judge_scores.png", "plots/modality_gap_colours.png"]
    assert all(is_png(run / plot) for plot in results["plots"])


def test_shapes_config_runs_on_a_tiny_world(tmp_path, tiny_backbones):
    from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world

    world = tmp_path / "shapes"
    generate_shapes_world(world, ShapesWorldConfig.preset("tiny", seed=0))
    status = cli_main(
        [
            "eval",
            "--config",
            str(CONFIGS / "eval_shapes.yaml"),
            "--model",
            tiny_backbones["qwen2_vl"],
            "--output_dir",
            str(tmp_path / "run"),
            "--max_queries",
            "3",
            "--no_progress",
            "--set",
            "mmeb.datasets=[t2i_retrieval, heldout_classification]",  # two of the ten sets keep the test short
            "--set",
            f"mmeb.dataset_info={world / 'world.json'}",
            "--set",
            f"mmeb.image_root={world}",
            "--set",
            f"retrieval.shapes_gallery.path={world / 'gallery.jsonl'}",
            "--set",
            f"compositional.shapes_compositional.path={world / 'compositional.jsonl'}",
            "--log_level",
            "WARNING",
        ]
    )
    assert status == 0
    results = read_results(tmp_path / "run")
    info = json.loads((world / "world.json").read_text())["eval_sets"]
    datasets = results["mmeb"]["datasets"]
    assert list(datasets) == ["t2i_retrieval", "heldout_classification"]
    for name, scores in datasets.items():  # meta-task and split from world.json
        assert (scores["meta_task"], scores["split"]) == (info[name]["meta_task"], info[name]["split"])
        assert scores["num_queries"] == 3
    assert results["mmeb"]["ind"] is not None and results["mmeb"]["ood"] is not None
    assert results["retrieval"]["shapes_gallery"]["num_images"] == 3
    assert results["compositional"]["shapes_compositional"]["num_rows"]["overall"] == 3


@pytest.mark.parametrize("interpolation", [None, 0.5])
def test_cli_eval_reranks_mmeb_with_a_reranker_checkpoint(fixture_dir, tiny_backbones, interpolation):
    config = _config(fixture_dir, tiny_backbones["qwen2_vl"])
    config = {key: config[key] for key in ("model", "output_dir", "batch_size", "mmeb")}
    config["rerank"] = {"model": tiny_backbones["qwen2_vl"], "top_k": 2, "mode": "pointwise"}
    if interpolation is not None:
        config["rerank"]["interpolation"] = interpolation
    config_file = fixture_dir / "rerank.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert cli_main(["eval", "--config", str(config_file), "--no_progress", "--log_level", "WARNING"]) == 0
    mmeb = read_results(fixture_dir / "run")["mmeb"]
    assert mmeb["rerank_top_k"] == 2 and "overall" in mmeb["embedding_only"]
    assert mmeb["reranker"]["mode"] == "pointwise"
    assert mmeb["reranker"]["interpolation"] == mmeb["rerank_interpolation"] == interpolation
    assert all("precision@1_embedding" in scores for scores in mmeb["datasets"].values())
    records = [
        json.loads(line) for line in (fixture_dir / "run" / "predictions" / "mmeb.jsonl").read_text().splitlines()
    ]
    for record in records:  # the reranker only reorders the embedder's top 2
        if record["embedding_gold_rank"] > 2:
            assert record["gold_rank"] == record["embedding_gold_rank"]
        else:
            assert record["gold_rank"] <= 2


@pytest.mark.parametrize("name", ["eval_shapes.yaml", "eval_mmeb.yaml", "eval_retrieval.yaml", "eval_sugarcrepe.yaml"])
def test_example_configs_are_valid(name):
    config = load_config(make_parser().parse_args(["--config", str(CONFIGS / name)]))
    assert isinstance(config, EvalConfig) and config.selected_tasks()


def test_config_errors_are_clear(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown option 'bach_size'. Did you mean 'batch_size'"):
        EvalConfig.from_dict({"model": "m", "output_dir": "o", "bach_size": 3, "mmeb": {"data_dir": "x"}})
    with pytest.raises(ValueError, match=r"retrieval\.flickr: needs a `path`"):
        EvalConfig(model="m", output_dir="o", retrieval={"flickr": {"image_root": "x"}})
    with pytest.raises(ValueError, match="nothing to evaluate"):
        EvalConfig(model="m", output_dir="o")
    with pytest.raises(ValueError, match="rerank.mode"):
        EvalConfig(model="m", output_dir="o", mmeb={"data_dir": "x"}, rerank={"model": "r", "mode": "best"})
    with pytest.raises(ValueError, match="rerank.interpolation combines pointwise .* set rerank.mode: pointwise"):
        EvalConfig(model="m", output_dir="o", mmeb={"data_dir": "x"}, rerank={"model": "r", "interpolation": 1})
    with pytest.raises(ValueError, match="rerank.interpolation: The interpolation weight must be .* got -1"):
        EvalConfig(
            model="m",
            output_dir="o",
            mmeb={"data_dir": "x"},
            rerank={"model": "r", "mode": "pointwise", "interpolation": -1},
        )
    with pytest.raises(ValueError, match="tasks"):
        EvalConfig(model="m", output_dir="o", mmeb={"data_dir": "x"}, tasks="mmeb,retreival")
    config = EvalConfig(
        model="m", output_dir="o", mmeb={"data_dir": "x"}, compositional={"c": {"path": "p"}}, tasks="mmeb"
    )
    assert config.selected_tasks() == ["mmeb"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["eval", "--model", "m", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_example_wrapper_is_importable_and_helps():
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "evaluate.py"), "--help"], capture_output=True, text=True, check=True
    )
    assert "--config" in completed.stdout and "unime-hf eval" in completed.stdout
