"""The layout of an evaluation run directory and its `results.json`.

```
<output_dir>/
  results.json                      metrics + metadata (below)
  predictions/mmeb.jsonl            one record per MMEB query row
  predictions/retrieval_<name>.jsonl, predictions/compositional_<name>.jsonl
  plots/*.png
```

`results.json`:

```
{
  "format_version": 1,
  "unime_hf_version": "...", "created_at": "2026-01-01T00:00:00Z",
  "model": {"name_or_path": "...", "class": "UniMEEmbeddingModel"},
  "config": {...},                  the resolved run configuration
  "mmeb": {"metric": "precision@1", "ties": "strict", "datasets": {name: {"precision@1", "meta_task", "split",
           "num_queries", "num_candidates", "encoded_queries", "encoded_candidates", "path"}}, "meta_tasks": {...},
           "ind", "ood", "overall", "num_datasets", "num_queries", "encoded_items", "image_root",
           with a reranker also "embedding_only": {...the aggregates before reranking}, "rerank_top_k",
           "reranker": {"model", "mode", "stats"}},
  "retrieval": {name: {"image_to_text": {"recall@1", ...}, "text_to_image": {...}, "num_images", "num_captions",
                "encoded_items", "path", "modality_gap": {"centroid_distance", "mean_cos_...": ...}}},
  "compositional": {name: {"subsets": {...}, "groups": {...}, "overall", "num_rows", "encoded_items", "path"}},
  "predictions": {"mmeb": "predictions/mmeb.jsonl", ...},
  "plots": ["plots/modality_gap_<name>.png", ...]
}
```

Scores are fractions in [0, 1]; the summary table ([`format_summary`]) shows percentages, as papers do.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
RESULTS_FILE = "results.json"
PREDICTIONS_DIR = "predictions"
PLOTS_DIR = "plots"


def _model_name(model: Any) -> str:
    for candidate in (
        getattr(model, "name_or_path", None),
        getattr(getattr(model, "config", None), "_name_or_path", None),
        getattr(getattr(model, "model_card_data", None), "base_model", None),
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return ""


def new_results(model: Any = None, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An empty results dict with its metadata filled in."""
    from unime_hf import __version__

    return {
        "format_version": FORMAT_VERSION,
        "unime_hf_version": __version__,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name_or_path": _model_name(model), "class": type(model).__name__ if model is not None else None},
        "config": dict(config or {}),
        "predictions": {},
        "plots": [],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(results: Mapping[str, Any], output_dir: str | os.PathLike) -> Path:
    """Write `results.json` into `output_dir` (atomically: a reader never sees half a file)."""
    path = Path(output_dir) / RESULTS_FILE
    _atomic_write(path, json.dumps(results, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a `results.json` (or the one inside a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def write_predictions(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write per-query predictions as JSON Lines."""
    path = Path(path)
    lines = (json.dumps(record, ensure_ascii=False, default=_json_default) + "\n" for record in records)
    _atomic_write(path, "".join(lines))
    return path


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_summary(results: Mapping[str, Any]) -> str:
    """A plain-text table of the headline numbers (percentages) of a results dict."""
    lines: list[str] = []
    mmeb = results.get("mmeb")
    if mmeb:
        width = max([len(n) for n in mmeb["datasets"]] + [12])
        lines.append(f"MMEB ({mmeb['metric']}, {mmeb['num_queries']} queries)")
        for name, scores in mmeb["datasets"].items():
            extra = f"  [{scores.get('meta_task') or '-'}, {scores.get('split') or '-'}]"
            lines.append(f"  {name:<{width}} {_percent(scores[mmeb['metric']]):>6}{extra}")
        for task, value in mmeb["meta_tasks"].items():
            lines.append(f"  {'<' + task + '>':<{width}} {_percent(value):>6}")
        for key in ("ind", "ood", "overall"):
            lines.append(f"  {key.upper():<{width}} {_percent(mmeb[key]):>6}")
        if "embedding_only" in mmeb:
            lines.append(f"  {'OVERALL (no rerank)':<{width}} {_percent(mmeb['embedding_only']['overall']):>6}")
    for name, scores in (results.get("retrieval") or {}).items():
        cells = [
            f"{short} R@{key.split('@')[1]} {_percent(value)}"
            for direction, short in (("image_to_text", "i2t"), ("text_to_image", "t2i"))
            for key, value in scores[direction].items()
        ]
        lines.append(f"Retrieval {name} ({scores['num_images']} images, {scores['num_captions']} captions)")
        lines.append("  " + "  ".join(cells))
    for name, scores in (results.get("compositional") or {}).items():
        lines.append(f"Compositional {name} ({scores['num_rows']['overall']} rows)")
        lines.append("  " + "  ".join(f"{k} {_percent(v)}" for k, v in scores["subsets"].items()))
        groups = "  ".join(f"{k} {_percent(v)}" for k, v in scores["groups"].items())
        lines.append(f"  {groups}  overall {_percent(scores['overall'])}")
    return "\n".join(lines)
