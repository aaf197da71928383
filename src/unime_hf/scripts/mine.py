"""`unime-hf mine retrieve|judge|sample|all --config mine.yaml`: MLLM-as-a-Judge hard-negative mining.

Each stage reads the previous stage's output from `output_dir` and writes its own, so stages can be run (and
resumed: retrieve and judge keep finished shards) one at a time:

```
output_dir/
  retrieved/   DatasetDict(train=pairs + candidate_ids, candidate_similarities; corpus)
  judged/      + pos_score, candidate_scores
  mined/       + hard_negative_ids, hard_negative_scores   (what `unime-hf train --train_file` reads)
  mined.json   the released UniME-V2 JSON layout (optional, `export.unime_v2_json`)
  stats.json   sampling statistics
  shards/      resumable shards of retrieve and judge
```

Example config (`examples/configs/mine_shapes.yaml`):

```yaml
data: {shapes_dir: runs/shapes}
output_dir: runs/mine
retrieve: {model: runs/demo/infonce, top_k: 50}
judge: {model: runs/demo/judge, batch_size: 32}
sample: {beta: 0.01, num_negatives: 10, interval: 5}
```
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger("unime_hf.scripts.mine")

STAGES = ("retrieve", "judge", "sample", "all")


@dataclass
class DataOptions:
    """Where the pairs and the candidate corpus come from: a shapes world folder, or a training file."""

    shapes_dir: str | None = None
    train_file: str | None = None
    corpus_file: str | None = None
    train_format: str = "auto"
    image_root: str | None = None
    max_rows: int | None = None


@dataclass
class RetrieveOptions:
    model: str | None = None
    model_kind: str = "auto"
    top_k: int = 50
    similarity_threshold: float | None = None
    batch_size: int = 64
    query_instruction: str | None = None
    candidate_instruction: str | None = None
    use_faiss: bool | None = None
    shard_size: int = 10_000


@dataclass
class JudgeOptions:
    model: str | None = None
    batch_size: int = 16
    prompt: str | None = None
    shard_size: int = 2_000


@dataclass
class SampleOptions:
    beta: float = 0.01
    num_negatives: int = 10
    interval: int = 5
    seed: int = 0


@dataclass
class ExportOptions:
    unime_v2_json: str | None = None


@dataclass
class MineConfig:
    """The whole mining configuration (one YAML mapping with these sections)."""

    output_dir: str = "runs/mine"
    device: str | None = None
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    retrieve: RetrieveOptions = field(default_factory=RetrieveOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    sample: SampleOptions = field(default_factory=SampleOptions)
    export: ExportOptions = field(default_factory=ExportOptions)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> MineConfig:
        """Build from a YAML mapping, rejecting unknown keys with the section they were found in."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; expected some of {sorted(known)}.")
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            section_cls = SECTIONS.get(name)
            if section_cls is None:
                kwargs[name] = value
                continue
            value = value or {}
            if not isinstance(value, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping, got {type(value).__name__}.")
            allowed = sorted(f.name for f in fields(section_cls))
            bad = sorted(set(value) - set(allowed))
            if bad:
                raise ValueError(f"{source}: unknown key(s) {bad} in section {name!r}; expected some of {allowed}.")
            kwargs[name] = section_cls(**value)
        return cls(**kwargs)


SECTIONS: dict[str, type] = {
    "data": DataOptions,
    "retrieve": RetrieveOptions,
    "judge": JudgeOptions,
    "sample": SampleOptions,
    "export": ExportOptions,
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unime-hf mine", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES, help="which stage to run ('all' runs retrieve, judge, sample)")
    parser.add_argument("--config", required=True, help="YAML file (see examples/configs/mine_shapes.yaml)")
    parser.add_argument("--output_dir", help="overrides output_dir")
    parser.add_argument("--overwrite", action="store_true", help="recompute finished shards")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one entry, e.g. --set retrieve.top_k=20 (value parsed as YAML)",
    )
    return parser


def load_config(args: argparse.Namespace) -> MineConfig:
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"--config {str(path)!r}: no such file.")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(values).__name__}.")
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE.")
        *parents, leaf = key.split(".")
        target = values
        for parent in parents:
            target = target.setdefault(parent, {}) or {}
        target[leaf] = yaml.safe_load(raw)
    if args.output_dir:
        values["output_dir"] = args.output_dir
    if args.overwrite:
        values["overwrite"] = True
    return MineConfig.from_dict(values, source=str(path))


# ----------------------------------------------------------------------------------------------------- stages
def load_pairs(options: DataOptions):
    """`DatasetDict(train=pairs, corpus=corpus)` from the data section."""
    if options.shapes_dir:
        from unime_hf.data.shapes import load_shapes_train

        data = load_shapes_train(options.shapes_dir)
    elif options.train_file:
        from unime_hf.scripts.train_embedding import load_training_data

        data = load_training_data(options.train_file, options.corpus_file, options.train_format, options.image_root)
        if "corpus" not in data:
            raise ValueError(f"{options.train_file}: mining needs a candidate corpus; set data.corpus_file.")
    else:
        raise ValueError("The data section needs `shapes_dir` or `train_file`.")
    if options.max_rows is not None:
        data["train"] = data["train"].select(range(min(options.max_rows, len(data["train"]))))
    return data


def _load_stage(output_dir: Path, name: str, previous_stage: str):
    import datasets

    path = output_dir / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: run `unime-hf mine {previous_stage}` first.")
    return datasets.load_from_disk(str(path))


def run_retrieve(config: MineConfig):
    import datasets

    from unime_hf.mining.retrieve import retrieve_candidates
    from unime_hf.models.auto import load_embedder

    if not config.retrieve.model:
        raise ValueError("retrieve.model: a UniME checkpoint, a backbone or a sentence-transformers model.")
    data = load_pairs(config.data)
    embedder = load_embedder(config.retrieve.model, kind=config.retrieve.model_kind, device=config.device)
    options = config.retrieve
    output_dir = Path(config.output_dir)
    retrieved = retrieve_candidates(
        data["train"],
        data["corpus"],
        embedder,
        top_k=options.top_k,
        similarity_threshold=options.similarity_threshold,
        batch_size=options.batch_size,
        output_dir=output_dir / "shards" / "retrieve",
        shard_size=options.shard_size,
        query_instruction=options.query_instruction,
        candidate_instruction=options.candidate_instruction,
        use_faiss=options.use_faiss,
        image_root=config.data.image_root,
        model_name=options.model,
        overwrite=config.overwrite,
    )
    result = datasets.DatasetDict({"train": retrieved, "corpus": data["corpus"]})
    result.save_to_disk(str(output_dir / "retrieved"))
    logger.info(
        "retrieved %d candidates for each of %d queries -> %s", options.top_k, len(retrieved), output_dir / "retrieved"
    )
    return result


def run_judge(config: MineConfig):
    import datasets

    from unime_hf.mining.judge import MLLMJudge, judge_candidates

    if not config.judge.model:
        raise ValueError("judge.model is required: a generative VLM (path or Hub id).")
    output_dir = Path(config.output_dir)
    retrieved = _load_stage(output_dir, "retrieved", "retrieve")
    kwargs: dict[str, Any] = {"batch_size": config.judge.batch_size, "device": config.device}
    if config.judge.prompt:
        kwargs["prompt"] = config.judge.prompt
    judge = MLLMJudge(config.judge.model, image_root=config.data.image_root, **kwargs)
    judged = judge_candidates(
        retrieved["train"],
        retrieved["corpus"],
        judge,
        output_dir=output_dir / "shards" / "judge",
        shard_size=config.judge.shard_size,
        overwrite=config.overwrite,
        model_name=config.judge.model,
    )
    result = datasets.DatasetDict({"train": judged, "corpus": retrieved["corpus"]})
    result.save_to_disk(str(output_dir / "judged"))
    logger.info("judged %d queries -> %s", len(judged), output_dir / "judged")
    return result


def run_sample(config: MineConfig):
    import datasets

    from unime_hf.mining.sample import sample_hard_negatives

    output_dir = Path(config.output_dir)
    judged = _load_stage(output_dir, "judged", "judge")
    options = config.sample
    mined, stats = sample_hard_negatives(
        judged["train"],
        beta=options.beta,
        num_negatives=options.num_negatives,
        interval=options.interval,
        seed=options.seed,
    )
    result = datasets.DatasetDict({"train": mined, "corpus": judged["corpus"]})
    result.save_to_disk(str(output_dir / "mined"))
    (output_dir / "stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    print(stats)
    if config.export.unime_v2_json:
        from unime_hf.data.formats import write_unime_v2_mined

        path = write_unime_v2_mined(
            mined,
            judged["corpus"],
            config.export.unime_v2_json,
            image_root=config.data.image_root or config.data.shapes_dir,
        )
        logger.info("wrote the UniME-V2 JSON layout to %s", path)
    return result, stats


def run(stage: str, config: MineConfig) -> Any:
    """Run one stage, or all three in order."""
    if stage in ("retrieve", "all"):
        run_retrieve(config)
    if stage in ("judge", "all"):
        run_judge(config)
    if stage in ("sample", "all"):
        return run_sample(config)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = make_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = load_config(args)
        run(args.stage, config)
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
