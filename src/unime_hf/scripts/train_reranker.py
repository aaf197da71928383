# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""`unime-hf train-reranker`: train a UniME-V2 reranker with [`RerankerSFTTrainer`] (pairwise + listwise SFT).

Options come from a YAML file (`--config`, keys = fields of [`RerankerSFTConfig`] plus the data arguments below) and
command-line flags, which override the YAML. Runs alone, under `accelerate launch` (several processes, DeepSpeed
ZeRO-2) and from Python:

```bash
unime-hf train-reranker --config examples/configs/reranker_shapes.yaml --max_steps 20
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/train_reranker.py \
    --config examples/configs/reranker_qwen25vl_7b.yaml
```

```python
>>> from unime_hf.scripts.train_reranker import main
>>> main(["--config", "examples/configs/reranker_shapes.yaml", "--output_dir", "runs/try"])
```

Training data (`train_file`): mined rows, as a `save_to_disk` folder (a `Dataset`, or a `DatasetDict` with `train`
and `corpus`), a canonical JSON / JSON Lines / parquet file (with `corpus_file`), or the released UniME-V2 mined JSON
(`query_pos_scores, hard_negatives, hard_negatives_scores`; its corpus is built from it). Reranker rows already built
(`prompt, completion, images`, see [`build_reranker_rows`]) are used as they are.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unime_hf.scripts._config import parse_yaml_and_flags, read_table, resolve_model_path, resolve_resume_checkpoint

logger = logging.getLogger("unime_hf.train_reranker")

TRAIN_FORMATS = ("auto", "canonical", "unime_v2", "rows")


@dataclass
class RerankerScriptArguments:
    """Model and data arguments of `unime-hf train-reranker` (training options are fields of `RerankerSFTConfig`)."""

    model_name_or_path: str = field(
        metadata={
            "help": "Generative VLM to fine-tune (path or Hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct); `tiny:<kind>` "
            "(qwen2_vl, qwen2_5_vl, llava_onevision) builds a tiny random backbone under output_dir."
        }
    )
    train_file: str = field(
        metadata={"help": "Mined rows (or built reranker rows): a save_to_disk folder, or .json/.jsonl/.parquet."}
    )
    corpus_file: str | None = field(
        default=None, metadata={"help": "Corpus (id, text, image) that hard_negative_ids refer to: folder or file."}
    )
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation data, in the layout of train_file."})
    train_format: str = field(
        default="auto", metadata={"help": "Layout of train_file/eval_file.", "choices": list(TRAIN_FORMATS)}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder that relative image paths of UniME-V2 JSON start from."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training rows only."})


def make_parser():
    """The argument parser: [`RerankerScriptArguments`] and [`RerankerSFTConfig`] fields, plus `--config`."""
    from transformers import HfArgumentParser

    from unime_hf.trainer.reranker_config import RerankerSFTConfig

    parser = HfArgumentParser(
        (RerankerScriptArguments, RerankerSFTConfig),
        prog="unime-hf train-reranker",
        description="Train a UniME-V2 reranker (pairwise Yes/No + listwise (k) answers, TRL SFT, LoRA).",
    )
    parser.add_argument("--config", default=None, help="YAML file of options; command-line flags override it.")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[RerankerScriptArguments, Any]:
    """Parse `argv` (the `--config` YAML, flags on top) into `(RerankerScriptArguments, RerankerSFTConfig)`."""
    hint = "the fields of RerankerSFTConfig and RerankerScriptArguments (see `unime-hf train-reranker --help`)"
    return parse_yaml_and_flags(make_parser(), argv, hint)


# -------------------------------------------------------------------------------------------------------- data
def _detect_format(columns: list[str], path: Path) -> str:
    if "prompt" in columns and "completion" in columns:
        return "rows"
    if "hard_negative_ids" in columns:
        return "canonical"
    if "query_pos_scores" in columns or "hard_negatives" in columns:
        return "unime_v2"
    raise ValueError(
        f"{path}: cannot tell the layout from the columns {columns}; the reranker trains on mined rows (query_text, "
        "pos_id, hard_negative_ids, hard_negative_scores, ...), UniME-V2 mined JSON (query_pos_scores, "
        "hard_negatives, hard_negatives_scores) or built rows (prompt, completion, images). Mine plain pairs first "
        "(`unime-hf mine`)."
    )


def load_reranker_data(
    train_file: str | os.PathLike,
    corpus_file: str | os.PathLike | None = None,
    train_format: str = "auto",
    image_root: str | None = None,
):
    """Load mined rows and their corpus (or built reranker rows) as `DatasetDict({"train": ..., "corpus": ...})`.

    Example:

    ```python
    >>> data = load_reranker_data("runs/shapes/mined")  # a save_to_disk DatasetDict with train + corpus
    >>> data["train"].column_names[-2:]
    ['hard_negative_ids', 'hard_negative_scores']
    ```
    """
    import datasets

    if train_format not in TRAIN_FORMATS:
        raise ValueError(f"`train_format` must be one of {TRAIN_FORMATS}, got {train_format!r}.")
    path = Path(train_file)
    if train_format == "unime_v2":
        splits = dict(_read_unime_v2(path, image_root))
    else:
        table = read_table(path)
        if isinstance(table, datasets.DatasetDict):
            if "train" not in table:
                raise ValueError(f"{path}: a DatasetDict needs a 'train' split, found {list(table)}.")
            splits = {name: table[name] for name in ("train", "corpus") if name in table}
        else:
            splits = {"train": table}
        kind = _detect_format(splits["train"].column_names, path) if train_format == "auto" else train_format
        if kind == "unime_v2":
            if path.is_dir():
                raise ValueError(f"{path}: a save_to_disk folder must hold canonical mined rows or built rows.")
            splits = dict(_read_unime_v2(path, image_root))
    if corpus_file is not None:
        corpus = read_table(Path(corpus_file))
        if isinstance(corpus, datasets.DatasetDict):
            corpus = corpus["corpus"] if "corpus" in corpus else corpus[next(iter(corpus))]
        splits["corpus"] = corpus
    return datasets.DatasetDict(splits)


def _read_unime_v2(path: Path, image_root: str | None):
    from unime_hf.data.formats import read_unime_v2_mined

    return read_unime_v2_mined(str(path), image_root=image_root)


def main(argv: list[str] | None = None) -> int:
    """Train and save a UniME-V2 reranker; returns the exit status."""
    script_args, config = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if config.should_log else logging.WARNING,
    )
    from unime_hf.trainer.reranker_trainer import RerankerSFTTrainer

    if config.dataset_name is None:
        config.dataset_name = script_args.train_file
    with config.main_process_first(desc="loading the data"):
        data = load_reranker_data(
            script_args.train_file, script_args.corpus_file, script_args.train_format, script_args.image_root
        )
        eval_data = (
            load_reranker_data(
                script_args.eval_file, script_args.corpus_file, script_args.train_format, script_args.image_root
            )
            if script_args.eval_file
            else None
        )
    train = data["train"]
    if script_args.max_train_samples is not None:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    corpus = data.get("corpus")
    if corpus is None and eval_data is not None:
        corpus = eval_data.get("corpus")
    logger.info("Training on %d rows of %s", len(train), script_args.train_file)

    model = resolve_model_path(script_args.model_name_or_path, config.output_dir, config)
    trainer = RerankerSFTTrainer(
        model,
        args=config,
        train_dataset=train,
        eval_dataset=eval_data["train"] if eval_data is not None else None,
        corpus=corpus,
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir))
    trainer.save_model(config.output_dir)
    logger.info("Saved the merged reranker to %s", config.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
