"""`unime-hf shapes --out DIR [--seed N] [--preset small]`: generate the shapes world and print its statistics.

Example:

```bash
unime-hf shapes --out runs/shapes --seed 0 --preset small
unime-hf shapes --out runs/shapes --config shapes.yaml --candidates 150
```
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from unime_hf.data.shapes.config import PRESETS

logger = logging.getLogger(__name__)

# config fields that can be set from the command line: flag -> (field, type, help)
_OVERRIDES: dict[str, tuple[str, type, str]] = {
    "--image-size": ("image_size", int, "image side in pixels"),
    "--grid": ("grid", int, "grid side (2 or 3)"),
    "--min-objects": ("min_objects", int, "fewest objects per scene"),
    "--max-objects": ("max_objects", int, "most objects per scene (<= 4)"),
    "--heldout-combos": ("heldout_combos", int, "(colour, shape) combinations kept out of training"),
    "--train-families": ("train_families", int, "training base scenes"),
    "--variants-per-family": ("variants_per_family", int, "one-attribute-off variants per base used by pairs"),
    "--distractors-per-family": ("distractors_per_family", int, "variants written to corpus.jsonl only"),
    "--eval-queries": ("eval_queries", int, "queries per in-distribution eval set"),
    "--heldout-queries": ("heldout_queries", int, "queries per held-out eval set"),
    "--candidates": ("candidates", int, "candidates per eval query, gold included"),
    "--hard-negative-fraction": ("hard_negative_fraction", float, "share of one-attribute-off distractors"),
    "--compositional-per-subset": ("compositional_per_subset", int, "rows per SugarCrepe subset"),
}


def make_parser() -> argparse.ArgumentParser:
    """The parser of `unime-hf shapes`."""
    parser = argparse.ArgumentParser(
        prog="unime-hf shapes",
        description="Generate the shapes world: a deterministic synthetic multimodal dataset (training pairs, "
        "MMEB-style eval sets, a compositional set and the world's truth).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    parser.add_argument("--preset", choices=list(PRESETS), default="default", help="world size and vocabulary")
    parser.add_argument("--config", type=Path, default=None, help="YAML file of ShapesWorldConfig fields")
    for flag, (_, kind, help_) in _OVERRIDES.items():
        parser.add_argument(flag, type=kind, default=None, help=help_)
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def _config(args: argparse.Namespace) -> Any:
    from unime_hf.data.shapes import ShapesWorldConfig

    fields: dict[str, Any] = {}
    if args.config is not None:
        import yaml

        loaded = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of ShapesWorldConfig fields")
        fields.update(loaded)
    for flag, (name, _, _) in _OVERRIDES.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            fields[name] = value
    if args.seed is not None:
        fields["seed"] = args.seed
    return ShapesWorldConfig.preset(args.preset, **fields)


def format_statistics(stats: dict[str, Any], out_dir: str | Path = "") -> str:
    """The statistics of a world as a plain-text table."""
    lines = [f"shapes world {out_dir} ({stats.get('seconds', '?')} s)".replace("  ", " ")]
    lines.append("images: " + ", ".join(f"{k} {v}" for k, v in stats["images"].items()))
    lines.append(f"texts: {stats['texts']}")
    lines.append("train pairs: " + ", ".join(f"{k} {v}" for k, v in stats["train_pairs"].items()))
    corpus = stats["train_corpus"]
    lines.append(
        f"train corpus: {corpus['items']} items ({corpus['distractor_items']} distractors), "
        f"{corpus['one_off_neighbours_per_image']} one-attribute-off neighbours per image"
    )
    for task, numbers in stats["train_queries_with_several_true_items"].items():
        lines.append(
            f"train {task} queries with several true corpus items (false negatives): {numbers['queries']} "
            f"({numbers['share']:.1%}), {numbers['true_items_per_query']} true items per query"
        )
    lines.append("held-out combos: " + (", ".join(stats["heldout_combos"]) or "none"))
    lines.append("")
    header = f"{'eval set':<28}{'split':<7}{'queries':>8}{'candidates':>12}{'hard neg/query':>16}{'false neg':>11}"
    lines += [header, "-" * len(header)]
    for name, row in stats["eval"].items():
        lines.append(
            f"{name:<28}{row['split']:<7}{row['queries']:>8}{row['candidates_per_query']:>12}"
            f"{row['hard_negatives_per_query']:>16}{row['false_negatives']:>11}"
        )
    lines.append("")
    lines.append("compositional: " + ", ".join(f"{k} {v}" for k, v in stats["compositional"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Generates the world and prints its statistics; returns the exit status."""
    args = make_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    from unime_hf.data.shapes import generate_shapes_world

    try:
        config = _config(args)
    except (ValueError, TypeError) as error:  # a bad field or value: say which, no traceback
        print(f"unime-hf shapes: {error}", file=sys.stderr)
        return 2
    stats = generate_shapes_world(args.out, config)
    print(format_statistics(stats, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
