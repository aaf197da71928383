"""`push_to_hub`: input validation, clean failures without a network (the folder stays byte-identical), and the
upload flow against a stubbed `HfApi`. No test contacts a real host: the unreachable endpoint is a closed port on
127.0.0.1, and successful pushes go to a stub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, constants

from unime_hf.hub.push import (
    HubUnreachableError,
    push_to_hub,
    validate_checkpoint_folder,
    validate_repo_id,
)

REPO_ID = "my-org/unime-v2-tiny"
FAKE_TOKEN = "hf_unime_hf_tests_fake_token"

EMBEDDING_CONFIG = {
    "model_type": "unime",
    "architectures": ["UniMEEmbeddingModel"],
    "auto_map": {"AutoConfig": "configuration_unime.UniMEConfig", "AutoModel": "modeling_unime.UniMEEmbeddingModel"},
    "backbone_config": {
        "_name_or_path": "Qwen/Qwen2-VL-2B-Instruct",
        "model_type": "qwen2_vl",
        "text_config": {"hidden_size": 64},
    },
}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` -> its bytes (None for folders)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(folder.rglob("*"))
    }


def closed_port() -> int:
    """A local TCP port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(EMBEDDING_CONFIG), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(os.urandom(256))
    (folder / "modeling_unime.py").write_text("# remote code\n", encoding="utf-8")
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_text("hello\n", encoding="utf-8")
    return folder


@pytest.fixture
def online(monkeypatch):
    """Offline mode off for this test (the env var and the value huggingface_hub read at import)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


class StubHub:
    """Stands in for HfApi.create_repo / upload_folder, recording calls and what the folder held when uploaded."""

    def __init__(self, fail_upload: BaseException | None = None):
        self.created: list[dict] = []
        self.uploaded: list[dict] = []
        self.fail_upload = fail_upload

    def install(self, monkeypatch) -> StubHub:
        stub = self

        def create_repo(api, repo_id, **kwargs):
            stub.created.append({"repo_id": repo_id, "endpoint": api.endpoint, **kwargs})
            return f"{api.endpoint}/{repo_id}"

        def upload_folder(api, *, folder_path, repo_id, **kwargs):
            stub.uploaded.append(
                {"repo_id": repo_id, "files": snapshot(Path(folder_path)), "folder": folder_path, **kwargs}
            )
            if stub.fail_upload is not None:
                raise stub.fail_upload

            class Commit:
                commit_url = f"{api.endpoint}/{repo_id}/commit/abc123"

            return Commit()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        return self


# --------------------------------------------------------------------------------------------- no network at all
def test_offline_push_fails_cleanly_and_leaves_the_folder_unchanged(checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(checkpoint)
    with pytest.raises(HubUnreachableError) as info:
        push_to_hub(checkpoint, REPO_ID)
    message = str(info.value)
    assert "cannot reach the Hugging Face Hub" in message
    assert "offline" in message and "nothing was uploaded" in message and "unchanged" in message
    assert snapshot(checkpoint) == before
    assert not (checkpoint / "README.md").exists()


def test_offline_push_with_an_existing_card(checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (checkpoint / "README.md").write_text("---\nlicense: mit\n---\n# My model\n", encoding="utf-8")
    before = snapshot(checkpoint)
    with pytest.raises(HubUnreachableError):
        push_to_hub(checkpoint, REPO_ID, create_card_if_missing=False)
    assert snapshot(checkpoint) == before


def test_unreachable_endpoint_fails_cleanly(checkpoint, online):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    before = snapshot(checkpoint)
    with pytest.raises(HubUnreachableError) as info:
        push_to_hub(checkpoint, REPO_ID, token=FAKE_TOKEN, endpoint=endpoint)
    message = str(info.value)
    assert "cannot reach the Hugging Face Hub" in message and endpoint in message
    assert "nothing was uploaded" in message and "unchanged" in message
    assert snapshot(checkpoint) == before


def test_unreachable_endpoint_from_the_environment_in_a_subprocess(checkpoint, tmp_path):
    """HF_HUB_OFFLINE unset, HF_ENDPOINT a closed local port: the CLI fails with the message, the folder is intact."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        HF_HOME=str(tmp_path / "hf-home"),  # no stored token is read
        HF_TOKEN=FAKE_TOKEN,
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    before = snapshot(checkpoint)
    command = [sys.executable, "-m", "unime_hf.cli", "push", "--folder", str(checkpoint), "--repo-id", REPO_ID]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "cannot reach the Hugging Face Hub" in result.stderr
    assert env["HF_ENDPOINT"] in result.stderr
    assert snapshot(checkpoint) == before


def test_failed_upload_removes_the_generated_card(checkpoint, online, monkeypatch):
    stub = StubHub(fail_upload=ConnectionError("connection reset")).install(monkeypatch)
    before = snapshot(checkpoint)
    with pytest.raises(HubUnreachableError, match="did not finish") as info:
        push_to_hub(checkpoint, REPO_ID, token=FAKE_TOKEN)
    assert "unchanged" in str(info.value)
    assert "README.md" in stub.uploaded[0]["files"]  # the card was generated after the repo existed ...
    assert snapshot(checkpoint) == before  # ... and removed when the upload failed


def test_refused_token_is_a_permission_error(checkpoint, online, monkeypatch):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    def create_repo(api, repo_id, **kwargs):
        response = httpx2.Response(401, request=httpx2.Request("POST", f"{api.endpoint}/api/repos/create"))
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    before = snapshot(checkpoint)
    with pytest.raises(PermissionError, match="hf auth login"):
        push_to_hub(checkpoint, REPO_ID, token=FAKE_TOKEN)
    assert snapshot(checkpoint) == before


# ------------------------------------------------------------------------------------------------ a stubbed Hub
def test_push_creates_the_repo_writes_the_card_and_uploads(checkpoint, online, monkeypatch):
    stub = StubHub().install(monkeypatch)
    url = push_to_hub(
        checkpoint,
        REPO_ID,
        private=True,
        token=FAKE_TOKEN,
        commit_message="first upload",
        card_kwargs={"results": {"overall": {"p@1": 0.61}}, "datasets": ["my-org/mined-pairs"]},
        ignore_patterns="extra/*",
    )
    assert url.endswith(f"{REPO_ID}/commit/abc123")
    [created] = stub.created
    assert created["repo_id"] == REPO_ID and created["private"] is True and created["exist_ok"] is True
    [uploaded] = stub.uploaded
    assert uploaded["commit_message"] == "first upload"
    assert uploaded["ignore_patterns"] == ["extra/*"]
    assert Path(uploaded["folder"]) == checkpoint.resolve()
    assert {"config.json", "model.safetensors", "README.md"} <= set(uploaded["files"])
    card = ModelCard.load(checkpoint / "README.md")  # kept after success: the folder mirrors the repo
    assert card.data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
    assert card.data.datasets == ["my-org/mined-pairs"]
    assert card.data.eval_results[0].metric_value == 0.61
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text


def test_push_keeps_an_existing_card(checkpoint, online, monkeypatch):
    stub = StubHub().install(monkeypatch)
    readme = "---\nlicense: mit\n---\n# Hand-written card\n"
    (checkpoint / "README.md").write_text(readme, encoding="utf-8")
    push_to_hub(checkpoint, REPO_ID, token=FAKE_TOKEN)
    assert stub.uploaded[0]["files"]["README.md"] == readme.encode()
    assert (checkpoint / "README.md").read_text(encoding="utf-8") == readme


def test_push_without_card(checkpoint, online, monkeypatch, caplog):
    stub = StubHub().install(monkeypatch)
    push_to_hub(checkpoint, REPO_ID, token=FAKE_TOKEN, create_card_if_missing=False)
    assert "README.md" not in stub.uploaded[0]["files"]
    assert not (checkpoint / "README.md").exists()
    assert "without a model card" in caplog.text


# ---------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("repo_id", "message"),
    [
        ("unime-v2-tiny", "namespace/name"),
        ("my-org/unime/v2", "namespace/name"),
        ("/unime", "namespace/name"),
        ("my-org/", "namespace/name"),
        ("my-org/bad name", "Invalid repo_id"),
        ("my-org/a--b", "Invalid repo_id"),
        ("my-org/x.git", "Invalid repo_id"),
    ],
)
def test_bad_repo_ids(repo_id, message, checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=message):
        validate_repo_id(repo_id)
    before = snapshot(checkpoint)
    with pytest.raises(ValueError, match=message):  # checked before the offline check
        push_to_hub(checkpoint, repo_id)
    assert snapshot(checkpoint) == before


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_to_hub(tmp_path / "nope", REPO_ID)
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="checkpoint folder"):
        push_to_hub(file, REPO_ID)


def test_folder_without_config(checkpoint):
    (checkpoint / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        validate_checkpoint_folder(checkpoint)


def test_folder_with_broken_config(checkpoint):
    (checkpoint / "config.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        validate_checkpoint_folder(checkpoint)


def test_folder_without_weights(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        validate_checkpoint_folder(checkpoint)


def test_sharded_weights_must_all_be_there(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    (checkpoint / "model-00001-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        validate_checkpoint_folder(checkpoint)
    (checkpoint / "model-00002-of-00002.safetensors").write_bytes(b"y")
    assert validate_checkpoint_folder(checkpoint) == checkpoint.resolve()


def test_existing_card_with_broken_metadata(checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (checkpoint / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid card metadata"):
        push_to_hub(checkpoint, REPO_ID)


def test_generative_checkpoint_needs_a_card_kind(checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}), encoding="utf-8")
    with pytest.raises(ValueError, match="--kind"):
        push_to_hub(checkpoint, REPO_ID)
    with pytest.raises(HubUnreachableError):  # with a kind, it gets as far as the network
        push_to_hub(checkpoint, REPO_ID, card_kwargs={"kind": "reranker"})


# ------------------------------------------------------------------------------------- a real tiny checkpoint
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from unime_hf import UniMEEmbeddingModel
    from unime_hf.testing.tiny import build_tiny_backbone

    root = tmp_path_factory.mktemp("hub-tiny")
    backbone = build_tiny_backbone("qwen2_vl", root / "backbone", seed=0)
    model = UniMEEmbeddingModel.from_backbone(backbone)
    model.save_pretrained(root / "checkpoint")
    return root / "checkpoint"


def test_saved_checkpoint_offline_push_and_card(tiny_checkpoint, monkeypatch, tmp_path):
    from unime_hf.hub.model_card import card_for_checkpoint
    from unime_hf.models.configuration_unime import UniMEConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(tiny_checkpoint)
    with pytest.raises(HubUnreachableError):
        push_to_hub(tiny_checkpoint, REPO_ID, card_kwargs={"base_model": "Qwen/Qwen2-VL-2B-Instruct"})
    assert snapshot(tiny_checkpoint) == before

    hidden_size = UniMEConfig.from_pretrained(tiny_checkpoint).hidden_size
    card = card_for_checkpoint(tiny_checkpoint, model_id=REPO_ID, base_model="Qwen/Qwen2-VL-2B-Instruct")
    assert f"**Embedding size:** {hidden_size}" in card.text
    assert ModelCard(str(card)).data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
