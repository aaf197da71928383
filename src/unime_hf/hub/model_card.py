# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Model cards for UniME checkpoints: Hub metadata (`ModelCardData`), `model-index` results and a Markdown body
rendered from the Jinja templates in `unime_hf/hub/templates/` (`embedding.md`, `reranker.md`, `reasoner.md`).

Results (a dict, or the path of a JSON file) come in any of three shapes:

1. The `results.json` of an `unime_hf.evaluation` run (recognised by its `format_version` / `mmeb.datasets` /
   `retrieval.*.text_to_image` / `compositional.*.subsets` keys): its MMEB aggregates, meta-tasks and datasets, the
   retrieval recalls (as `t2i_recall@k` / `i2t_recall@k`) and the compositional accuracies are kept; its
   configuration, counts and paths are not.
2. A structured mapping, where every innermost dict of numbers (or strings such as `"63.6 ± 0.2"`) is one row of
   metrics and the keys above it say where it belongs:

   ```python
   >>> structured = {
   ...     "overall": {"p@1": 63.6}, "ind": {"p@1": 68.1}, "ood": {"p@1": 57.9},
   ...     "meta_task": {"classification": {"p@1": 62.1}, "vqa": {"p@1": 56.3}},
   ...     "per_dataset": {"ImageNet-1K": {"p@1": 71.2}, "N24News": {"p@1": 49.0}},
   ...     "retrieval": {"flickr30k": {"t2i_r@1": 79.8, "i2t_r@1": 93.4}},
   ...     "compositional": {"replace_obj": {"accuracy": 91.5}},
   ... }

   ```

   `overall`, `ind` and `ood` at the top level and everything under `mmeb`, `per_dataset` or `meta_task(s)` are
   MMEB results (dataset `TIGER-Lab/MMEB-eval`); `retrieval` and `compositional` hold image-text retrieval and
   SugarCrepe-style results; any other key is a section of its own, named after the key.
3. A flat mapping `{dataset: {metric: value}}`, e.g. `{"ImageNet-1K": {"p@1": 71.2}, "flickr30k": {"t2i_r@1": 79.8}}`.

Scalars at the top level (`"model": "..."`) are metadata and skipped; `None` values (not computed) are skipped. Values
go into `model-index` exactly as given (no rounding, no rescaling: fractions stay fractions); the tables in the card
body show 4 significant digits.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

logger = logging.getLogger(__name__)

CARD_KINDS = ("embedding", "reranker", "reasoner")
PIPELINE_TAGS = {
    # The Hub's generic "inputs -> vectors" task; "sentence-similarity" is text-only and "image-feature-extraction"
    # image-only, while these models embed text, images and both.
    "embedding": "feature-extraction",
    "reranker": "image-text-to-text",
    "reasoner": "image-text-to-text",
}
DEFAULT_TAGS = {
    "embedding": [
        "unime-hf",
        "unime-v2",
        "sentence-transformers",
        "multimodal-embedding",
        "feature-extraction",
        "image-text-retrieval",
        "arxiv:2510.13515",
    ],
    "reranker": ["unime-hf", "unime-v2", "reranker", "multimodal-reranking", "arxiv:2510.13515"],
    "reasoner": ["unime-hf", "embed-rl", "reasoning", "grpo", "multimodal-embedding", "arxiv:2602.13823"],
}
README_NAME = "README.md"
# Names ending like data or weight files are local paths, not Hub ids.
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".arrow", ".txt", ".yaml", ".yml", ".safetensors")

MMEB_DATASET = "TIGER-Lab/MMEB-eval"
_MMEB_AGGREGATES = {"overall": "Overall", "ind": "IND", "ood": "OOD"}
# section key -> (title, is MMEB)
_SECTIONS = {
    "mmeb": ("MMEB", True),
    "per_dataset": ("MMEB per dataset", True),
    "datasets": ("MMEB per dataset", True),
    "meta_task": ("MMEB per meta-task", True),
    "meta_tasks": ("MMEB per meta-task", True),
    "per_meta_task": ("MMEB per meta-task", True),
    "embedding_only": ("MMEB before reranking", True),
    "retrieval": ("Image-text retrieval", False),
    "compositional": ("Compositional understanding", False),
}

# training key -> label in the card, in display order; values of other keys are shown after these, as given.
TRAINING_FIELDS = {
    "loss": "Loss",
    "loss_temperature": "Temperature",
    "temperature": "Temperature",
    "num_hard_negatives": "Hard negatives per query",
    "learning_rate": "Learning rate",
    "lr_scheduler_type": "LR schedule",
    "warmup_steps": "Warmup steps",
    "max_steps": "Steps",
    "num_train_epochs": "Epochs",
    "queries_per_step": "Queries per step",
    "per_device_train_batch_size": "Batch size per device",
    "gradient_accumulation_steps": "Gradient accumulation steps",
    "grad_cache_chunk_size": "GradCache chunk size",
    "use_lora": "LoRA",
    "lora_r": "LoRA r",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "lora_target_modules": "LoRA target modules",
    "use_dora": "DoRA",
    "bf16": "bf16",
    "image_size": "Image size",
    "max_length": "Max sequence length",
    "dataset_name": "Training data",
    "judge": "Judge",
    "seed": "Seed",
}
_LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora")
LOSS_DESCRIPTIONS = {
    "symmetric_kl": "symmetric KL between the model's and the judge's softmax distributions over the positive and "
    "its hard negatives (UniME-V2)",
    "js": "Jensen-Shannon divergence between the model's and the judge's softmax distributions over the positive "
    "and its hard negatives",
    "info_nce": "InfoNCE with in-batch negatives (VLM2Vec baseline)",
    "hard_negative_ce": "cross-entropy over the positive and its hard negatives (hard labels)",
}


# ------------------------------------------------------------------------------------------------------ templates
def template_text(kind: str) -> str:
    """The Jinja template of a card kind (`"embedding"`, `"reranker"` or `"reasoner"`), read from the package."""
    _check_kind(kind)
    return resources.files("unime_hf.hub.templates").joinpath(f"{kind}.md").read_text(encoding="utf-8")


def _check_kind(kind: str) -> None:
    if kind not in CARD_KINDS:
        raise ValueError(f"Unknown model card kind {kind!r}; use one of {CARD_KINDS}.")


# -------------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ResultRow:
    """One row of results: the metrics of one dataset (or aggregate) within one section.

    Args:
        section (`tuple[str, ...]`):
            Keys above the dataset in the results mapping (empty for a flat mapping or a top-level aggregate).
        dataset (`str`):
            The key holding the metrics.
        metrics (`dict[str, float | int | str]`):
            Metric name -> value, as given (numbers converted to Python numbers).
    """

    section: tuple[str, ...]
    dataset: str
    metrics: dict[str, float | int | str]

    def _split(self) -> tuple[str | None, tuple[str, ...]]:
        """The deepest known section key above the row, and the keys below it."""
        for i in range(len(self.section) - 1, -1, -1):
            if self.section[i].lower() in _SECTIONS:
                return self.section[i].lower(), self.section[i + 1 :]
        return None, self.section

    @property
    def is_mmeb(self) -> bool:
        known, rest = self._split()
        if known is not None:
            return _SECTIONS[known][1]
        return not rest and self.dataset.lower() in _MMEB_AGGREGATES

    @property
    def title(self) -> str:
        """Title of the row's section (the table it goes into)."""
        known, rest = self._split()
        if known is not None:
            return _SECTIONS[known][0] + (f": {'/'.join(rest)}" if rest else "")
        return "/".join(rest) or ("MMEB" if self.is_mmeb else "Results")

    @property
    def display_name(self) -> str:
        return _MMEB_AGGREGATES.get(self.dataset.lower(), self.dataset)

    def eval_dataset(self, mmeb_dataset: str = MMEB_DATASET) -> tuple[str, str, str | None]:
        """`(dataset_type, dataset_name, dataset_config)` of the row in `model-index`."""
        known, rest = self._split()
        name = "MMEB" if mmeb_dataset == MMEB_DATASET else mmeb_dataset
        if known == "embedding_only":
            return mmeb_dataset, f"{name} ({self.display_name}, embedding only)", f"embedding_only/{self.dataset}"
        if self.is_mmeb:
            top_level = not rest and known in (None, "mmeb")
            config = None if top_level and self.dataset.lower() == "overall" else self.dataset
            return mmeb_dataset, name if config is None else f"{name} ({self.display_name})", config
        if rest:
            return rest[0], f"{rest[0]} ({self.display_name})", "/".join([*rest[1:], self.dataset])
        return self.dataset, self.display_name, None


def load_results(results: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Read results from a JSON file (or the `results.json` of an evaluation run folder), or copy a mapping."""
    if isinstance(results, Mapping):
        return dict(results)
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"Results file {str(path)!r} does not exist; pass the JSON written by the evaluation.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"Results file {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"Results file {str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def _is_evaluation_run(results: Mapping[str, Any]) -> bool:
    """Whether `results` is the `results.json` of `unime_hf.evaluation` (rather than a plain mapping of metrics)."""
    mmeb = results.get("mmeb")
    if "format_version" in results or (isinstance(mmeb, Mapping) and "datasets" in mmeb and "metric" in mmeb):
        return True
    runs = [*(results.get("retrieval") or {}).values(), *(results.get("compositional") or {}).values()]
    return any(isinstance(run, Mapping) and ({"image_to_text", "text_to_image", "subsets"} & set(run)) for run in runs)


def _mmeb_block(mmeb: Mapping[str, Any], metric: str, *, datasets: bool = True) -> dict[str, Any]:
    aggregates = [key for key in ("overall", "ind", "ood") if mmeb.get(key) is not None]
    block: dict[str, Any] = {key: {metric: mmeb[key]} for key in aggregates}
    if datasets:
        meta = {task: {metric: v} for task, v in (mmeb.get("meta_tasks") or {}).items() if v is not None}
        per_dataset = {
            name: {metric: scores[metric]}
            for name, scores in (mmeb.get("datasets") or {}).items()
            if isinstance(scores, Mapping) and scores.get(metric) is not None
        }
        block.update({key: value for key, value in (("meta_tasks", meta), ("per_dataset", per_dataset)) if value})
    if isinstance(mmeb.get("embedding_only"), Mapping):
        block["embedding_only"] = _mmeb_block(mmeb["embedding_only"], metric, datasets=False)
    return block


def _from_evaluation_run(results: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the metrics of an evaluation run's `results.json` (MMEB, retrieval, compositional) in the nested
    `{section: {dataset: {metric: value}}}` shape; configuration, counts and paths are left out."""
    out: dict[str, Any] = {}
    mmeb = results.get("mmeb")
    if isinstance(mmeb, Mapping):
        out["mmeb"] = _mmeb_block(mmeb, str(mmeb.get("metric", "precision@1")))
    retrieval = {}
    for name, run in (results.get("retrieval") or {}).items():
        metrics = {
            f"{short}_{key}": value
            for direction, short in (("text_to_image", "t2i"), ("image_to_text", "i2t"))
            for key, value in (run.get(direction) or {}).items()
        }
        if metrics:
            retrieval[name] = metrics
    compositional = {}
    for name, run in (results.get("compositional") or {}).items():
        scores = {**(run.get("subsets") or {}), **(run.get("groups") or {}), "overall": run.get("overall")}
        block = {key: {"accuracy": value} for key, value in scores.items() if value is not None}
        if block:
            compositional[name] = block
    out.update({key: value for key, value in (("retrieval", retrieval), ("compositional", compositional)) if value})
    return out


def flatten_results(results: Mapping[str, Any] | str | os.PathLike) -> list[ResultRow]:
    """Turn results (an evaluation run's `results.json`, or a structured or flat mapping of metric dicts) into rows,
    in the mapping's order.

    Example:

    ```python
    >>> rows = flatten_results({"overall": {"p@1": 63.6}, "retrieval": {"flickr30k": {"t2i_r@1": 79.8}}})
    >>> [(row.section, row.dataset, row.metrics) for row in rows]
    [((), 'overall', {'p@1': 63.6}), (('retrieval',), 'flickr30k', {'t2i_r@1': 79.8})]

    ```
    """
    results = load_results(results)
    if _is_evaluation_run(results):
        limit = (
            (results.get("config") or {}).get("max_queries") if isinstance(results.get("config"), Mapping) else None
        )
        if limit:
            logger.warning(
                "These results come from a smoke run (max_queries=%s rows per dataset); they are not full-benchmark "
                "scores.",
                limit,
            )
        results = _from_evaluation_run(results)
    rows: list[ResultRow] = []
    for key, value in results.items():
        if not isinstance(value, Mapping):
            logger.debug("Skipping results metadata %r (not a mapping of metrics).", key)
            continue
        _collect(value, (), str(key), rows)
    return rows


def _collect(node: Mapping[str, Any], section: tuple[str, ...], name: str, rows: list[ResultRow]) -> None:
    path = "/".join((*section, name))
    node = {key: value for key, value in node.items() if value is not None}  # None: not computed
    if not node:
        raise ValueError(f"Results entry {path!r} is empty; give it metrics such as {{'p@1': 61.6}} or drop it.")
    nested = [isinstance(v, Mapping) for v in node.values()]
    if all(nested):
        for key, child in node.items():
            _collect(child, (*section, name), str(key), rows)
        return
    if any(nested):
        raise ValueError(
            f"Results entry {path!r} mixes metrics and nested entries; a mapping holds either metric values "
            "({'p@1': 61.6}) or named sub-entries ({'ImageNet-1K': {'p@1': 61.6}})."
        )
    rows.append(ResultRow(section, name, {str(k): _metric_value(v, f"{path}/{k}") for k, v in node.items()}))


def _metric_value(value: Any, path: str) -> float | int | str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy / torch scalars
            return _metric_value(value.item(), path)
        raise ValueError(f"Metric {path!r} must be a number or a string, got {type(value).__name__}: {value!r}.")
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Metric {path!r} is {value}; only finite values can go into a model card.")
    return value


def results_to_eval_results(
    results: Mapping[str, Any] | str | os.PathLike | Sequence[ResultRow],
    *,
    task_type: str,
    mmeb_dataset: str = MMEB_DATASET,
) -> list[EvalResult]:
    """Build `huggingface_hub.EvalResult`s (the card's `model-index`) from results, one per (row, metric).

    The metric type is the metric's key exactly as given (`"p@1"`, `"t2i_recall@1"`), and its value is unchanged.
    MMEB rows use the dataset id `TIGER-Lab/MMEB-eval` with the dataset (or aggregate) as its config.

    Args:
        results (`dict`, `str` or `list[ResultRow]`):
            Results (see [`flatten_results`]), a path to their JSON file, or rows from [`flatten_results`].
        task_type (`str`):
            The `model-index` task type, usually the card's pipeline tag.
        mmeb_dataset (`str`, *optional*, defaults to `"TIGER-Lab/MMEB-eval"`):
            The dataset that MMEB-protocol rows were computed on (e.g. `"shapes-world"` for the synthetic sets).
    """
    if isinstance(results, Sequence) and not isinstance(results, str):
        rows = list(results)
    else:
        rows = flatten_results(results)
    evals: list[EvalResult] = []
    seen: dict[tuple[str, str | None], tuple[str, ...]] = {}
    for row in rows:
        dataset_type, dataset_name, config = row.eval_dataset(mmeb_dataset)
        # `model-index` merges entries that share (task, dataset, config): keep rows of different sections apart.
        if seen.setdefault((dataset_type, config), row.section) != row.section:
            config = "/".join((*row.section, row.dataset))
        for metric, value in row.metrics.items():
            evals.append(
                EvalResult(
                    task_type=task_type,
                    task_name=_section_title(row, mmeb_dataset),
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_config=config,
                    metric_type=metric,
                    metric_name=metric_label(metric),
                    metric_value=value,
                )
            )
    return evals


def metric_label(metric: str) -> str:
    """A readable name for a metric key: `p@1` -> `P@1`, `t2i_recall@5` -> `T2I Recall@5`, `accuracy` -> `Accuracy`."""
    match = re.fullmatch(r"(?:(t2i|i2t)_)?([a-z]+)@(\d+)", metric.lower())
    if match:
        direction, name, k = match.groups()
        label = f"{name.upper() if len(name) <= 2 else name.capitalize()}@{k}"
        return f"{direction.upper()} {label}" if direction else label
    return metric.replace("_", " ").capitalize() if metric.islower() else metric


def _section_title(row: ResultRow, mmeb_dataset: str) -> str:
    title = row.title
    if row.is_mmeb and mmeb_dataset != MMEB_DATASET and title.startswith("MMEB"):
        return f"{mmeb_dataset} (MMEB protocol){title[len('MMEB') :]}"
    return title


def results_tables(rows: Sequence[ResultRow], mmeb_dataset: str = MMEB_DATASET) -> list[dict[str, str]]:
    """Markdown tables of results, one per section: `[{"title": ..., "table": ...}]`."""
    sections: dict[str, list[ResultRow]] = {}
    for row in rows:
        sections.setdefault(_section_title(row, mmeb_dataset), []).append(row)
    tables = []
    for title, section_rows in sections.items():
        metrics = list(dict.fromkeys(m for row in section_rows for m in row.metrics))
        lines = [
            "| " + " | ".join(["", *map(metric_label, metrics)]) + " |",
            "|" + "|".join(["---", *(["---:"] * len(metrics))]) + "|",
        ]
        for row in section_rows:
            cells = [_format_value(row.metrics[m]) if m in row.metrics else "" for m in metrics]
            lines.append("| " + " | ".join([row.display_name, *cells]) + " |")
        tables.append({"title": title, "table": "\n".join(lines)})
    return tables


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ------------------------------------------------------------------------------------------------------- training
def training_table(training: Mapping[str, Any] | Any | None) -> str:
    """A two-column Markdown table of a training recipe, or `""` without one.

    Args:
        training (`dict` or `TrainingArguments`, *optional*):
            Settings keyed as in [`EmbeddingDistillConfig`] (`loss`, `loss_temperature`, `num_hard_negatives`,
            `learning_rate`, `max_steps`, `use_lora`, `lora_r`, `lora_alpha`, ...); free keys such as
            `queries_per_step`, `judge` or `hardware` are shown as given. From a `TrainingArguments` object (anything
            with `to_dict()`) only the known keys are shown.
    """
    if training is None:
        return ""
    if not isinstance(training, Mapping):
        if not hasattr(training, "to_dict"):
            raise TypeError(f"`training` must be a dict or a TrainingArguments, got {type(training).__name__}.")
        training = {k: v for k, v in training.to_dict().items() if k in TRAINING_FIELDS}
    settings = {k: v for k, v in training.items() if v is not None}
    if settings.get("use_lora") is False:
        settings = {k: v for k, v in settings.items() if k not in _LORA_KEYS}
    if isinstance(settings.get("max_steps"), int) and settings["max_steps"] <= 0:
        del settings["max_steps"]
    keys = [k for k in TRAINING_FIELDS if k in settings] + [k for k in settings if k not in TRAINING_FIELDS]
    lines = ["| Setting | Value |", "|---|---|"]
    for key in keys:
        value = settings[key]
        if key == "loss" and value in LOSS_DESCRIPTIONS:
            value = f"`{value}`: {LOSS_DESCRIPTIONS[value]}"
        lines.append(f"| {TRAINING_FIELDS.get(key, key)} | {_format_setting(value)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _format_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


# -------------------------------------------------------------------------------------------------------- cards
def _looks_like_repo_id(name: str) -> bool:
    """Whether a name can be a Hub id (`name` or `namespace/name`) rather than a local path."""
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return False
    if name.lower().endswith(_FILE_SUFFIXES):
        return False
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None


def _link(name: str, on_hub: bool, prefix: str) -> str:
    return f"[{name}](https://huggingface.co/{prefix}{name})" if on_hub else f"`{name}`"


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise TypeError(f"`{what}` must be a string or a list of strings, got {value!r}.")
    return list(value)


def render_card(
    kind: str,
    *,
    base_model: str | None,
    datasets: str | Sequence[str] | None = None,
    training: Mapping[str, Any] | Any | None = None,
    results: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str = "apache-2.0",
    model_id: str | None = None,
    model_name: str | None = None,
    pipeline_tag: str | None = None,
    tags: Sequence[str] | None = None,
    language: str | list[str] | None = None,
    mmeb_dataset: str = MMEB_DATASET,
    template: str | os.PathLike | None = None,
    **template_kwargs: Any,
) -> ModelCard:
    """Render a model card of any kind; [`render_embedding_card`], [`render_reranker_card`] and
    [`render_reasoner_card`] are this with the kind filled in (see them for the arguments).

    Args:
        kind (`str`):
            `"embedding"`, `"reranker"` or `"reasoner"`: picks the template, the pipeline tag and the default tags.
        mmeb_dataset (`str`, *optional*, defaults to `"TIGER-Lab/MMEB-eval"`):
            The dataset MMEB-protocol results were computed on; set it when they come from other sets (e.g. the
            shapes world), so the card does not claim MMEB scores.
        template (`str` or `os.PathLike`, *optional*):
            A Jinja template file to use instead of the packaged one.
        template_kwargs:
            Extra variables for the template (`description`, `embedding_dim`, `embedding_model`, ...).
    """
    _check_kind(kind)
    datasets = _as_list(datasets, "datasets")
    base_models = _as_list(base_model, "base_model")
    model_name = model_name or (model_id.split("/")[-1] if model_id else f"unime-{kind}")
    pipeline_tag = pipeline_tag or PIPELINE_TAGS[kind]
    rows = flatten_results(results) if results is not None else []
    hub_base = [b for b in base_models if _looks_like_repo_id(b)]
    hub_datasets = [d for d in datasets if _looks_like_repo_id(d)]
    card_data = ModelCardData(
        base_model=(hub_base[0] if len(hub_base) == 1 else hub_base) or None,
        datasets=hub_datasets or None,
        language=language,
        library_name="transformers",
        license=license,
        pipeline_tag=pipeline_tag,
        tags=list(dict.fromkeys([*DEFAULT_TAGS[kind], *(tags or [])])),
        model_name=model_name if rows else None,
        eval_results=results_to_eval_results(rows, task_type=pipeline_tag, mmeb_dataset=mmeb_dataset)
        if rows
        else None,
    )
    variables = {
        "model_name": model_name,
        "repo_id": model_id or "path/to/checkpoint",
        "base_model_text": ", ".join(_link(b, b in hub_base, "") for b in base_models),
        "datasets_text": ", ".join(_link(d, d in hub_datasets, "datasets/") for d in datasets),
        "training_table": training_table(training),
        "result_sections": results_tables(rows, mmeb_dataset),
        **template_kwargs,
    }
    if template is not None:
        return ModelCard.from_template(card_data, template_path=str(template), **variables)
    return ModelCard.from_template(card_data, template_str=template_text(kind), **variables)


def render_embedding_card(
    *,
    base_model: str | None,
    datasets: str | Sequence[str] | None = None,
    training: Mapping[str, Any] | Any | None = None,
    results: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str = "apache-2.0",
    model_id: str | None = None,
    embedding_dim: int | None = None,
    **kwargs: Any,
) -> ModelCard:
    """Render the model card of a UniME embedding checkpoint.

    Args:
        base_model (`str` or `list[str]`):
            The backbone the model was trained from (a Hub id goes into the metadata; a local path only into the
            text). `None` when unknown.
        datasets (`str` or `list[str]`, *optional*):
            Training data; Hub ids go into the metadata, all into the text.
        training (`dict` or `TrainingArguments`, *optional*):
            The training recipe, see [`training_table`].
        results (`dict` or path, *optional*):
            Evaluation results (or their JSON file), see the module docstring; they become the card's `model-index`
            and tables.
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            A Hub license id.
        model_id (`str`, *optional*):
            The Hub repo id, used in the usage snippets and (its name part) as the `model-index` name.
        embedding_dim (`int`, *optional*):
            Size of the embeddings, shown in the card.
        kwargs:
            `model_name`, `pipeline_tag` (defaults to `"feature-extraction"`), `tags` (added to the defaults),
            `language`, `mmeb_dataset`, `template`, `description`, passed to [`render_card`].

    Returns:
        `huggingface_hub.ModelCard`

    Example:

    ```python
    >>> card = render_embedding_card(
    ...     base_model="Qwen/Qwen2-VL-2B-Instruct",
    ...     datasets="TianchengGu/UniME-V2-Training-Datasets",
    ...     training={"loss": "symmetric_kl", "loss_temperature": 0.02, "num_hard_negatives": 8, "use_lora": True,
    ...               "lora_r": 16, "lora_alpha": 64, "learning_rate": 1e-4, "max_steps": 2000},
    ...     results={"overall": {"p@1": 63.6}},
    ...     model_id="my-org/unime-v2-qwen2vl-2b",
    ... )
    >>> card.data.pipeline_tag
    'feature-extraction'
    >>> write_model_card(card, "unime-v2-qwen2vl-2b")  # doctest: +SKIP

    ```
    """
    return render_card(
        "embedding",
        base_model=base_model,
        datasets=datasets,
        training=training,
        results=results,
        license=license,
        model_id=model_id,
        embedding_dim=embedding_dim,
        **kwargs,
    )


def render_reranker_card(
    *,
    base_model: str | None,
    datasets: str | Sequence[str] | None = None,
    training: Mapping[str, Any] | Any | None = None,
    results: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str = "apache-2.0",
    model_id: str | None = None,
    embedding_model: str | None = None,
    **kwargs: Any,
) -> ModelCard:
    """Render the model card of a UniME-V2 reranker (a generative VLM answering `Yes`/`No` and candidate indices).

    Args:
        embedding_model (`str`, *optional*):
            The embedding model whose top candidates the reranker reorders, named in the card.
        base_model, datasets, training, results, license, model_id, kwargs:
            As for [`render_embedding_card`]; the pipeline tag defaults to `"image-text-to-text"`.

    Example:

    ```python
    >>> card = render_reranker_card(base_model="Qwen/Qwen2.5-VL-7B-Instruct", model_id="my-org/unime-v2-reranker",
    ...                             training={"lora_r": 128, "lora_alpha": 256, "learning_rate": 2e-5})
    >>> card.data.pipeline_tag
    'image-text-to-text'

    ```
    """
    return render_card(
        "reranker",
        base_model=base_model,
        datasets=datasets,
        training=training,
        results=results,
        license=license,
        model_id=model_id,
        embedding_model=embedding_model,
        **kwargs,
    )


def render_reasoner_card(
    *,
    base_model: str | None,
    datasets: str | Sequence[str] | None = None,
    training: Mapping[str, Any] | Any | None = None,
    results: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str = "apache-2.0",
    model_id: str | None = None,
    embedding_model: str | None = None,
    **kwargs: Any,
) -> ModelCard:
    """Render the model card of an Embed-RL reasoner (writes traceability chains of thought for an embedder).

    Args:
        embedding_model (`str`, *optional*):
            The (frozen) embedder that guided training and that embeds the reasoner's output.
        base_model, datasets, training, results, license, model_id, kwargs:
            As for [`render_embedding_card`]; the pipeline tag defaults to `"image-text-to-text"`.

    Example:

    ```python
    >>> card = render_reasoner_card(base_model="Qwen/Qwen2-VL-2B-Instruct", model_id="my-org/embed-rl-reasoner")
    >>> "embed-rl" in card.data.tags
    True

    ```
    """
    return render_card(
        "reasoner",
        base_model=base_model,
        datasets=datasets,
        training=training,
        results=results,
        license=license,
        model_id=model_id,
        embedding_model=embedding_model,
        **kwargs,
    )


def write_model_card(card: ModelCard, folder: str | os.PathLike) -> Path:
    """Save a card as `folder/README.md` (replacing one that is there) and return its path.

    Example:

    ```python
    >>> path = write_model_card(card, "unime-v2-qwen2vl-2b")  # doctest: +SKIP
    >>> ModelCard.load(path).data.library_name  # doctest: +SKIP
    'transformers'

    ```
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"Cannot write a model card into {str(folder)!r}: it is a file, not a folder.")
    path = folder / README_NAME
    card.save(path)
    return path


# --------------------------------------------------------------------------------------------- from a checkpoint
def read_checkpoint_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The `config.json` of a checkpoint folder as a dict, with a clear error when it is missing or broken."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(Path(folder))!r} has no config.json; save the model with `save_pretrained` into that folder first."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); re-save the model with save_pretrained.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(config).__name__}.")
    return config


def infer_card_kind(config: Mapping[str, Any]) -> str | None:
    """`"embedding"` for a UniME embedding checkpoint's config, `None` when the config alone cannot tell (a generative
    VLM can be a reranker or a reasoner)."""
    auto_model = str((config.get("auto_map") or {}).get("AutoModel", ""))
    if config.get("model_type") == "unime" or auto_model.startswith("modeling_unime."):
        return "embedding"
    return None


def card_for_checkpoint(
    folder: str | os.PathLike,
    *,
    kind: str | None = None,
    base_model: str | None = None,
    model_id: str | None = None,
    **kwargs: Any,
) -> ModelCard:
    """Render the card of a saved checkpoint, reading what it can from `config.json`: the kind (UniME embedding
    checkpoints are recognised), the base model (the backbone's Hub id, when it was loaded from the Hub) and the
    embedding size.

    Args:
        folder (`str` or `os.PathLike`):
            The checkpoint folder.
        kind (`str`, *optional*):
            `"embedding"`, `"reranker"` or `"reasoner"`; required for generative (non-embedding) checkpoints.
        base_model (`str`, *optional*):
            Overrides the base model read from the config.
        model_id (`str`, *optional*):
            The Hub repo id the card is for.
        kwargs:
            `datasets`, `training`, `results`, `license`, ... as for [`render_card`].

    Example:

    ```python
    >>> card = card_for_checkpoint("unime-v2-qwen2vl-2b", model_id="my-org/unime-v2-qwen2vl-2b",
    ...                            results="eval/results.json")  # doctest: +SKIP

    ```
    """
    config = read_checkpoint_config(folder)
    detected = infer_card_kind(config)
    if kind is None:
        if detected is None:
            raise ValueError(
                f"Cannot tell from {str(Path(folder) / 'config.json')!r} (model_type {config.get('model_type')!r}) "
                "whether this is a reranker or a reasoner; pass kind='reranker' or kind='reasoner' (CLI: --kind)."
            )
        kind = detected
    _check_kind(kind)
    backbone = config.get("backbone_config") if kind == "embedding" else config
    backbone = backbone if isinstance(backbone, dict) else {}
    if base_model is None:
        source = backbone.get("_name_or_path") or config.get("_name_or_path")
        if isinstance(source, str) and source and _looks_like_repo_id(source):
            base_model = source
        else:
            logger.warning(
                "The base model of %s is unknown (it was built from %r, not a Hub id); pass base_model= (CLI: "
                "--base-model) to name it in the card.",
                folder,
                source,
            )
    if kind == "embedding" and "embedding_dim" not in kwargs:
        text_config = backbone.get("text_config") if isinstance(backbone.get("text_config"), dict) else backbone
        kwargs["embedding_dim"] = text_config.get("hidden_size")
    tags = list(kwargs.pop("tags", None) or [])
    if backbone.get("model_type"):
        tags.append(str(backbone["model_type"]))
    return render_card(kind, base_model=base_model, model_id=model_id, tags=tags, **kwargs)
