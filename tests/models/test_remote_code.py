"""Saved checkpoints load with transformers alone (unime_hf not importable) and with sentence-transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from unime_hf import UniMEEmbeddingModel
from unime_hf.testing.tiny import TINY_KINDS

# Run in a fresh interpreter where `import unime_hf` fails, as on a machine with only transformers installed.
_LOAD_WITHOUT_UNIME = textwrap.dedent(
    """
    import sys
    sys.modules["unime_hf"] = None
    try:
        import unime_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("unime_hf is importable")
    import torch
    from transformers import AutoModel, AutoProcessor

    checkpoint, image_path, out = sys.argv[1:4]
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    items = [
        "a red square on white",
        image_path,
        {"text": "<|image_1|>\\nRepresent the given image with the following question: what colour?",
         "image": image_path},
    ]
    torch.save(model.encode(items, processor=processor, batch_size=2), out)
    """
)


@pytest.fixture(scope="module")
def checkpoints(tiny_backbones, tmp_path_factory, red_image_path):
    """kind -> (saved checkpoint folder, reference embeddings of text, image, image+text)."""
    result = {}
    for kind, backbone in tiny_backbones.items():
        model = UniMEEmbeddingModel.from_backbone(backbone)
        folder = tmp_path_factory.mktemp(f"unime-{kind}")
        model.save_pretrained(folder)
        items = [
            "a red square on white",
            red_image_path,
            {
                "text": "<|image_1|>\nRepresent the given image with the following question: what colour?",
                "image": red_image_path,
            },
        ]
        result[kind] = (folder, model.encode(items))
    return result


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_checkpoint_loads_without_unime_hf(checkpoints, red_image_path, tmp_path, kind):
    folder, expected = checkpoints[kind]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "unime"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_unime.UniMEConfig",
        "AutoModel": "modeling_unime.UniMEEmbeddingModel",
    }
    for name in ("configuration_unime.py", "modeling_unime.py", "processing_unime.py"):
        source = (folder / name).read_text()
        assert "import unime_hf" not in source and "from unime_hf" not in source, name
    out = tmp_path / "embeddings.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_UNIME, str(folder), red_image_path, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    actual = torch.load(out)
    # text, image, image+text each reproduced
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_sentence_transformers_matches_encode(checkpoints, red_image_path, kind):
    from sentence_transformers import SentenceTransformer

    folder, _ = checkpoints[kind]
    model = UniMEEmbeddingModel.from_pretrained(folder)
    st_model = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    texts = ["a red square", "a small blue circle at the top left next to a large green triangle", "red"]
    images = [Image.open(red_image_path), Image.open(red_image_path).rotate(90)]
    for items in (texts, images):
        expected = model.encode(items)
        actual = st_model.encode(items, convert_to_tensor=True, batch_size=2).cpu()
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    # A sentence-transformers prompt is the UniME instruction.
    prompted = st_model.encode(texts, prompt="Find the image.", convert_to_tensor=True).cpu()
    torch.testing.assert_close(prompted, model.encode(texts, instruction="Find the image."), atol=1e-5, rtol=0)
    assert st_model.get_sentence_embedding_dimension() == model.config.hidden_size
