# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""`unime-hf train`: train a UniME embedding model with [`EmbeddingDistillTrainer`].

Options come from a YAML file (`--config`, keys = fields of [`EmbeddingDistillConfig`] plus the data arguments
below) and command-line flags, which override the YAML. Runs alone, under `accelerate launch` (several processes,
DeepSpeed ZeRO-2) and from Python:

```bash
unime-hf train --config examples/configs/shapes.yaml --max_steps 20
accelerate launch --num_processes 2 examples/train.py --config examples/configs/qwen2vl_2b.yaml
```

```python
>>> from unime_hf.scripts.train_embedding import main
>>> main(["--config", "examples/configs/shapes.yaml", "--output_dir", "runs/try"])
```

Training data (`train_file`): a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (a
`DatasetDict` may hold `train` and `corpus`), or a JSON / JSON Lines / parquet file in the canonical pairs or mined
layout, in the MMEB-train layout (`qry, qry_image_path, pos_text, pos_image_path`) or in the released UniME-V2
mined layout (`query_pos_scores, hard_negatives, hard_negatives_scores`). Mined rows in the canonical layout need
`corpus_file` (the `id, text, image` items their `hard_negative_ids` refer to).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unime_hf.scripts._config import parse_yaml_and_flags, read_table, resolve_model_path, resolve_resume_checkpoint

logger = logging.getLogger("unime_hf.train")

TRAIN_FORMATS = ("auto", "canonical", "mmeb", "unime_v2")


@dataclass
class TrainScriptArguments:
    """Model and data arguments of `unime-hf train` (training options are fields of `EmbeddingDistillConfig`)."""

    model_name_or_path: str = field(
        metadata={
            "help": "Backbone VLM or UniME checkpoint (path or Hub id); `tiny:<kind>` (qwen2_vl, qwen2_5_vl, "
            "llava_onevision) builds a tiny random backbone under output_dir."
        }
    )
    train_file: str = field(
        metadata={"help": "Training data: a save_to_disk folder, or a .json/.jsonl/.parquet file (see --help)."}
    )
    corpus_file: str | None = field(
        default=None,
        metadata={"help": "Corpus (id, text, image) that mined hard_negative_ids refer to: folder or file."},
    )
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data, in the layout of train_file."})
    train_format: str = field(
        default="auto",
        metadata={"help": "Layout of train_file/eval_file files.", "choices": list(TRAIN_FORMATS)},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})


def make_parser():
    """The argument parser: [`TrainScriptArguments`] and [`EmbeddingDistillConfig`] fields, plus `--config`."""
    from transformers import HfArgumentParser

    from unime_hf.trainer.embedding_config import EmbeddingDistillConfig

    parser = HfArgumentParser(
        (TrainScriptArguments, EmbeddingDistillConfig),
        prog="unime-hf train",
        description="Train a UniME embedding model (UniME-V2 judge-score distillation, InfoNCE baselines).",
    )
    parser.add_argument("--config", default=None, help="YAML file of options; command-line flags override it.")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[TrainScriptArguments, Any]:
    """Parse `argv` (the `--config` YAML, flags on top) into `(TrainScriptArguments, EmbeddingDistillConfig)`."""
    hint = "the fields of EmbeddingDistillConfig and TrainScriptArguments (see `unime-hf train --help`)"
    return parse_yaml_and_flags(make_parser(), argv, hint)


# -------------------------------------------------------------------------------------------------------- data
def _detect_format(columns: list[str], path: Path) -> str:
    if "qry" in columns:
        return "mmeb"
    if "query_pos_scores" in columns or "hard_negatives" in columns:
        return "unime_v2"
    if "query_text" in columns and "pos_id" in columns:
        return "canonical"
    raise ValueError(
        f"{path}: cannot tell the layout from the columns {columns}; expected canonical pairs/mined (query_text, "
        "pos_id, ...), MMEB-train (qry, qry_image_path, pos_text, pos_image_path) or UniME-V2 mined "
        "(query_pos_scores, hard_negatives, hard_negatives_scores). Set --train_format to force one."
    )


def _read_with_formats(kind: str, path: Path, image_root: str | None):
    """Read a raw MMEB-train or UniME-V2 file with `unime_hf.data.formats` (train + corpus)."""
    try:
        from unime_hf.data import formats
    except ImportError as err:  # the readers ship with unime_hf.data
        raise ValueError(f"{path}: reading the {kind} layout needs unime_hf.data.formats ({err}).") from err
    reader = formats.read_mmeb_train if kind == "mmeb" else formats.read_unime_v2_mined
    return reader(str(path), image_root=image_root)


def load_training_data(
    train_file: str | os.PathLike,
    corpus_file: str | os.PathLike | None = None,
    train_format: str = "auto",
    image_root: str | None = None,
):
    """Load training rows and their corpus as `DatasetDict({"train": ..., "corpus": ...})` (no `corpus` for plain
    pairs without one).

    Args:
        train_file (`str` or `os.PathLike`):
            A `save_to_disk` folder (a `Dataset`, or a `DatasetDict` with `train` and optionally `corpus`), or a
            `.json` / `.jsonl` / `.parquet` file in the canonical, MMEB-train or UniME-V2 layout.
        corpus_file (`str` or `os.PathLike`, *optional*):
            The corpus (`id, text, image`): a `save_to_disk` folder or a file; overrides a `corpus` split.
        train_format (`str`, *optional*, defaults to `"auto"`):
            `"auto"` (from the columns), `"canonical"`, `"mmeb"` or `"unime_v2"`.
        image_root (`str`, *optional*):
            Folder that relative image paths of raw MMEB / UniME-V2 files start from (default: the file's folder).

    Example:

    ```python
    >>> data = load_training_data("runs/shapes/mined", corpus_file="runs/shapes/corpus")
    >>> data["train"].column_names[:3]
    ['query_id', 'query_text', 'query_image']
    ```
    """
    import datasets

    if train_format not in TRAIN_FORMATS:
        raise ValueError(f"`train_format` must be one of {TRAIN_FORMATS}, got {train_format!r}.")
    path = Path(train_file)
    splits: dict[str, datasets.Dataset] = {}
    if path.is_dir() or train_format in ("auto", "canonical"):
        table = read_table(path)
        if isinstance(table, datasets.DatasetDict):
            if "train" not in table:
                raise ValueError(f"{path}: a DatasetDict needs a 'train' split, found {list(table)}.")
            splits = {name: table[name] for name in ("train", "corpus") if name in table}
        else:
            splits = {"train": table}
        kind = _detect_format(splits["train"].column_names, path) if train_format == "auto" else train_format
        if kind != "canonical":
            if path.is_dir():
                raise ValueError(f"{path}: a save_to_disk folder must hold canonical rows, found the {kind} layout.")
            splits = dict(_read_with_formats(kind, path, image_root))
    else:
        splits = dict(_read_with_formats(train_format, path, image_root))
    if corpus_file is not None:
        corpus = read_table(Path(corpus_file))
        if isinstance(corpus, datasets.DatasetDict):
            corpus = corpus["corpus"] if "corpus" in corpus else corpus[next(iter(corpus))]
        splits["corpus"] = corpus
    return datasets.DatasetDict(splits)


def main(argv: list[str] | None = None) -> int:
    """Train and save a UniME embedding model; returns the exit status."""
    script_args, config = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if config.should_log else logging.WARNING,
    )
    from unime_hf.trainer.embedding_trainer import EmbeddingDistillTrainer

    if config.dataset_name is None:
        config.dataset_name = script_args.train_file
    with config.main_process_first(desc="loading the data"):
        data = load_training_data(
            script_args.train_file, script_args.corpus_file, script_args.train_format, config.image_root
        )
        eval_data = (
            load_training_data(
                script_args.eval_file, script_args.corpus_file, script_args.train_format, config.image_root
            )
            if script_args.eval_file
            else None
        )
    train = data["train"]
    if script_args.max_train_samples is not None:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    corpus = data.get("corpus")
    if eval_data is not None and "corpus" in eval_data and corpus is None:
        corpus = eval_data["corpus"]
    logger.info(
        "Training on %d rows (%s), corpus of %s items",
        len(train),
        script_args.train_file,
        len(corpus) if corpus is not None else "no",
    )

    model = resolve_model_path(script_args.model_name_or_path, config.output_dir, config)
    trainer = EmbeddingDistillTrainer(
        model,
        args=config,
        train_dataset=train,
        eval_dataset=eval_data["train"] if eval_data is not None else None,
        corpus=corpus,
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir))
    trainer.save_model(config.output_dir)
    logger.info("Saved the trained model to %s", config.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
