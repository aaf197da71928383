"""The judge stage: aligned scores, resumable shards, two processes equal one, row-precise errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from unime_hf.mining.judge import MLLMJudge, judge_candidates


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two spin against each other on a busy 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_images(root: str | Path) -> dict[str, str]:
    from PIL import Image, ImageDraw

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        image = Image.new("RGB", (40, 30), (255, 255, 255))
        ImageDraw.Draw(image).ellipse([4, 4, 24, 24], fill=colour)
        image.save(root / f"{name}.png")
        paths[name] = f"{name}.png"  # relative to the image root
    return paths


def make_data(image_root: str | Path):
    """A corpus of 6 items (text, image, both) and 4 retrieved rows with 1-4 candidates each."""
    from datasets import Dataset

    images = make_images(image_root)
    corpus = Dataset.from_dict(
        {
            "id": ["c0", "c1", "c2", "c3", "c4", "c5"],
            "text": ["a red circle", "", "a blue circle", "a green square", "", "two circles"],
            "image": ["", images["red"], images["blue"], "", images["blue"], ""],
        }
    )
    rows = Dataset.from_dict(
        {
            "query_id": ["q0", "q1", "q2", "q3"],
            "query_text": ["find a red circle", "", "what is this?", "a green square"],
            "query_image": ["", images["red"], images["blue"], ""],
            "pos_id": ["c0", "c1", "c2", "c3"],
            "pos_text": ["a red circle", "", "a blue circle", "a green square"],
            "pos_image": ["", images["red"], images["blue"], ""],
            "candidate_ids": [["c1", "c2", "c5"], ["c4"], ["c0", "c1", "c3", "c4"], ["c5", "c0"]],
            "candidate_similarities": [[0.9, 0.8, 0.7], [0.9], [0.9, 0.8, 0.7, 0.6], [0.9, 0.8]],
        }
    )
    return rows, corpus


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    """(backbone path, image root, judge) with a tiny random Qwen2-VL, built once for this module."""
    from unime_hf.testing.tiny import build_tiny_backbone

    root = tmp_path_factory.mktemp("judge")
    path = build_tiny_backbone("qwen2_vl", root / "qwen2_vl", seed=0)
    image_root = root / "images"
    make_images(image_root)
    return str(path), str(image_root), MLLMJudge(path, batch_size=3, image_root=image_root)


def _explicit_pairs(rows, corpus, image_root):
    by_id = {item["id"]: item for item in corpus}

    def item(text, image):
        return {"text": text or None, "image": os.path.join(image_root, image) if image else None}

    pairs = []
    for row in rows:
        query = item(row["query_text"], row["query_image"])
        pairs.append((query, item(row["pos_text"], row["pos_image"])))
        pairs.extend((query, item(by_id[c]["text"], by_id[c]["image"])) for c in row["candidate_ids"])
    return pairs


def test_judge_adds_aligned_scores(tiny_judge):
    path, image_root, judge = tiny_judge
    rows, corpus = make_data(image_root)
    out = judge.judge(rows, corpus, show_progress=False)
    assert out.column_names == [*rows.column_names, "pos_score", "candidate_scores"]
    out = out[:]
    assert out["query_id"] == rows[:]["query_id"]
    for ids, scores, pos in zip(out["candidate_ids"], out["candidate_scores"], out["pos_score"]):
        assert len(scores) == len(ids)
        assert all(0.0 < value < 1.0 for value in [pos, *scores])
    flat = [value for pos, scores in zip(out["pos_score"], out["candidate_scores"]) for value in [pos, *scores]]
    expected = judge.scorer.score(_explicit_pairs(rows, corpus, image_root))
    assert flat == pytest.approx(expected, abs=1e-6)

    # The positive can come from the corpus alone (rows with only `pos_id`), and the function form agrees.
    by_id = judge_candidates(rows.remove_columns(["pos_text", "pos_image"]), corpus, judge, show_progress=False)
    assert by_id[:]["pos_score"] == pytest.approx(out["pos_score"], abs=1e-6)
    assert by_id[:]["candidate_scores"] == out["candidate_scores"]


def test_image_feature_columns_score_like_paths(tiny_judge):
    from datasets import Image as ImageFeature

    _, image_root, judge = tiny_judge
    rows, corpus = make_data(image_root)
    expected = judge.judge(rows, corpus, show_progress=False)[:]

    def as_feature(dataset, column):
        values = [os.path.join(image_root, value) if value else None for value in dataset[:][column]]
        return dataset.remove_columns(column).add_column(column, values).cast_column(column, ImageFeature())

    rows = as_feature(as_feature(rows, "query_image"), "pos_image")
    got = judge.judge(rows, as_feature(corpus, "image"), show_progress=False)[:]
    assert got["pos_score"] == pytest.approx(expected["pos_score"], abs=1e-6)
    for mine, theirs in zip(got["candidate_scores"], expected["candidate_scores"]):
        assert mine == pytest.approx(theirs, abs=1e-6)


def test_interrupted_then_resumed_equals_uninterrupted(tiny_judge, tmp_path, monkeypatch):
    _, image_root, judge = tiny_judge
    rows, corpus = make_data(image_root)
    expected = judge.judge(rows, corpus, show_progress=False)
    forward = judge.model.forward
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("simulated crash")
        return forward(*args, **kwargs)

    monkeypatch.setattr(judge.model, "forward", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        judge.judge(rows, corpus, output_dir=tmp_path, shard_size=1, show_progress=False)
    written = sorted(p.name for p in (tmp_path / "judge").glob("shard-*.safetensors"))
    assert 0 < len(written) < len(rows)

    calls.clear()
    monkeypatch.setattr(judge.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    resumed = judge.judge(rows, corpus, output_dir=tmp_path, shard_size=1, show_progress=False)
    resumed_calls = len(calls)
    resumed, expected = resumed[:], expected[:]
    assert resumed["pos_score"] == pytest.approx(expected["pos_score"], abs=1e-6)
    for got, want in zip(resumed["candidate_scores"], expected["candidate_scores"]):
        assert got == pytest.approx(want, abs=1e-6)

    calls.clear()
    again = judge.judge(rows, corpus, output_dir=tmp_path, shard_size=1, show_progress=False)
    assert calls == []  # everything is on disk
    assert again[:]["candidate_scores"] == resumed["candidate_scores"]
    assert 0 < resumed_calls

    # Another configuration in the same directory is refused (or recomputed on request).
    prompt = "Query: {query}. Candidate: {candidate}. Match?"
    other = MLLMJudge(judge.model, judge.processor, prompt=prompt, image_root=image_root)
    with pytest.raises(ValueError, match="another configuration"):
        other.judge(rows, corpus, output_dir=tmp_path, shard_size=1, show_progress=False)
    recomputed = other.judge(rows, corpus, output_dir=tmp_path, shard_size=1, show_progress=False, overwrite=True)
    assert recomputed[:]["pos_score"] != pytest.approx(resumed["pos_score"], abs=1e-6)


ACCELERATE_SCRIPT = """
import json, sys
sys.path.insert(0, {test_dir!r})
from accelerate import PartialState
from test_judge import make_data
from unime_hf.mining.judge import MLLMJudge

rows, corpus = make_data({image_root!r})
judge = MLLMJudge({model_path!r}, batch_size=3, image_root={image_root!r})
scored = []
forward = judge.model.forward
judge.model.forward = lambda *a, **k: scored.append(int(k["input_ids"].shape[0])) or forward(*a, **k)
out = judge.judge(rows, corpus, output_dir={out_dir!r}, shard_size=1, show_progress=False)
state = PartialState()
with open({log_dir!r} + f"/rank{{state.process_index}}.json", "w") as handle:
    json.dump({{"world": state.num_processes, "scored": sum(scored), "result": out.to_dict()}}, handle)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_under_accelerate_equal_one(tiny_judge, tmp_path):
    model_path, image_root, judge = tiny_judge
    rows, corpus = make_data(image_root)
    expected = judge.judge(rows, corpus, show_progress=False).to_dict()
    script = tmp_path / "run_judge.py"
    script.write_text(
        ACCELERATE_SCRIPT.format(
            test_dir=str(Path(__file__).parent),
            image_root=image_root,
            model_path=model_path,
            out_dir=str(tmp_path / "out"),
            log_dir=str(tmp_path),
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # Without a GPU, `--cpu` alone starts one process; `--multi_gpu` starts n through torchrun and the shard runner
    # joins them on CPU (gloo).
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), str(script),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [log["world"] for log in logs] == [2, 2]
    total_pairs = len(rows) + sum(len(ids) for ids in rows[:]["candidate_ids"])
    assert logs[0]["scored"] > 0 and logs[1]["scored"] > 0  # the work was split ...
    assert logs[0]["scored"] + logs[1]["scored"] == total_pairs  # ... and nothing was done twice
    for log in logs:
        got = log["result"]
        assert got["candidate_ids"] == expected["candidate_ids"]
        assert got["pos_score"] == pytest.approx(expected["pos_score"], abs=1e-6)
        for mine, theirs in zip(got["candidate_scores"], expected["candidate_scores"]):
            assert mine == pytest.approx(theirs, abs=1e-6)


def test_bad_rows_name_row_and_column(tiny_judge, tmp_path):
    _, image_root, judge = tiny_judge
    rows, corpus = make_data(image_root)

    def with_cell(dataset, column, row, value):
        values = dataset[:][column]
        values[row] = value
        return dataset.remove_columns(column).add_column(column, values)

    cases = [
        (with_cell(rows, "query_image", 1, "nowhere.png"), r"Row 1 \(query_id 'q1'\), column 'query_image': image "),
        (with_cell(rows, "candidate_ids", 2, []), r"Row 2 \(query_id 'q2'\), column 'candidate_ids': .* empty"),
        (with_cell(rows, "candidate_ids", 0, ["c1", "zzz"]), r"Row 0 .*'candidate_ids'\[1\]: 'zzz' is not a corpus"),
        (with_cell(rows, "pos_text", 3, ""), r"Row 3 \(query_id 'q3'\), columns 'pos_text'/'pos_image': the positive"),
    ]
    for dataset, message in cases:
        with pytest.raises(ValueError, match=message):
            judge.judge(dataset, corpus, show_progress=False)

    bad_corpus = with_cell(corpus, "image", 5, "gone.png")  # c5 is a candidate of rows 0 and 3
    with pytest.raises(ValueError, match=r"Row 0 \(query_id 'q0'\), column 'candidate_ids'\[2\] \(corpus id 'c5'"):
        judge.judge(rows, bad_corpus, show_progress=False)

    # A file that exists but is not an image fails when read; the error still names the row and candidate.
    (Path(image_root) / "broken.png").write_bytes(b"not a png")
    broken = with_cell(corpus, "image", 4, "broken.png")  # c4 is a candidate of rows 1 and 2
    message = r"Row [12] \(query_id 'q[12]'\), column 'candidate_ids'\[[03]\] \(corpus id 'c4'\): cannot read image"
    with pytest.raises(ValueError, match=message):
        judge.judge(rows, broken, show_progress=False)

    with pytest.raises(ValueError, match="lacks the 'candidate_ids' column"):
        judge.judge(rows.remove_columns("candidate_ids"), corpus, show_progress=False)
    with pytest.raises(ValueError, match="appears twice"):
        judge.judge(rows, with_cell(corpus, "id", 1, "c0"), show_progress=False)
    with pytest.raises(ValueError, match="needs the model's processor"):
        MLLMJudge(judge.model)
