from __future__ import annotations

import json

import datasets
import pytest
import yaml

from unime_hf.data.formats import read_unime_v2_mined
from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world
from unime_hf.scripts.mine import main


@pytest.fixture(scope="module")
def mine_config(tiny_backbones, tmp_path_factory):
    root = tmp_path_factory.mktemp("mine")
    world = root / "world"
    generate_shapes_world(world, ShapesWorldConfig.preset("tiny"))
    config = {
        "data": {"shapes_dir": str(world), "max_rows": 12},
        "output_dir": str(root / "out"),
        "retrieve": {"model": tiny_backbones["qwen2_vl"], "top_k": 12, "batch_size": 16},
        "judge": {"model": tiny_backbones["qwen2_vl"], "batch_size": 16},
        "sample": {"num_negatives": 4, "interval": 2},
        "export": {"unime_v2_json": str(root / "out" / "mined.json")},
    }
    path = root / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, root / "out", world


def test_mine_all_end_to_end(mine_config, capsys):
    path, out, world = mine_config
    assert main(["all", "--config", str(path)]) == 0
    assert "Hard-negative sampling over 12 queries" in capsys.readouterr().out
    mined = datasets.load_from_disk(str(out / "mined"))
    train, corpus = mined["train"], mined["corpus"]
    assert len(train) == 12
    corpus_ids = set(corpus["id"])
    for row in train:
        assert len(row["hard_negative_ids"]) == len(row["hard_negative_scores"]) == 4
        assert row["pos_id"] not in row["hard_negative_ids"]
        assert set(row["hard_negative_ids"]) <= corpus_ids
        assert 0.0 < row["pos_score"] < 1.0
        assert len(row["candidate_ids"]) == len(row["candidate_scores"]) == 12
    stats = json.loads((out / "stats.json").read_text())
    assert stats["queries"] == 12
    # The released JSON layout round-trips through the reader.
    released = read_unime_v2_mined(out / "mined.json", image_root=world)
    assert released["train"]["hard_negative_scores"] == train["hard_negative_scores"]
    assert released["train"]["pos_score"] == pytest.approx(train["pos_score"])


def test_stages_run_separately_and_resume(mine_config):
    path, out, _ = mine_config
    before = datasets.load_from_disk(str(out / "mined"))["train"]["hard_negative_ids"]
    for stage in ("retrieve", "judge", "sample"):
        assert main([stage, "--config", str(path)]) == 0
    assert datasets.load_from_disk(str(out / "mined"))["train"]["hard_negative_ids"] == before


def test_bad_config_is_reported(tmp_path, caplog):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"retrieve": {"topk": 5}}))
    assert main(["retrieve", "--config", str(path)]) == 2
    assert "unknown key(s) ['topk'] in section 'retrieve'" in caplog.text
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "o")}))
    assert main(["sample", "--config", str(missing)]) == 2
    assert "run `unime-hf mine judge` first" in caplog.text
