"""`unime-hf eval --config eval.yaml`: evaluate an embedding model on MMEB, image-text retrieval and compositional
sets.

Writes `<output_dir>/results.json` (metrics + metadata), per-query predictions under `predictions/` and pictures under
`plots/` (layout: [`unime_hf.evaluation.results`]). Options come from a YAML file; command-line flags override it,
and `--set section.key=value` overrides any entry (the value is read as YAML). Relative paths are relative to the
working directory.

```bash
unime-hf eval --config examples/configs/eval_shapes.yaml
unime-hf eval --config examples/configs/eval_mmeb.yaml --model runs/unime-v2-2b --max_queries 50 \\
    --set mmeb.datasets='[VOC2007, GQA]'
```

From Python:

```python
>>> from unime_hf.scripts.evaluate import main
>>> main(["--config", "examples/configs/eval_shapes.yaml", "--max_queries", "20"])
```
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from unime_hf.models.auto import MODEL_KINDS
from unime_hf.scripts._config import TINY_PREFIX

logger = logging.getLogger("unime_hf.scripts.evaluate")

TASKS: tuple[str, ...] = ("mmeb", "retrieval", "compositional")
MMEB_KEYS = (
    "data_dir",
    "image_root",
    "files",
    "dataset_info",
    "datasets",
    "meta_tasks",
    "splits",
    "query_instructions",
    "candidate_instructions",
)
RETRIEVAL_KEYS = ("path", "image_root", "split", "max_images", "image_prompt", "text_prompt", "ks")

COMPOSITIONAL_KEYS = ("path", "image_root", "image_prompt", "text_prompt")
PLOTS_KEYS = ("modality_gap", "judge_scores", "judge_threshold")
RERANK_KEYS = ("model", "top_k", "mode", "batch_size", "rest_order", "interpolation")


def _unknown_keys(where: str, given: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown option {key!r}.{hint} Known options: {list(known)}")


@dataclass
class EvalConfig:
    """Options of an evaluation run (the YAML file's top-level keys).

    Args:
        model (`str`):
            A saved UniME checkpoint, a generative VLM checkpoint (wrapped with `UniMEEmbeddingModel.from_backbone`) or
            a sentence-transformers model; a local folder or a Hub id. `tiny:<kind>` (`qwen2_vl`, `qwen2_5_vl`,
            `llava_onevision`) builds an untrained tiny backbone under `output_dir`: a smoke test of the pipeline.
        output_dir (`str`):
            Where `results.json`, `predictions/` and `plots/` go.
        model_kind (`str`, *optional*, defaults to `"auto"`):
            `auto`, `unime`, `backbone` or `sentence-transformers`. `auto` reads the folder's `config.json`
            (`model_type: unime` -> unime; a `modules.json` without it -> sentence-transformers; else backbone).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Passed to sentence-transformers.
        dtype (`str`, *optional*):
            `float32`, `bfloat16`, `float16` or `auto`; default: the loader's default.
        device (`str`, *optional*):
            `cpu`, `cuda`, `cuda:1`, ...; default: CUDA when available.
        batch_size (`int`, *optional*, defaults to 16):
            Items per forward pass.
        max_queries (`int`, *optional*):
            Smoke runs: at most this many query rows per MMEB dataset, rows per compositional set and images per
            retrieval gallery.
        ties (`str`, *optional*, defaults to `"strict"`):
            `strict` (ties count against the gold) or `first` (MMEB's argmax).
        check_images (`bool`, *optional*, defaults to `True`):
            Fail early on image paths that name no file.
        show_progress (`bool`, *optional*, defaults to `True`):
            Progress bars.
        tasks (`list[str]`, *optional*):
            Run only these of `mmeb`, `retrieval`, `compositional` (default: every configured one).
        mmeb (`dict`, *optional*):
            `data_dir`, `image_root`, `files` ({name: path}), `dataset_info` (a JSON/YAML file of {name: {file,
            meta_task, split}}, or a shapes `world.json`), `datasets` (names to keep), `meta_tasks`, `splits`,
            `query_instructions`, `candidate_instructions` ({name: text}, `"*"` for all).
        retrieval (`dict`, *optional*):
            Gallery name -> {`path`, `image_root`, `split`, `max_images`, `image_prompt`, `text_prompt`, `ks`} (see
            [`~unime_hf.evaluation.retrieval.load_gallery`] for the layouts `path` may have).
        compositional (`dict`, *optional*):
            Set name -> {`path`, `image_root`, `image_prompt`, `text_prompt`} (`path`: a canonical file or the
            SugarCrepe `data/` folder, see [`~unime_hf.evaluation.compositional.load_compositional`]).
        plots (`dict`, *optional*):
            `modality_gap` (`bool`, default `True`: one picture per retrieval gallery), `judge_scores` (a mined or
            judged file or saved dataset to plot), `judge_threshold` (a line on that plot).
        rerank (`dict`, *optional*):
            Rerank every MMEB query's top candidates with a UniME-V2 reranker ([`~unime_hf.rerank.UniMEReranker`]):
            `model` (checkpoint), `top_k` (default 10), `mode` (`listwise`, the default, or `pointwise`),
            `batch_size`, `rest_order`, `interpolation` (a weight `w`: order the top candidates by the embedding
            similarity and the reranker's `P(Yes)` together, see [`~unime_hf.rerank.interpolate_scores`]; needs
            `mode: pointwise`). Both the embedding-only and the reranked scores are reported.
    """

    model: str
    output_dir: str
    model_kind: str = "auto"
    trust_remote_code: bool = False
    dtype: str | None = None
    device: str | None = None
    batch_size: int = 16
    max_queries: int | None = None
    ties: str = "strict"
    check_images: bool = True
    show_progress: bool = True
    tasks: list[str] | None = None
    mmeb: dict[str, Any] | None = None
    retrieval: dict[str, dict[str, Any]] | None = None
    compositional: dict[str, dict[str, Any]] | None = None
    plots: dict[str, Any] = field(default_factory=dict)
    rerank: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("`model` is required: a checkpoint folder or Hub id (set it in the YAML or --model)")
        if not self.output_dir:
            raise ValueError("`output_dir` is required (set it in the YAML or --output_dir)")
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"`model_kind` must be one of {list(MODEL_KINDS)}, got {self.model_kind!r}")
        if self.ties not in ("strict", "first"):
            raise ValueError(f"`ties` must be 'strict' or 'first', got {self.ties!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {self.batch_size!r}")
        if self.max_queries is not None and (not isinstance(self.max_queries, int) or self.max_queries < 1):
            raise ValueError(f"`max_queries` must be a positive integer or null, got {self.max_queries!r}")
        if self.tasks is not None:
            if isinstance(self.tasks, str):
                self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
            _unknown_keys("tasks", dict.fromkeys(self.tasks), TASKS)
        if self.mmeb is not None:
            _unknown_keys("mmeb", self.mmeb, MMEB_KEYS)
            if not any(self.mmeb.get(k) for k in ("data_dir", "files", "dataset_info")):
                raise ValueError("mmeb: give `data_dir`, `files` or `dataset_info` to say where the eval sets are")
        for section, known in (("retrieval", RETRIEVAL_KEYS), ("compositional", COMPOSITIONAL_KEYS)):
            entries = getattr(self, section)
            if entries is None:
                continue
            if not isinstance(entries, Mapping):
                raise ValueError(f"{section}: expected a mapping of set name -> options, got {type(entries).__name__}")
            for name, options in entries.items():
                if not isinstance(options, Mapping) or not options.get("path"):
                    raise ValueError(f"{section}.{name}: needs a `path`")
                _unknown_keys(f"{section}.{name}", options, known)
        self.plots = dict(self.plots or {})
        _unknown_keys("plots", self.plots, PLOTS_KEYS)
        if self.rerank is not None:
            _unknown_keys("rerank", self.rerank, RERANK_KEYS)
            if not self.rerank.get("model"):
                raise ValueError("rerank: needs a `model` (a reranker checkpoint)")
            if self.rerank.get("mode", "listwise") not in ("listwise", "pointwise"):
                raise ValueError(f"rerank.mode must be 'listwise' or 'pointwise', got {self.rerank['mode']!r}")
            if self.rerank.get("interpolation") is not None:
                from unime_hf.rerank.interpolation import check_interpolation_weight

                if self.rerank.get("mode", "listwise") != "pointwise":
                    raise ValueError(
                        "rerank.interpolation combines pointwise P(Yes) scores: set rerank.mode: pointwise"
                    )
                try:
                    check_interpolation_weight(self.rerank["interpolation"])
                except ValueError as err:
                    raise ValueError(f"rerank.interpolation: {err}") from None
        if not self.selected_tasks():
            raise ValueError("nothing to evaluate: configure `mmeb`, `retrieval` or `compositional` (or fix `tasks`)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalConfig:
        _unknown_keys("config", data, [f.name for f in fields(cls)])
        return cls(**data)

    def selected_tasks(self) -> list[str]:
        configured = [task for task in TASKS if getattr(self, task)]
        return [task for task in configured if self.tasks is None or task in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------------- parsing
def make_parser() -> argparse.ArgumentParser:
    """The `unime-hf eval` argument parser."""
    parser = argparse.ArgumentParser(
        prog="unime-hf eval",
        description="Evaluate an embedding model on MMEB, image-text retrieval and compositional sets.",
    )
    parser.add_argument("--config", help="YAML file with the options (see examples/configs/eval_*.yaml)")
    parser.add_argument("--model", help="checkpoint folder or Hub id (overrides the config)")
    parser.add_argument("--model_kind", choices=MODEL_KINDS)
    parser.add_argument("--output_dir")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--max_queries", type=int, help="smoke runs: rows per dataset")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--ties", choices=("strict", "first"))
    parser.add_argument("--tasks", help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any option, e.g. --set mmeb.image_root=/data/eval_images (VALUE is parsed as YAML)",
    )
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def load_config(args: argparse.Namespace) -> EvalConfig:
    """The YAML file (if any) with the command-line overrides applied, validated."""
    import yaml

    data: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    for name in ("model", "model_kind", "output_dir", "batch_size", "max_queries", "device", "dtype", "ties", "tasks"):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.no_progress:
        data["show_progress"] = False
    for assignment in args.set:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}")
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return EvalConfig.from_dict(data)


# ------------------------------------------------------------------------------------------------------- running
def _resolve_model(config: EvalConfig) -> str:
    if not config.model.startswith(TINY_PREFIX):
        return config.model
    from unime_hf.testing.tiny import build_tiny_backbone

    kind = config.model[len(TINY_PREFIX) :]
    path = Path(config.output_dir) / f"tiny-{kind}-backbone"
    if not (path / "config.json").is_file():
        logger.info("building an untrained tiny %s backbone in %s", kind, path)
        build_tiny_backbone(kind, path, seed=0)
    return str(path)


def load_embedder(config: EvalConfig) -> Any:
    """Load the model named by the config as an embedder (see [`EvalConfig`])."""
    from unime_hf.models.auto import load_embedder as load

    return load(
        _resolve_model(config),
        kind=config.model_kind,
        device=config.device,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
    )


def _run_mmeb(config: EvalConfig, embedder: Any, output_dir: Path, results: dict[str, Any]) -> None:
    from unime_hf.evaluation.mmeb import evaluate_mmeb, load_mmeb_datasets, mmeb_sources, read_dataset_info
    from unime_hf.evaluation.results import PREDICTIONS_DIR, write_predictions

    options = config.mmeb or {}
    info = read_dataset_info(options["dataset_info"]) if options.get("dataset_info") else {}
    names = options.get("datasets")
    sources = mmeb_sources(
        options.get("data_dir"),
        files=options.get("files"),
        dataset_info=info,
        names=[names] if isinstance(names, str) else names,
    )
    data = load_mmeb_datasets(image_root=options.get("image_root"), files=sources, check_images=config.check_images)
    meta_tasks = {n: e["meta_task"] for n, e in info.items() if e.get("meta_task")}
    splits = {n: e["split"] for n, e in info.items() if e.get("split")}
    meta_tasks.update(options.get("meta_tasks") or {})
    splits.update(options.get("splits") or {})
    reranker = _load_reranker(config) if config.rerank else None
    result = evaluate_mmeb(
        data,
        embedder,
        batch_size=config.batch_size,
        query_instructions=options.get("query_instructions"),
        candidate_instructions=options.get("candidate_instructions"),
        meta_tasks=meta_tasks,
        splits=splits,
        ties=config.ties,
        reranker=reranker,
        rerank_top_k=int(config.rerank.get("top_k", 10)) if config.rerank else 10,
        rerank_mode=config.rerank.get("mode", "listwise") if config.rerank else None,
        rerank_interpolation=config.rerank.get("interpolation") if config.rerank else None,
        max_queries=config.max_queries,
        show_progress=config.show_progress,
    )
    if reranker is not None:
        result.metrics["reranker"] = {
            "model": str(config.rerank["model"]),
            "mode": config.rerank.get("mode", "listwise"),
            "interpolation": config.rerank.get("interpolation"),
            "stats": dict(getattr(reranker, "stats", {})),
        }
    for name, paths in sources.items():
        result.metrics["datasets"][name]["path"] = [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
    result.metrics["image_root"] = str(options["image_root"]) if options.get("image_root") else None
    predictions = write_predictions(result.predictions, output_dir / PREDICTIONS_DIR / "mmeb.jsonl")
    results["mmeb"] = result.metrics
    results["predictions"]["mmeb"] = predictions.relative_to(output_dir).as_posix()


def _load_reranker(config: EvalConfig) -> Any:
    import torch

    from unime_hf.rerank.reranker import UniMEReranker

    options = config.rerank or {}
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {key: options[key] for key in ("batch_size", "rest_order") if key in options}
    logger.info("loading reranker %s on %s", options["model"], device)
    return UniMEReranker.from_pretrained(options["model"], device=device, **kwargs)


def _run_retrieval(config: EvalConfig, embedder: Any, output_dir: Path, results: dict[str, Any]) -> None:
    from unime_hf.evaluation.plots import matched_pairs, modality_gap, plot_modality_gap
    from unime_hf.evaluation.results import PLOTS_DIR, PREDICTIONS_DIR, write_predictions
    from unime_hf.evaluation.retrieval import DEFAULT_KS, evaluate_retrieval, load_gallery

    results["retrieval"] = {}
    for name, options in (config.retrieval or {}).items():
        limits = [n for n in (options.get("max_images"), config.max_queries) if n is not None]
        gallery = load_gallery(
            options["path"],
            options.get("image_root"),
            split=options.get("split", "test"),
            name=name,
            max_images=min(limits) if limits else None,
            check_images=config.check_images,
        )
        result = evaluate_retrieval(
            gallery,
            embedder,
            ks=options.get("ks", DEFAULT_KS),
            batch_size=config.batch_size,
            image_prompt=options.get("image_prompt"),
            text_prompt=options.get("text_prompt"),
            ties=config.ties,
            show_progress=config.show_progress,
        )
        images, texts = matched_pairs(result.image_embeddings, result.caption_embeddings, result.caption_images)
        metrics = {**result.metrics, "path": str(options["path"])}
        if len(images) >= 2:
            metrics["modality_gap"] = modality_gap(images, texts)
            if config.plots.get("modality_gap", True):
                plot = plot_modality_gap(
                    {name: (images, texts)},
                    output_dir / PLOTS_DIR / f"modality_gap_{name}.png",
                    title=f"Representation distributions: {Path(config.model).name or config.model}",
                )
                results["plots"].append(plot.relative_to(output_dir).as_posix())
        results["retrieval"][name] = metrics
        path = write_predictions(result.predictions, output_dir / PREDICTIONS_DIR / f"retrieval_{name}.jsonl")
        results["predictions"][f"retrieval/{name}"] = path.relative_to(output_dir).as_posix()


def _run_compositional(config: EvalConfig, embedder: Any, output_dir: Path, results: dict[str, Any]) -> None:
    from unime_hf.evaluation.compositional import evaluate_compositional, load_compositional
    from unime_hf.evaluation.results import PREDICTIONS_DIR, write_predictions

    results["compositional"] = {}
    for name, options in (config.compositional or {}).items():
        data = load_compositional(options["path"], options.get("image_root"), check_images=config.check_images)
        result = evaluate_compositional(
            data,
            embedder,
            batch_size=config.batch_size,
            image_prompt=options.get("image_prompt"),
            text_prompt=options.get("text_prompt"),
            max_rows=config.max_queries,
            show_progress=config.show_progress,
        )
        results["compositional"][name] = {**result.metrics, "path": str(options["path"])}
        path = write_predictions(result.predictions, output_dir / PREDICTIONS_DIR / f"compositional_{name}.jsonl")
        results["predictions"][f"compositional/{name}"] = path.relative_to(output_dir).as_posix()


def _load_judged(path: str | os.PathLike) -> Any:
    """Judge scores from a saved dataset folder, or a JSON/JSONL/parquet file in the canonical mined layout
    (`pos_score`, `hard_negative_scores` / `candidate_scores`) or the released UniME-V2 one (`query_pos_scores`,
    `hard_negatives_scores`)."""
    path = Path(path)
    if path.is_dir():
        import datasets

        return datasets.load_from_disk(str(path))
    from unime_hf.data.formats import load_records

    rows = load_records(path).rows
    if "query_pos_scores" in rows[0]:
        return {
            "pos_score": [r.get("query_pos_scores") for r in rows],
            "hard_negative_scores": [r.get("hard_negatives_scores") or [] for r in rows],
        }
    columns = {key for row in rows for key in row}
    return {key: [row.get(key) for row in rows] for key in columns}


def run_evaluation(config: EvalConfig, embedder: Any = None) -> dict[str, Any]:
    """Run every configured evaluation and write the run directory; returns the results dict.

    Args:
        config ([`EvalConfig`]): The options.
        embedder (*optional*): An already loaded embedder (default: load `config.model`).
    """
    from unime_hf.evaluation.plots import plot_judge_scores
    from unime_hf.evaluation.results import PLOTS_DIR, format_summary, new_results, write_results

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder if embedder is not None else load_embedder(config)
    results = new_results(embedder, config.to_dict())
    results["model"]["name_or_path"] = results["model"]["name_or_path"] or config.model
    runners = {"mmeb": _run_mmeb, "retrieval": _run_retrieval, "compositional": _run_compositional}
    for task in config.selected_tasks():
        logger.info("running %s", task)
        runners[task](config, embedder, output_dir, results)
    if config.plots.get("judge_scores"):
        plot = plot_judge_scores(
            _load_judged(config.plots["judge_scores"]),
            output_dir / PLOTS_DIR / "judge_scores.png",
            threshold=config.plots.get("judge_threshold"),
        )
        results["plots"].append(plot.relative_to(output_dir).as_posix())
    path = write_results(results, output_dir)
    logger.info("results written to %s\n%s", path, format_summary(results))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `unime-hf eval`; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("unime_hf").setLevel(args.log_level)
    if not args.config and not args.model:
        parser.error("give --config (a YAML file) or at least --model and --output_dir")
    try:
        config = load_config(args)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    run_evaluation(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
