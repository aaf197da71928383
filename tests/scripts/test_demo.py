"""`unime-hf demo --quick`: the whole pipeline end to end on a tiny world; outputs load without unime-hf's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unime_hf.scripts.demo import (
    RERANKER_ROW,
    TRUTH_NOTICE,
    VARIANTS,
    format_table,
    judge_notice,
    main,
    make_parser,
    resolve,
)
from unime_hf.scripts.demo_steps import JUDGE_NOTICE, mean_std

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_mean_std():
    assert mean_std([0.5]) == (0.5, 0.0)
    mean, std = mean_std([0.2, 0.4, None])
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1414213, rel=1e-5)
    assert mean_std([None]) == (None, None)


def test_parser_defaults_full_and_quick():
    full = resolve(make_parser().parse_args([]))
    quick = resolve(make_parser().parse_args(["--quick", "--steps", "2"]))
    assert full.seeds == [0, 1, 2] and full.preset == "small"
    assert quick.seeds == [0] and quick.preset == "tiny" and quick.steps == 2


def test_format_table_rows():
    rows = {title: {"overall": [0.5, 0.7]} for title, _ in VARIANTS.values()}
    table = format_table(rows, [0, 1])
    assert "60.0 ± 14.1" in table and table.count("\n| ") == 3


def test_the_table_names_the_judge_that_was_used():
    parse = lambda *argv: resolve(make_parser().parse_args(list(argv)))  # noqa: E731
    assert judge_notice(parse()) == JUDGE_NOTICE
    assert judge_notice(parse("--judge", "truth")) == TRUTH_NOTICE
    assert judge_notice(parse("--infonce_only")) is None  # nothing mined, no judge to name


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["--quick", "--out", str(out)]) == 0
    return out


def test_quick_demo_outputs(quick_run: Path, capsys):
    out = quick_run
    table = (out / "table.md").read_text(encoding="utf-8")
    for title, _ in VARIANTS.values():
        assert f"| {title} |" in table
    assert f"| {RERANKER_ROW} |" in table
    assert JUDGE_NOTICE in table
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["rows"]) == {*(title for title, _ in VARIANTS.values()), RERANKER_ROW}
    for name in (*VARIANTS, "reranker"):
        summary = results["per_seed"][name]["0"]
        assert 0.0 <= summary["overall"] <= 1.0
    assert results["judge"]["notice"] == JUDGE_NOTICE
    # Two stages: an InfoNCE base per seed, then every variant fine-tunes that base for the same steps.
    assert (out / "seed0" / "base" / "model.safetensors").is_file()
    assert results["budget"]["steps"] == 4 and results["finetune_budget"]["steps"] == 2
    for name in VARIANTS:
        card = (out / "seed0" / name / "README.md").read_text(encoding="utf-8")
        assert "InfoNCE base embedder" in card
        # The cards of the variants trained on mined rows name the judge that scored them; InfoNCE's does not.
        assert (JUDGE_NOTICE in card) == (name != "infonce")
    for plot in ("judge_scores.png", "modality_gap.png"):
        assert (out / "plots" / plot).read_bytes()[:8] == PNG_MAGIC


def test_a_folder_from_other_settings_is_not_reused(quick_run: Path):
    # The same settings (and a new seed or thread count) may resume; another budget would mix in stale checkpoints.
    before = sorted(p.relative_to(quick_run) for p in quick_run.rglob("*"))
    with pytest.raises(ValueError, match=r"steps: 4 -> 5.*another --out"):
        main(["--quick", "--out", str(quick_run), "--steps", "5", "--threads", "2"])
    assert sorted(p.relative_to(quick_run) for p in quick_run.rglob("*")) == before


def test_a_folder_without_recorded_settings_is_not_reused(tmp_path: Path):
    (tmp_path / "seed0" / "infonce").mkdir(parents=True)
    with pytest.raises(ValueError, match="not recorded"):
        main(["--quick", "--out", str(tmp_path)])


def test_quick_demo_checkpoints_load(quick_run: Path):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor

    results = json.loads((quick_run / "results.json").read_text(encoding="utf-8"))
    path = results["checkpoints"]["unime_v2"]["0"]
    assert (Path(path) / "README.md").is_file()
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    texts = ["a red circle", "a blue square"]
    vectors = model.encode(texts, processor=processor)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
    st = SentenceTransformer(path, trust_remote_code=True, device="cpu")
    assert torch.allclose(torch.as_tensor(st.encode(texts)), vectors, atol=1e-5)
    reranker = results["checkpoints"]["reranker"]["0"]
    assert (Path(reranker) / "README.md").is_file()
    AutoModelForImageTextToText.from_pretrained(reranker)
