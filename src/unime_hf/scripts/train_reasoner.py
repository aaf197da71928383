# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""`unime-hf train-reasoner`: Embed-RL's embedder-guided GRPO (EG-RL) on a Reasoner MLLM, the Embedder frozen.

Options come from a YAML file (`--config`, keys = fields of [`~unime_hf.reasoning.grpo.EmbedRLConfig`] (TRL's
`GRPOConfig` plus the reward options) and of [`ReasonerScriptArguments`] below) and command-line flags, which
override the YAML. Runs alone, under `accelerate launch` and from Python:

```bash
unime-hf train-reasoner --config examples/configs/reasoner_shapes.yaml --max_steps 10
accelerate launch --num_processes 8 examples/train_reasoner.py --config examples/configs/reasoner_qwen3vl.yaml
```

```python
>>> from unime_hf.scripts.train_reasoner import main
>>> main(["--config", "examples/configs/reasoner_shapes.yaml", "--output_dir", "runs/try"])  # doctest: +SKIP
```

Training data (`train_file`): pairs in any layout `unime-hf train` reads (a `save_to_disk` folder, or JSON / JSON
Lines / parquet in the canonical, MMEB-train or UniME-V2 layout). Each pair's query becomes a GRPO prompt asking
for its T-CoT; its positive is the retrieval target the rewards use.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unime_hf.scripts._config import TINY_PREFIX, parse_yaml_and_flags, resolve_resume_checkpoint

logger = logging.getLogger("unime_hf.train_reasoner")

PROMPT_TEMPLATES = ("default", "short")


@dataclass
class ReasonerScriptArguments:
    """Model and data arguments of `unime-hf train-reasoner` (training options are fields of `EmbedRLConfig`)."""

    reasoner_name_or_path: str = field(
        metadata={
            "help": "The Reasoner: a generative VLM (path or Hub id); `tiny:<kind>` (qwen2_vl, qwen2_5_vl, "
            "llava_onevision) builds a tiny random one under output_dir."
        }
    )
    embedder_name_or_path: str = field(
        metadata={
            "help": "The frozen Embedder: a UniME checkpoint or a backbone to wrap; `tiny:<kind>` builds a tiny "
            "random one (its rewards carry no retrieval signal: smoke runs only)."
        }
    )
    train_file: str = field(metadata={"help": "Pairs: a save_to_disk folder or a .json/.jsonl/.parquet file."})
    discriminator_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Discriminator MLLM of the process reward (path or Hub id; any generative VLM), or `embedder` "
            "(the Embedder picks by cosine: a cheap stand-in); unset turns the process reward off."
        },
    )
    train_format: str = field(
        default="auto",
        metadata={"help": "Layout of train_file.", "choices": ["auto", "canonical", "mmeb", "unime_v2"]},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on N pairs drawn at random (seeded by `seed`) from the data."}
    )
    prompt_template: str = field(
        default="default",
        metadata={
            "help": "T-CoT request: `default` (the full format description), `short` (for tiny models), or a "
            "template of your own with {role}, {input} and {coords}."
        },
    )
    system_prompt: str | None = field(default=None, metadata={"help": "A system message before each request."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters on the Reasoner."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Linear layers to adapt (default: every linear layer of the language model)."}
    )


def make_parser():
    """The argument parser: [`ReasonerScriptArguments`] and `EmbedRLConfig` fields, plus `--config`."""
    from transformers import HfArgumentParser

    from unime_hf.reasoning.grpo import EmbedRLConfig

    parser = HfArgumentParser(
        (ReasonerScriptArguments, EmbedRLConfig),
        prog="unime-hf train-reasoner",
        description="Embed-RL: train a Reasoner with embedder-guided GRPO (the Embedder frozen).",
    )
    parser.add_argument("--config", default=None, help="YAML file of options; command-line flags override it.")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[ReasonerScriptArguments, Any]:
    """Parse `argv` (the `--config` YAML, flags on top) into `(ReasonerScriptArguments, EmbedRLConfig)`."""
    hint = (
        "the fields of EmbedRLConfig (TRL's GRPOConfig plus the Embed-RL reward options) and ReasonerScriptArguments "
        "(see `unime-hf train-reasoner --help`)"
    )
    return parse_yaml_and_flags(make_parser(), argv, hint)


def resolve_template(value: str) -> str:
    """The prompt template named by `value` (`default`, `short`) or `value` itself when it has an `{input}` field."""
    from unime_hf.reasoning.tcot import SHORT_TCOT_PROMPT, TCOT_PROMPT

    if value == "default":
        return TCOT_PROMPT
    if value == "short":
        return SHORT_TCOT_PROMPT
    if "{input}" not in value:
        raise ValueError(
            f"--prompt_template must be one of {PROMPT_TEMPLATES} or a template with an {{input}} field, got "
            f"{value!r}."
        )
    return value


def _resolve_tiny(name: str, folder: Path, seed: int, config: Any, role: str) -> str:
    if not name.startswith(TINY_PREFIX):
        return name
    from unime_hf.testing.tiny import build_tiny_backbone

    kind = name[len(TINY_PREFIX) :]
    path = folder / f"tiny-{kind}-{role}"
    with config.main_process_first(desc=f"building the tiny {role}"):
        if not (path / "config.json").exists():
            logger.info("Building a tiny random %s %s in %s", kind, role, path)
            build_tiny_backbone(kind, path, seed=seed)
    return str(path)


def _load_discriminator(name: str | None, embedder: Any, config: Any) -> Any:
    if name is None:
        return None
    from unime_hf.reasoning.rewards import EmbedderDiscriminator, RerankerDiscriminator

    if name == "embedder":
        logger.info("Process reward: the Embedder stands in for the discriminator MLLM (cosine picks).")
        return EmbedderDiscriminator(embedder, batch_size=config.embedder_batch_size, image_root=config.image_root)
    from unime_hf.rerank.reranker import UniMEReranker

    device = "cpu" if config.use_cpu else None
    return RerankerDiscriminator(UniMEReranker.from_pretrained(name, device=device))


def _peft_config(script_args: ReasonerScriptArguments) -> Any:
    if not script_args.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=script_args.lora_r,
        lora_alpha=script_args.lora_alpha,
        lora_dropout=script_args.lora_dropout,
        target_modules=script_args.lora_target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )


def main(argv: list[str] | None = None) -> int:
    """Train and save a Reasoner with EG-RL; returns the exit status."""
    script_args, config = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if config.should_log else logging.WARNING,
    )
    from unime_hf.models.processing_unime import save_processor
    from unime_hf.reasoning.grpo import EmbedRLTrainer, build_reasoner_dataset
    from unime_hf.scripts.train_embedding import load_training_data
    from unime_hf.trainer.embedding_trainer import load_embedding_model

    template = resolve_template(script_args.prompt_template)
    if config.dataset_name is None:
        config.dataset_name = script_args.train_file
    with config.main_process_first(desc="loading the data"):
        pairs = load_training_data(script_args.train_file, None, script_args.train_format, config.image_root)["train"]
        if script_args.max_train_samples is not None and script_args.max_train_samples < len(pairs):
            pairs = pairs.shuffle(seed=config.seed).select(range(script_args.max_train_samples))
        prompts = build_reasoner_dataset(
            pairs,
            template=template,
            coords=config.box_coords,
            scale=config.box_scale,
            image_root=config.image_root,
            system_prompt=script_args.system_prompt,
        )
    logger.info("EG-RL on %d prompts from %s", len(prompts), script_args.train_file)

    output_dir = Path(config.output_dir)
    reasoner = _resolve_tiny(script_args.reasoner_name_or_path, output_dir, config.seed, config, "reasoner")
    embedder_path = _resolve_tiny(script_args.embedder_name_or_path, output_dir, config.seed + 1, config, "embedder")
    if script_args.embedder_name_or_path.startswith(TINY_PREFIX):
        logger.warning("The Embedder is a random tiny model: its rewards carry no retrieval signal (smoke run).")
    embedder = load_embedding_model(embedder_path, **(config.embedder_init_kwargs or {}))
    discriminator = _load_discriminator(script_args.discriminator_name_or_path, embedder, config)

    trainer = EmbedRLTrainer(
        reasoner,
        embedder,
        args=config,
        train_dataset=prompts,
        discriminator=discriminator,
        peft_config=_peft_config(script_args),
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir))
    trainer.save_model(config.output_dir)
    if trainer.args.should_save and trainer.processing_class is not None:
        if hasattr(trainer.processing_class, "prepare_items"):
            # the image-only UniME processor loads back with AutoProcessor(trust_remote_code=True) only with its code
            save_processor(trainer.processing_class, config.output_dir)
        trainer.create_model_card()
    logger.info("Saved the Reasoner to %s", config.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
