"""`unime-hf push --folder DIR --repo-id NAMESPACE/NAME`: upload a checkpoint folder with its model card to the Hub.

Without a `README.md` in the folder a card is generated (metadata, usage, the training recipe and the results given
with `--training` / `--results`). Nothing is sent, and the folder is left unchanged, when the inputs are wrong or the
Hub cannot be reached.

Example:

```bash
unime-hf push --folder runs/unime-qwen2vl-2b --repo-id my-org/unime-qwen2vl-2b --private \\
    --base-model Qwen/Qwen2-VL-2B-Instruct --dataset TianchengGu/UniME-V2-Training-Datasets \\
    --results runs/eval/results.json
unime-hf push --config push.yaml   # the same options as YAML keys (folder, repo_id, training: {...}, ...)
```
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("unime_hf.push")

# option -> whether it is a list (may be given several times)
_OPTIONS: dict[str, bool] = {
    "folder": False,
    "repo_id": False,
    "private": False,
    "token": False,
    "commit_message": False,
    "no_card": False,
    "kind": False,
    "base_model": False,
    "datasets": True,
    "results": False,
    "mmeb_dataset": False,
    "training": False,
    "license": False,
    "ignore_patterns": True,
    "endpoint": False,
}


def make_parser() -> argparse.ArgumentParser:
    """The parser of `unime-hf push`."""
    parser = argparse.ArgumentParser(
        prog="unime-hf push",
        description="Upload a checkpoint folder (weights, config, remote code, processor) with its model card to the "
        "Hugging Face Hub. Options may also come from a YAML file (--config); flags override it.",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML file of options (keys as below, with _)")
    parser.add_argument("--folder", default=None, help="checkpoint folder written by save_pretrained (required)")
    parser.add_argument("--repo-id", dest="repo_id", default=None, help="target repository, namespace/name (required)")
    parser.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    parser.add_argument("--token", default=None, help="Hub token with write access (default: the logged-in one)")
    parser.add_argument("--commit-message", dest="commit_message", default=None, help="commit message")
    parser.add_argument(
        "--no-card", dest="no_card", action="store_true", default=None, help="do not generate a missing README.md"
    )
    card = parser.add_argument_group("generated model card (used only when the folder has no README.md)")
    card.add_argument(
        "--kind", choices=("embedding", "reranker", "reasoner"), default=None, help="card kind (default: detected)"
    )
    card.add_argument("--base-model", dest="base_model", default=None, help="Hub id of the base model")
    card.add_argument(
        "--dataset", dest="datasets", action="append", default=None, help="training dataset (repeatable)"
    )
    card.add_argument("--results", default=None, help="JSON file of evaluation results (or an eval run folder)")
    card.add_argument(
        "--mmeb-dataset",
        dest="mmeb_dataset",
        default=None,
        help="dataset the MMEB-protocol results were computed on (default: TIGER-Lab/MMEB-eval)",
    )
    card.add_argument("--training", default=None, help="JSON or YAML file of the training recipe")
    card.add_argument("--license", default=None, help="license id (default: apache-2.0)")
    parser.add_argument(
        "--ignore", dest="ignore_patterns", action="append", default=None, help="glob of files not to upload"
    )
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def _read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what} {str(path)!r} is not valid JSON: {err}") from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{what} {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a mapping, got {type(data).__name__}.")
    return data


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Merge the `--config` YAML with the flags (flags win) and check the required options."""
    options: dict[str, Any] = {}
    if args.config is not None:
        loaded = _read_mapping(args.config, "--config")
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name == "dataset":
                name = "datasets"
            if name not in _OPTIONS:
                raise ValueError(
                    f"--config {str(args.config)!r}: unknown option {key!r}; known: {', '.join(_OPTIONS)}."
                )
            if _OPTIONS[name] and isinstance(value, str):
                value = [value]
            options[name] = value
    for name in _OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    missing = [f"--{name.replace('_', '-')}" for name in ("folder", "repo_id") if not options.get(name)]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)} (on the command line or in --config).")
    return options


def main(argv: list[str] | None = None) -> int:
    """Push a checkpoint folder; returns 0 on success, 1 when the push failed, 2 for bad options."""
    args = make_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        options = resolve_options(args)
    except (OSError, ValueError) as error:
        logger.error("unime-hf push: %s", error)
        return 2

    from unime_hf.hub.push import DEFAULT_COMMIT_MESSAGE, HubUnreachableError, push_to_hub

    card_kwargs: dict[str, Any] = {
        key: options[key]
        for key in ("kind", "base_model", "datasets", "results", "mmeb_dataset", "license")
        if options.get(key)
    }
    try:
        training = options.get("training")
        if isinstance(training, (str, Path)):
            training = _read_mapping(training, "--training")
        if training:
            card_kwargs["training"] = training
        url = push_to_hub(
            options["folder"],
            options["repo_id"],
            private=bool(options.get("private")),
            token=options.get("token"),
            commit_message=options.get("commit_message") or DEFAULT_COMMIT_MESSAGE,
            create_card_if_missing=not options.get("no_card"),
            card_kwargs=card_kwargs,
            ignore_patterns=options.get("ignore_patterns"),
            endpoint=options.get("endpoint"),
        )
    except (HubUnreachableError, PermissionError, OSError, ValueError, TypeError) as error:
        logger.error("unime-hf push: %s", error)
        return 1
    logger.info("Done: %s", url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
