"""Model cards: Hub metadata, model-index results, usage snippets and the training recipe, parsed back with
`ModelCard.load`. Everything here is offline and pure Python (no model is built)."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest
from huggingface_hub import ModelCard

from unime_hf.hub.model_card import (
    CARD_KINDS,
    MMEB_DATASET,
    card_for_checkpoint,
    flatten_results,
    metric_label,
    render_embedding_card,
    render_reasoner_card,
    render_reranker_card,
    results_to_eval_results,
    training_table,
    write_model_card,
)

REPO_ID = "my-org/unime-v2-tiny"

STRUCTURED = {
    "model": "runs/unime",  # metadata: skipped
    "overall": {"p@1": 63.6},
    "ind": {"p@1": 68.1},
    "ood": {"p@1": 57.93},
    "meta_task": {"classification": {"p@1": 62.1}, "vqa": {"p@1": 56.3}},
    "per_dataset": {"ImageNet-1K": {"p@1": 71.234567}, "N24News": {"p@1": 49.0}},
    "retrieval": {"flickr30k": {"t2i_r@1": 79.8, "i2t_r@1": 93.4}},
    "compositional": {"replace_obj": {"accuracy": 91.5}},
}

TRAINING = {
    "loss": "symmetric_kl",
    "loss_temperature": 0.02,
    "num_hard_negatives": 8,
    "use_lora": True,
    "lora_r": 16,
    "lora_alpha": 64,
    "learning_rate": 1e-4,
    "warmup_steps": 200,
    "max_steps": 2000,
    "queries_per_step": 1024,
    "dataset_name": "TianchengGu/UniME-V2-Training-Datasets",
}


def _eval_values(card: ModelCard) -> dict[tuple, object]:
    return {(r.dataset_type, r.dataset_config, r.metric_type): r.metric_value for r in (card.data.eval_results or [])}


def _embedding_card(**overrides) -> ModelCard:
    kwargs = {
        "base_model": "Qwen/Qwen2-VL-2B-Instruct",
        "datasets": ["TianchengGu/UniME-V2-Training-Datasets"],
        "training": TRAINING,
        "results": STRUCTURED,
        "model_id": REPO_ID,
        "embedding_dim": 1536,
    }
    kwargs.update(overrides)
    return render_embedding_card(**kwargs)


@pytest.fixture
def loaded_card(tmp_path) -> ModelCard:
    path = write_model_card(_embedding_card(), tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" / "README.md"
    return ModelCard.load(path)


def test_embedding_card_metadata_round_trips(loaded_card):
    data = loaded_card.data
    assert data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
    assert data.datasets == ["TianchengGu/UniME-V2-Training-Datasets"]
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "feature-extraction"
    assert data.license == "apache-2.0"
    for tag in ("unime-hf", "unime-v2", "sentence-transformers", "multimodal-embedding"):
        assert tag in data.tags
    assert data.model_name == "unime-v2-tiny"


def test_embedding_card_model_index_has_exact_values(loaded_card):
    values = _eval_values(loaded_card)
    assert values[(MMEB_DATASET, None, "p@1")] == 63.6
    assert values[(MMEB_DATASET, "ind", "p@1")] == 68.1
    assert values[(MMEB_DATASET, "ood", "p@1")] == 57.93
    assert values[(MMEB_DATASET, "classification", "p@1")] == 62.1
    assert values[(MMEB_DATASET, "ImageNet-1K", "p@1")] == 71.234567  # not rounded
    assert values[("flickr30k", None, "t2i_r@1")] == 79.8
    assert values[("flickr30k", None, "i2t_r@1")] == 93.4
    assert values[("replace_obj", None, "accuracy")] == 91.5
    assert len(values) == 10  # metadata ("model") is not a result
    assert all(r.task_type == "feature-extraction" for r in loaded_card.data.eval_results)
    assert "71.23" in loaded_card.text  # the body table shows 4 significant digits


def test_embedding_card_usage_snippets_name_the_repo(loaded_card):
    text = loaded_card.text
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'AutoProcessor.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'SentenceTransformer("{REPO_ID}", trust_remote_code=True)' in text
    assert "path/to/checkpoint" not in text
    assert "**Embedding size:** 1536" in text


def test_embedding_card_training_recipe(loaded_card):
    text = loaded_card.text
    assert "## Training" in text
    for row in (
        "| Temperature | 0.02 |",
        "| Hard negatives per query | 8 |",
        "| LoRA r | 16 |",
        "| LoRA alpha | 64 |",
        "| Learning rate | 0.0001 |",
        "| Steps | 2000 |",
        "| Queries per step | 1024 |",
    ):
        assert row in text
    assert "symmetric KL" in text


def test_card_without_results_or_training_has_no_model_index():
    card = render_embedding_card(base_model="Qwen/Qwen2-VL-2B-Instruct")
    assert "model-index" not in card.data.to_dict()
    assert "## Evaluation" not in card.text and "## Training" not in card.text
    assert 'AutoModel.from_pretrained("path/to/checkpoint"' in card.text  # no repo id given
    ModelCard(str(card))  # still a valid card


def test_training_table_from_training_arguments_like_object_keeps_known_keys():
    class Args:
        def to_dict(self):
            return {"learning_rate": 2e-5, "output_dir": "runs/x", "use_lora": False, "lora_r": 16, "max_steps": -1}

    table = training_table(Args())
    assert "| Learning rate | 2e-05 |" in table
    assert "runs/x" not in table and "LoRA r" not in table and "Steps" not in table
    assert training_table(None) == ""
    with pytest.raises(TypeError, match="training"):
        training_table(42)


def test_flat_results_mapping():
    card = _embedding_card(results={"ImageNet-1K": {"p@1": 0.712}, "my_set": {"recall@5": 0.5, "note": "n=10"}})
    values = _eval_values(ModelCard(str(card)))
    assert values == {
        ("ImageNet-1K", None, "p@1"): 0.712,
        ("my_set", None, "recall@5"): 0.5,
        ("my_set", None, "note"): "n=10",
    }


def test_evaluation_run_results_json(tmp_path):
    run = {
        "format_version": 1,
        "model": {"name_or_path": "runs/x", "class": "UniMEEmbeddingModel"},
        "config": {"batch_size": 8, "datasets": {"a": {"b": 1}}},
        "mmeb": {
            "metric": "precision@1",
            "datasets": {
                "ImageNet-1K": {"precision@1": 0.75, "meta_task": "classification", "split": "ind", "num_queries": 4},
                "shapes-vqa": {"precision@1": 0.5, "meta_task": "vqa", "split": None, "path": "x.jsonl"},
            },
            "meta_tasks": {"classification": 0.75, "vqa": 0.5},
            "ind": 0.75,
            "ood": None,
            "overall": 0.625,
            "num_datasets": {"overall": 2},
            "num_queries": 8,
            "embedding_only": {"meta_tasks": {"classification": 0.5}, "ind": 0.5, "ood": None, "overall": 0.5},
        },
        "retrieval": {
            "shapes": {
                "image_to_text": {"recall@1": 0.9, "recall@5": 1.0},
                "text_to_image": {"recall@1": 0.8, "recall@5": 0.95},
                "num_images": 10,
                "num_captions": 50,
                "modality_gap": {"gap": 0.1},
            }
        },
        "compositional": {
            "shapes": {"subsets": {"replace-obj": 0.9}, "groups": {"replace": 0.9}, "overall": 0.9, "num_rows": {}}
        },
        "predictions": {"mmeb": "predictions/mmeb.jsonl"},
        "plots": ["plots/a.png"],
    }
    (tmp_path / "results.json").write_text(json.dumps(run), encoding="utf-8")
    card = _embedding_card(results=tmp_path)  # a run folder: its results.json is read
    values = _eval_values(ModelCard(str(card)))
    assert values[(MMEB_DATASET, None, "precision@1")] == 0.625
    assert values[(MMEB_DATASET, "ind", "precision@1")] == 0.75
    assert (MMEB_DATASET, "ood", "precision@1") not in values  # None: not computed
    assert values[(MMEB_DATASET, "ImageNet-1K", "precision@1")] == 0.75
    assert values[(MMEB_DATASET, "vqa", "precision@1")] == 0.5
    assert values[(MMEB_DATASET, "embedding_only/overall", "precision@1")] == 0.5
    assert values[("shapes", None, "t2i_recall@1")] == 0.8
    assert values[("shapes", None, "i2t_recall@5")] == 1.0
    assert values[("shapes", "replace-obj", "accuracy")] == 0.9
    assert not any(key[2] in ("num_queries", "batch_size", "gap", "num_images") for key in values)
    assert "| T2I Recall@1 | T2I Recall@5 | I2T Recall@1 | I2T Recall@5 |" in card.text
    assert "### MMEB before reranking" in card.text


def test_results_on_other_data_than_mmeb(caplog):
    run = {
        "format_version": 1,
        "config": {"max_queries": 5},
        "mmeb": {"metric": "p@1", "datasets": {}, "overall": 0.5},
    }
    card = _embedding_card(results=run, mmeb_dataset="shapes-world")
    [result] = ModelCard(str(card)).data.eval_results
    assert (result.dataset_type, result.dataset_name, result.metric_value) == ("shapes-world", "shapes-world", 0.5)
    assert "### shapes-world (MMEB protocol)" in card.text
    assert "TIGER-Lab/MMEB-eval" not in str(card)
    assert "smoke run (max_queries=5" in caplog.text


def test_results_json_file_and_exact_floats(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"overall": {"p@1": 0.1 + 0.2}}), encoding="utf-8")
    [result] = results_to_eval_results(path, task_type="feature-extraction")
    assert result.metric_value == 0.1 + 0.2  # 0.30000000000000004, as computed


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"retrieval": {"flickr30k": {"t2i_r@1": 0.5, "extra": {"x": 1}}}}, "retrieval/flickr30k.*mixes"),
        ({"overall": {"p@1": [0.5]}}, "overall/p@1.*number or a string"),
        ({"overall": {"p@1": math.nan}}, "overall/p@1.*finite"),
        ({"overall": {"p@1": True}}, "overall/p@1"),
        ({"overall": {}}, "'overall' is empty"),
    ],
)
def test_bad_results_say_where(results, message):
    with pytest.raises(ValueError, match=message):
        flatten_results(results)


def test_missing_or_broken_results_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        flatten_results(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        flatten_results(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON object"):
        flatten_results(listed)


def test_numpy_values_become_python_numbers():
    np = pytest.importorskip("numpy")
    [row] = flatten_results({"overall": {"p@1": np.float32(0.5), "n": np.int64(3)}})
    assert row.metrics == {"p@1": 0.5, "n": 3}
    assert type(row.metrics["p@1"]) is float and type(row.metrics["n"]) is int


def test_metric_labels():
    assert metric_label("p@1") == "P@1"
    assert metric_label("t2i_r@5") == "T2I R@5"
    assert metric_label("i2t_recall@10") == "I2T Recall@10"
    assert metric_label("precision@1") == "Precision@1"
    assert metric_label("accuracy") == "Accuracy"


def test_local_paths_stay_out_of_the_metadata(tmp_path):
    local_backbone = tmp_path / "tiny-backbone"
    local_backbone.mkdir()
    card = render_embedding_card(
        base_model=str(local_backbone), datasets=[str(tmp_path / "pairs.jsonl"), "train.jsonl", "./data"]
    )
    data = ModelCard(str(card)).data
    assert data.base_model is None and data.datasets is None
    assert "`train.jsonl`" in card.text
    assert f"`{local_backbone}`" in card.text


def test_extra_tags_license_and_pipeline_tag_override():
    card = _embedding_card(license="mit", tags=["shapes-world", "unime-hf"], pipeline_tag="sentence-similarity")
    data = ModelCard(str(card)).data
    assert data.license == "mit"
    assert data.pipeline_tag == "sentence-similarity"
    assert data.tags.count("unime-hf") == 1 and "shapes-world" in data.tags


def test_reranker_card(tmp_path):
    card = render_reranker_card(
        base_model="Qwen/Qwen2.5-VL-7B-Instruct",
        datasets="TianchengGu/UniME-V2-Training-Datasets",
        training={"lora_r": 128, "lora_alpha": 256, "learning_rate": 2e-5, "lr_scheduler_type": "cosine"},
        results={"overall": {"p@1": 67.6}},
        model_id="my-org/unime-v2-reranker",
        embedding_model="my-org/unime-v2-tiny",
    )
    loaded = ModelCard.load(write_model_card(card, tmp_path))
    assert loaded.data.pipeline_tag == "image-text-to-text"
    assert loaded.data.library_name == "transformers"
    assert loaded.data.base_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert "reranker" in loaded.data.tags and "unime-hf" in loaded.data.tags
    assert _eval_values(loaded)[(MMEB_DATASET, None, "p@1")] == 67.6
    assert 'AutoModelForImageTextToText.from_pretrained("my-org/unime-v2-reranker"' in loaded.text
    assert "my-org/unime-v2-tiny" in loaded.text
    assert "| LoRA r | 128 |" in loaded.text and "| LR schedule | cosine |" in loaded.text


def test_reasoner_card():
    card = render_reasoner_card(base_model="Qwen/Qwen2-VL-2B-Instruct", model_id="my-org/embed-rl-reasoner")
    data = ModelCard(str(card)).data
    assert "embed-rl" in data.tags and data.pipeline_tag == "image-text-to-text"
    assert 'from_pretrained("my-org/embed-rl-reasoner"' in card.text
    assert "2602.13823" in card.text


def test_templates_ship_with_the_package():
    folder = resources.files("unime_hf.hub.templates")
    for kind in CARD_KINDS:
        text = folder.joinpath(f"{kind}.md").read_text(encoding="utf-8")
        assert text.startswith("---\n{{ card_data }}\n---")


def test_custom_template(tmp_path):
    template = tmp_path / "card.md"
    template.write_text("---\n{{ card_data }}\n---\n\n# {{ model_name }} for {{ repo_id }}\n", encoding="utf-8")
    card = render_embedding_card(base_model="Qwen/Qwen2-VL-2B-Instruct", model_id=REPO_ID, template=template)
    assert card.text.strip() == f"# unime-v2-tiny for {REPO_ID}"
    assert card.data.library_name == "transformers"


def test_unknown_kind_and_bad_datasets():
    from unime_hf.hub.model_card import render_card

    with pytest.raises(ValueError, match="kind"):
        render_card("classifier", base_model=None)
    with pytest.raises(TypeError, match="datasets"):
        render_embedding_card(base_model=None, datasets=[1, 2])


def test_write_model_card_into_a_file_path_fails(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError):
        write_model_card(_embedding_card(), not_a_folder)


# ------------------------------------------------------------------------------------------ from a config.json
def _write_config(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


EMBEDDING_CONFIG = {
    "model_type": "unime",
    "architectures": ["UniMEEmbeddingModel"],
    "auto_map": {"AutoConfig": "configuration_unime.UniMEConfig", "AutoModel": "modeling_unime.UniMEEmbeddingModel"},
    "backbone_config": {
        "_name_or_path": "Qwen/Qwen2-VL-2B-Instruct",
        "model_type": "qwen2_vl",
        "text_config": {"hidden_size": 1536},
    },
}


def test_card_for_embedding_checkpoint(tmp_path):
    folder = _write_config(tmp_path / "ckpt", EMBEDDING_CONFIG)
    card = card_for_checkpoint(folder, model_id=REPO_ID, results={"overall": {"p@1": 0.6}})
    data = ModelCard(str(card)).data
    assert data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
    assert data.pipeline_tag == "feature-extraction"
    assert "qwen2_vl" in data.tags
    assert "**Embedding size:** 1536" in card.text
    assert _eval_values(ModelCard(str(card)))[(MMEB_DATASET, None, "p@1")] == 0.6


def test_card_for_checkpoint_with_local_backbone_warns(tmp_path, caplog):
    config = json.loads(json.dumps(EMBEDDING_CONFIG))
    config["backbone_config"]["_name_or_path"] = str(tmp_path)
    folder = _write_config(tmp_path / "ckpt", config)
    card = card_for_checkpoint(folder)
    assert card.data.base_model is None
    assert "--base-model" in caplog.text
    assert card_for_checkpoint(folder, base_model="Qwen/Qwen2-VL-7B-Instruct").data.base_model == (
        "Qwen/Qwen2-VL-7B-Instruct"
    )


def test_card_for_generative_checkpoint_needs_a_kind(tmp_path):
    folder = _write_config(
        tmp_path / "rr", {"model_type": "qwen2_5_vl", "_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"}
    )
    with pytest.raises(ValueError, match="--kind"):
        card_for_checkpoint(folder)
    card = card_for_checkpoint(folder, kind="reranker", model_id="my-org/rr")
    assert card.data.pipeline_tag == "image-text-to-text"
    assert card.data.base_model == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_card_for_checkpoint_without_or_with_broken_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        card_for_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        card_for_checkpoint(tmp_path)
