"""Shared by the training scripts: `--config file.yaml` with command-line flags on top, and reading data tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def parse_yaml_and_flags(parser: Any, argv: list[str] | None, valid_keys_hint: str) -> tuple[Any, Any]:
    """Parse `argv` with an `HfArgumentParser` of two dataclasses, taking defaults from the `--config` YAML.

    Flags override the YAML; unknown YAML keys raise a `ValueError` naming them and `valid_keys_hint`.
    Returns the two dataclass instances.
    """
    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config {str(path)!r}: no such file.")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values, got {type(values).__name__}.")
        destinations = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - destinations)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}; valid keys are {valid_keys_hint}.")
        parser.set_defaults(**values)
        for action in parser._actions:
            if action.dest in values:
                action.required = False
    # The namespace of non-dataclass options (`--config`) comes last and is not needed any more.
    first, second = parser.parse_args_into_dataclasses(argv)[:2]
    return first, second


def read_table(path: Path):
    """A `save_to_disk` folder (Dataset or DatasetDict) or a .json / .jsonl / .parquet file."""
    import datasets

    if path.is_dir():
        return datasets.load_from_disk(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file or folder.")
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        return datasets.Dataset.from_json(str(path))
    if suffix == ".parquet":
        return datasets.Dataset.from_parquet(str(path))
    raise ValueError(f"{path}: unsupported data file type {suffix!r}; use .json, .jsonl, .parquet or a folder.")


TINY_PREFIX = "tiny:"


def resolve_model_path(name: str, output_dir: str, config: Any) -> str:
    """`tiny:<kind>` builds (once) a tiny random backbone under `output_dir`; any other name is returned as is."""
    if not name.startswith(TINY_PREFIX):
        return name
    import logging

    from unime_hf.testing.tiny import build_tiny_backbone

    kind = name[len(TINY_PREFIX) :]
    path = Path(output_dir) / f"tiny-{kind}-backbone"
    with config.main_process_first(desc="building the tiny backbone"):
        if not (path / "config.json").exists():
            logging.getLogger(__name__).info("Building a tiny random %s backbone in %s", kind, path)
            build_tiny_backbone(kind, path, seed=config.seed)
    return str(path)


def resolve_resume_checkpoint(value: str | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint`: a path as is; `true`/`last`/`latest` the newest `checkpoint-*` in `output_dir`."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("true", "last", "latest"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint-* folder in {output_dir!r}.")
        return last
    return value
