"""`unime-hf train` / examples/train.py: YAML + flags, data loading, a full run, resuming, and (slow) accelerate
launches with 2 processes (DDP) and DeepSpeed ZeRO-2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unime_hf.models.modeling_unime import UniMEEmbeddingModel
from unime_hf.scripts.train_embedding import load_training_data, main, parse_args

ROOT = Path(__file__).resolve().parents[2]


def write_yaml(path: Path, values: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def saved_data(synthetic_data, tmp_path_factory) -> dict[str, Path]:
    """The synthetic mined data written the ways the script reads it."""
    import datasets

    mined, corpus = synthetic_data
    root = tmp_path_factory.mktemp("script-data")
    datasets.DatasetDict({"train": mined, "corpus": corpus}).save_to_disk(str(root / "mined"))
    mined.to_json(str(root / "mined.jsonl"))
    corpus.to_json(str(root / "corpus.jsonl"))
    return {"folder": root / "mined", "jsonl": root / "mined.jsonl", "corpus": root / "corpus.jsonl"}


def small_run(backbone: str, train_file: Path, output_dir: Path, **extra) -> dict:
    return {
        "model_name_or_path": backbone,
        "train_file": str(train_file),
        "output_dir": str(output_dir),
        "num_hard_negatives": 3,
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 1.0e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        **extra,
    }


def test_yaml_then_flags(tmp_path):
    config = write_yaml(
        tmp_path / "run.yaml",
        {"model_name_or_path": "m", "train_file": "t.jsonl", "learning_rate": 1e-4, "lora_target_modules": ["q_proj"]},
    )
    script_args, args = parse_args(["--config", str(config), "--learning_rate", "3e-4", "--output_dir", str(tmp_path)])
    assert (script_args.model_name_or_path, script_args.train_file) == ("m", "t.jsonl")
    assert args.learning_rate == 3e-4 and args.lora_target_modules == ["q_proj"]
    with pytest.raises(ValueError, match="unknown option"):
        parse_args(["--config", str(write_yaml(tmp_path / "bad.yaml", {"learning_rat": 1.0}))])


def test_load_training_data_layouts(saved_data):
    from_folder = load_training_data(saved_data["folder"])
    from_json = load_training_data(saved_data["jsonl"], corpus_file=saved_data["corpus"])
    for data in (from_folder, from_json):
        assert set(data) == {"train", "corpus"} and len(data["train"]) == 8 and len(data["corpus"]) == 16
        assert data["train"][0]["hard_negative_ids"] == from_folder["train"][0]["hard_negative_ids"]


def test_load_training_data_reads_mmeb_train(tmp_path, synthetic_data):
    mined, _ = synthetic_data
    rows = [
        {"qry": r["query_text"], "qry_image_path": r["query_image"], "pos_text": r["pos_text"],
         "pos_image_path": r["pos_image"]}
        for r in mined
    ]  # fmt: skip
    path = tmp_path / "mmeb.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = load_training_data(path)
    assert len(data["train"]) == 8 and "pos_id" in data["train"].column_names and "corpus" in data


def test_load_training_data_reads_released_unime_v2_json(tmp_path, synthetic_data):
    from unime_hf.data.formats import write_unime_v2_mined

    mined, corpus = synthetic_data
    path = write_unime_v2_mined(mined, corpus, tmp_path / "unime_v2.json")
    data = load_training_data(path)
    row = data["train"][0]
    assert len(data["train"]) == 8 and len(row["hard_negative_ids"]) == 10
    assert row["hard_negative_scores"] == pytest.approx(mined[0]["hard_negative_scores"])
    assert set(row["hard_negative_ids"]) <= set(data["corpus"]["id"])


def test_main_trains_saves_and_resumes(backbone, saved_data, tmp_path):
    output = tmp_path / "run"
    config = write_yaml(tmp_path / "run.yaml", small_run(backbone, saved_data["folder"], output, use_lora=True))
    assert main(["--config", str(config), "--save_strategy", "steps", "--save_steps", "1"]) == 0
    for name in ("model.safetensors", "modeling_unime.py", "processor_config.json", "modules.json", "README.md"):
        assert (output / name).is_file(), name
    assert "Training data" in (output / "README.md").read_text()

    # Continue to 3 steps from the last checkpoint (LoRA adapters + optimizer state).
    resume = ["--max_steps", "3", "--resume_from_checkpoint", "true", "--save_strategy", "steps", "--save_steps", "1"]
    assert main(["--config", str(config), *resume]) == 0
    state = json.loads((output / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


# --------------------------------------------------------------------------------------------- accelerate (slow)
def _launch(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    result = subprocess.run(
        [accelerate, "launch", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    (tmp_path / "launch.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_two_processes_with_and_without_grad_cache_agree(backbone, saved_data, tmp_path):
    # DDP over 2 CPU processes, InfoNCE with negatives gathered across processes. With SGD the update is the
    # gradient, so GradCache and the plain path must end at the same weights.
    weights = []
    for name, chunk in (("plain", None), ("cached", 3)):
        extra = {"loss": "info_nce", "optim": "sgd", "learning_rate": 0.1, "grad_cache_chunk_size": chunk}
        run = small_run(backbone, saved_data["folder"], tmp_path / name, **extra)
        config = write_yaml(tmp_path / f"{name}.yaml", {k: v for k, v in run.items() if v is not None})
        _launch(["--multi_gpu", "--num_processes", "2", "examples/train.py", "--config", str(config)], tmp_path)
        weights.append(load_file(str(tmp_path / name / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=0, atol=1e-5, msg=key)
    initial = UniMEEmbeddingModel.from_backbone(backbone).state_dict()
    assert any(not torch.equal(initial[key], weights[0][key]) for key in weights[0])  # training did move the weights


@pytest.mark.slow
def test_deepspeed_zero2_with_lora_and_grad_cache(backbone, saved_data, tmp_path):
    pytest.importorskip("deepspeed")
    run = small_run(backbone, saved_data["folder"], tmp_path / "run", use_lora=True, grad_cache_chunk_size=3)
    config = write_yaml(tmp_path / "run.yaml", run)
    _launch(
        ["--config_file", "examples/accelerate/deepspeed_zero2.yaml", "--num_processes", "2", "examples/train.py",
         "--config", str(config)],
        tmp_path,
    )  # fmt: skip
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(tmp_path / "run"), trust_remote_code=True)
    assert model.encode(["a red square"]).shape == (1, 64)


@pytest.mark.parametrize("name", ["shapes", "qwen2vl_2b", "qwen2vl_7b", "llava_ov_7b"])
def test_example_configs_parse(name):
    # The GPU recipes ask for bf16, which TrainingArguments refuses on a CPU-only machine unless told use_cpu.
    script_args, args = parse_args(["--config", str(ROOT / "examples" / "configs" / f"{name}.yaml"), "--use_cpu", "1"])
    assert script_args.model_name_or_path and script_args.train_file
    if name != "shapes":
        assert (args.loss, args.loss_temperature, args.num_hard_negatives) == ("symmetric_kl", 0.02, 8)
        assert (args.use_lora, args.lora_r, args.lora_alpha, args.lora_dropout) == (True, 16, 64, 0.1)
        assert args.model_init_kwargs == {"dtype": "bfloat16", "attn_implementation": "sdpa"}
