"""`unime-hf push`: options from flags and YAML, exit codes and logged messages. The Hub is never contacted: runs
are offline (HF_HUB_OFFLINE=1) or go to a stubbed `HfApi`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard, constants

from unime_hf.scripts.push import main, make_parser

REPO_ID = "my-org/unime-v2-tiny"


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    config = {
        "model_type": "unime",
        "auto_map": {"AutoModel": "modeling_unime.UniMEEmbeddingModel"},
        "backbone_config": {"model_type": "qwen2_vl", "_name_or_path": "Qwen/Qwen2-VL-2B-Instruct"},
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(os.urandom(64))
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def stub_hub(monkeypatch) -> list[dict]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls: list[dict] = []

    def create_repo(api, repo_id, **kwargs):
        calls.append({"create": repo_id, **kwargs})
        return f"https://hub.invalid/{repo_id}"

    def upload_folder(api, *, folder_path, repo_id, **kwargs):
        calls.append({"upload": repo_id, "files": _files(Path(folder_path)), **kwargs})
        return "https://hub.invalid/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_offline_push_returns_non_zero_with_the_message(checkpoint, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _files(checkpoint)
    assert main(["--folder", str(checkpoint), "--repo-id", REPO_ID, "--private"]) == 1
    assert "cannot reach the Hugging Face Hub" in caplog.text and "unchanged" in caplog.text
    assert _files(checkpoint) == before


def test_through_the_unime_hf_dispatcher(checkpoint, monkeypatch, caplog):
    from unime_hf.cli import main as cli_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(["push", "--folder", str(checkpoint), "--repo-id", REPO_ID]) == 1
    assert "cannot reach the Hugging Face Hub" in caplog.text


def test_bad_repo_id_and_missing_folder(checkpoint, tmp_path, caplog):
    assert main(["--folder", str(checkpoint), "--repo-id", "no-namespace"]) == 1
    assert "namespace/name" in caplog.text
    assert main(["--folder", str(tmp_path / "nope"), "--repo-id", REPO_ID]) == 1
    assert "does not exist" in caplog.text


def test_missing_required_options(caplog):
    assert main(["--repo-id", REPO_ID]) == 2
    assert "missing --folder" in caplog.text
    assert main([]) == 2
    assert "missing --folder and --repo-id" in caplog.text


def test_parser_and_help(capsys):
    args = make_parser().parse_args(["--folder", "x", "--repo-id", REPO_ID, "--dataset", "a/b", "--dataset", "c/d"])
    assert args.folder == "x" and args.repo_id == REPO_ID and args.datasets == ["a/b", "c/d"]
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(["--help"])
    assert info.value.code == 0
    assert "--repo-id" in capsys.readouterr().out


def test_push_with_results_training_and_config_file(checkpoint, tmp_path, stub_hub):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"overall": {"p@1": 0.625}}), encoding="utf-8")
    config = tmp_path / "push.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "folder": str(checkpoint),
                "repo-id": "my-org/from-yaml",
                "dataset": "my-org/mined-pairs",
                "training": {"loss": "symmetric_kl", "loss_temperature": 0.02, "lora_r": 16},
                "license": "mit",
            }
        ),
        encoding="utf-8",
    )
    # flags override the YAML
    argv = ["--config", str(config), "--repo-id", REPO_ID, "--results", str(results), "--private"]
    assert main([*argv, "--mmeb-dataset", "shapes-world"]) == 0
    create, upload = stub_hub
    assert create["create"] == REPO_ID and create["private"] is True
    assert upload["upload"] == REPO_ID
    card = ModelCard(upload["files"]["README.md"].decode())
    assert card.data.license == "mit"
    assert card.data.datasets == ["my-org/mined-pairs"]
    assert card.data.eval_results[0].metric_value == 0.625
    assert card.data.eval_results[0].dataset_type == "shapes-world"
    assert "| Temperature | 0.02 |" in card.text and "| LoRA r | 16 |" in card.text


def test_training_recipe_from_a_json_file_and_no_card(checkpoint, tmp_path, stub_hub):
    training = tmp_path / "training.json"
    training.write_text(json.dumps({"learning_rate": 1e-4}), encoding="utf-8")
    assert main(["--folder", str(checkpoint), "--repo-id", REPO_ID, "--training", str(training)]) == 0
    assert "| Learning rate | 0.0001 |" in stub_hub[1]["files"]["README.md"].decode()
    (checkpoint / "README.md").unlink()
    assert main(["--folder", str(checkpoint), "--repo-id", REPO_ID, "--no-card"]) == 0
    assert "README.md" not in stub_hub[3]["files"]


def test_bad_config_files(checkpoint, tmp_path, caplog):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("folder: x\nrepo_id: a/b\nbatch_size: 3\n", encoding="utf-8")
    assert main(["--config", str(unknown)]) == 2
    assert "unknown option 'batch_size'" in caplog.text
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in caplog.text
    broken = tmp_path / "broken.yaml"
    broken.write_text("folder: [\n", encoding="utf-8")
    assert main(["--config", str(broken)]) == 2
    assert "not valid YAML" in caplog.text
    bad_training = tmp_path / "training.json"
    bad_training.write_text("{", encoding="utf-8")
    assert main(["--folder", str(checkpoint), "--repo-id", REPO_ID, "--training", str(bad_training)]) == 1
    assert "not valid JSON" in caplog.text


def test_bad_results_file_fails_before_the_network(checkpoint, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"overall": {"p@1": "x", "n": {"a": 1}}}), encoding="utf-8")
    assert main(["--folder", str(checkpoint), "--repo-id", REPO_ID, "--results", str(results)]) == 1
    assert "mixes metrics and nested entries" in caplog.text
    assert "cannot reach" not in caplog.text
