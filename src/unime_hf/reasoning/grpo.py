# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Embedder-guided RL (EG-RL, Embed-RL): GRPO on the Reasoner with TRL's `GRPOTrainer`, the Embedder frozen.

- [`build_reasoner_dataset`]: pairs (`query_*`, `pos_*` columns) -> GRPO prompts asking for the query's T-CoT, with
  the query image in an `images` column; the pair columns stay for the rewards.
- [`EmbedRLConfig`]: `GRPOConfig` plus the reward weights and options (defaults: METHOD.md §6).
- [`EmbedRLTrainer`]: a `GRPOTrainer` whose rewards are [`~unime_hf.reasoning.rewards.EmbedderGuidedRewards`];
  the Embedder is frozen (`requires_grad=False`, eval mode), is not a submodule of the trained model, so it is never
  in the optimizer nor wrapped for distributed training.

Example:

```python
>>> from unime_hf.data.shapes import load_shapes_train  # doctest: +SKIP
>>> from unime_hf.reasoning.grpo import EmbedRLConfig, EmbedRLTrainer, build_reasoner_dataset  # doctest: +SKIP
>>> prompts = build_reasoner_dataset(load_shapes_train("runs/shapes")["train"])  # doctest: +SKIP
>>> args = EmbedRLConfig("runs/reasoner", num_generations=4, max_steps=100)  # doctest: +SKIP
>>> trainer = EmbedRLTrainer("Qwen/Qwen2-VL-2B-Instruct", "runs/shapes/embedding", args=args,  # doctest: +SKIP
...                          train_dataset=prompts)
>>> trainer.train()  # doctest: +SKIP

```
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn
from trl import GRPOConfig, GRPOTrainer

from unime_hf.reasoning.rewards import Discriminator, EmbedderGuidedRewards, RewardColumns
from unime_hf.reasoning.tcot import BOX_COORDS, EMBEDDING_TEXT_MODES, TCOT_PROMPT, build_tcot_prompt

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

REQUIRED_PAIR_COLUMNS = ("query_id", "query_text", "query_image", "pos_id", "pos_text", "pos_image")


# ---------------------------------------------------------------------------------------------------------- data
def build_reasoner_dataset(
    pairs: datasets.Dataset,
    *,
    template: str = TCOT_PROMPT,
    coords: str = "normalized",
    scale: float = 1000,
    image_root: str | os.PathLike | None = None,
    system_prompt: str | None = None,
) -> datasets.Dataset:
    """GRPO prompts asking the Reasoner for the T-CoT of each pair's query.

    Args:
        pairs (`datasets.Dataset`):
            Rows with `query_id, query_text, query_image, pos_id, pos_text, pos_image` (the canonical pairs of
            `unime_hf.data`; `""` = absent). Every column is kept: the rewards read them.
        template (`str`, *optional*, defaults to [`~unime_hf.reasoning.tcot.TCOT_PROMPT`]):
            The prompt template (`{role}`, `{input}`, `{coords}`).
        coords (`str`, *optional*, defaults to `"normalized"`), scale (`float`, defaults to 1000):
            How the prompt asks for boxes (Qwen2-VL / Qwen3-VL: normalised to 0-1000; Qwen2.5-VL: `"absolute"`).
        image_root (`str`, *optional*):
            Folder that relative image paths start from.
        system_prompt (`str`, *optional*):
            A system message put before the request.

    Returns:
        `datasets.Dataset` with `prompt` (conversational: the user message as a string; GRPOTrainer puts the image
        part before it) and `images` (`[query image]` or `[]`, decoded to PIL images on access) added.

    Example:

    ```python
    >>> prompts = build_reasoner_dataset(pairs)  # doctest: +SKIP
    >>> prompts[0]["prompt"][0]["role"], len(prompts[0]["images"])  # doctest: +SKIP
    ('user', 1)

    ```
    """
    import datasets

    missing = [c for c in REQUIRED_PAIR_COLUMNS if c not in pairs.column_names]
    if missing:
        raise ValueError(
            f"The pairs lack the columns {missing} (have {pairs.column_names}); read raw files with "
            "unime_hf.data.formats (e.g. read_mmeb_train) or unime_hf.data.shapes.load_shapes_train."
        )
    if coords not in BOX_COORDS:
        raise ValueError(f"`coords` must be one of {BOX_COORDS}, got {coords!r}.")
    for name in ("prompt", "images"):
        if name in pairs.column_names:
            raise ValueError(f"The pairs already have a {name!r} column; remove or rename it first.")
    root = Path(image_root) if image_root is not None else None

    def resolve(path: str) -> str:
        if not path:
            return ""
        candidate = Path(path)
        if root is not None and not candidate.is_absolute():
            candidate = root / candidate
        return str(candidate)

    def add_prompt(row: dict[str, Any], index: int) -> dict[str, Any]:
        image = resolve(row["query_image"] or "")
        if image and not Path(image).is_file():
            raise FileNotFoundError(f"row {index} (query_id={row['query_id']!r}): query image not found: {image!r}.")
        try:
            text = build_tcot_prompt(
                row["query_text"], has_image=bool(image), template=template, coords=coords, scale=scale
            )
        except ValueError as err:
            raise ValueError(f"row {index} (query_id={row['query_id']!r}): {err}") from err
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": text})
        return {"prompt": messages, "images": [image] if image else []}

    prompts = pairs.map(add_prompt, with_indices=True, desc="T-CoT prompts")
    return prompts.cast_column("images", datasets.Sequence(datasets.Image()))


# -------------------------------------------------------------------------------------------------------- config
@dataclass
class EmbedRLConfig(GRPOConfig):
    r"""Configuration of [`EmbedRLTrainer`]: `GRPOConfig` plus the Embed-RL reward options (METHOD.md §6).

    Parameters:
        format_reward_weight (`float`, *optional*, defaults to `0.05`):
            Weight of the format reward.
        outcome_reward_weight (`float`, *optional*, defaults to `0.8`):
            Weight of the outcome reward.
        process_reward_weight (`float`, *optional*, defaults to `0.2`):
            Weight of the process reward (used when a discriminator is given).
        outcome_scale (`float`, *optional*, defaults to `0.5`):
            Outcome reward = `outcome_scale * share * margin` (0.5 in the authors' code).
        outcome_top_n (`int`, *optional*, defaults to `5`):
            `n` of the share of positives in the top n (not published).
        negative_temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature of the in-batch negative weights in the margin (not published; 0.02 is the
            embedding loss's).
        process_num_negatives (`int`, *optional*, defaults to `4`):
            Hardest negatives whose T-CoTs the discriminator sees.
        cot_for_embedding (`str`, *optional*, defaults to `"full"`):
            What the Embedder reads after the input: `"full"` (the whole T-CoT) or `"answer"`.
        embed_crops (`bool`, *optional*, defaults to `False`):
            Fold the evidence crops into the query image for the Embedder.
        box_coords (`str`, *optional*, defaults to `"normalized"`), box_scale (`float`, defaults to `1000`):
            How boxes are asked for and read: `"normalized"` to `[0, box_scale]` (Qwen2-VL, Qwen3-VL) or
            `"absolute"` pixels (Qwen2.5-VL).
        embedder_batch_size (`int`, *optional*, defaults to `32`):
            Items per Embedder forward pass.
        embedder_init_kwargs (`dict` or `str`, *optional*):
            Keyword arguments for loading the Embedder from a path (e.g. `{"dtype": "bfloat16"}`); JSON accepted.
        image_root (`str`, *optional*):
            Folder of relative image paths in the data.
        dataset_name (`str`, *optional*):
            Name of the training data, for the model card.

    Example:

    ```python
    >>> args = EmbedRLConfig("runs/reasoner", num_generations=8, learning_rate=1e-6, bf16=False)
    >>> args.reward_weights is None  # the trainer fills in [0.05, 0.8, 0.2]
    True

    ```
    """

    format_reward_weight: float = field(default=0.05, metadata={"help": "Weight of the format reward."})
    outcome_reward_weight: float = field(default=0.8, metadata={"help": "Weight of the outcome reward."})
    process_reward_weight: float = field(
        default=0.2, metadata={"help": "Weight of the process reward (needs a discriminator)."}
    )
    outcome_scale: float = field(default=0.5, metadata={"help": "Outcome = outcome_scale * share * margin."})
    outcome_top_n: int = field(default=5, metadata={"help": "n of the share of positives ranked in the top n."})
    negative_temperature: float = field(
        default=0.02, metadata={"help": "Softmax temperature of the in-batch negative weights in the margin."}
    )
    process_num_negatives: int = field(
        default=4, metadata={"help": "Hardest negatives whose T-CoTs the discriminator sees."}
    )
    cot_for_embedding: str = field(
        default="full",
        metadata={"help": "What the Embedder reads after the input.", "choices": list(EMBEDDING_TEXT_MODES)},
    )
    embed_crops: bool = field(
        default=False, metadata={"help": "Fold the evidence crops into the query image for the Embedder."}
    )
    box_coords: str = field(
        default="normalized", metadata={"help": "How boxes are written.", "choices": list(BOX_COORDS)}
    )
    box_scale: float = field(default=1000, metadata={"help": "Range of normalised box coordinates."})
    embedder_batch_size: int = field(default=32, metadata={"help": "Items per Embedder forward pass."})
    embedder_init_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Keyword arguments (dict or JSON) for loading the Embedder from a path."}
    )
    image_root: str | None = field(default=None, metadata={"help": "Folder of relative image paths in the data."})
    dataset_name: str | None = field(default=None, metadata={"help": "Name of the training data, for the card."})

    def __post_init__(self) -> None:
        if self.cot_for_embedding not in EMBEDDING_TEXT_MODES:
            raise ValueError(
                f"`cot_for_embedding` must be one of {list(EMBEDDING_TEXT_MODES)}, got {self.cot_for_embedding!r}."
            )
        if self.box_coords not in BOX_COORDS:
            raise ValueError(f"`box_coords` must be one of {list(BOX_COORDS)}, got {self.box_coords!r}.")
        if self.outcome_top_n < 1 or self.process_num_negatives < 1 or self.embedder_batch_size < 1:
            raise ValueError(
                "`outcome_top_n`, `process_num_negatives` and `embedder_batch_size` must be >= 1, got "
                f"{self.outcome_top_n}, {self.process_num_negatives}, {self.embedder_batch_size}."
            )
        if not self.negative_temperature > 0 or not self.box_scale > 0:
            raise ValueError(
                f"`negative_temperature` and `box_scale` must be > 0, got {self.negative_temperature}, "
                f"{self.box_scale}."
            )
        weights = (self.format_reward_weight, self.outcome_reward_weight, self.process_reward_weight)
        if min(weights) < 0:
            raise ValueError(f"Reward weights must be >= 0, got format/outcome/process = {weights}.")
        if isinstance(self.embedder_init_kwargs, str):
            try:
                self.embedder_init_kwargs = json.loads(self.embedder_init_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"`embedder_init_kwargs` must be a dict or a JSON object, got {self.embedder_init_kwargs!r} "
                    f'({err}); write e.g. \'{{"dtype": "bfloat16"}}\'.'
                ) from err
        super().__post_init__()


# ------------------------------------------------------------------------------------------------------- trainer
def freeze_embedder(embedder: nn.Module) -> nn.Module:
    """Freeze an Embedder for EG-RL: no gradients (`requires_grad=False` on every parameter), eval mode."""
    embedder.requires_grad_(False)
    embedder.eval()
    return embedder


def _default_reasoner_processor(model: Any) -> Any:
    """The image-only UniME processor of a supported backbone (no torchvision needed), else `None` (TRL loads
    `AutoProcessor` itself)."""
    from unime_hf.models.processing_unime import load_processor

    source = model if isinstance(model, str | os.PathLike) else getattr(model.config, "_name_or_path", None)
    if not source:
        return None
    try:
        return load_processor(source)
    except (OSError, ValueError) as err:
        logger.info("Using TRL's default processor for %s (%s).", source, err)
        return None


class EmbedRLTrainer(GRPOTrainer):
    r"""EG-RL (Embed-RL): trains a Reasoner MLLM with GRPO to write T-CoTs that help a frozen Embedder retrieve.

    The rewards are format, outcome and (with a discriminator) process, weighted by the config's
    `*_reward_weight` fields unless `args.reward_weights` is set; see [`~unime_hf.reasoning.rewards`]. Each
    per-component mean is logged as `rewards/<name>/mean`, plus `outcome/share`, `outcome/margin` and
    `process/accuracy`.

    Args:
        model (`str` or `PreTrainedModel`):
            The Reasoner: a generative VLM (path / Hub id, loaded with `args.model_init_kwargs`, or a model).
        embedder (`str` or [`~unime_hf.models.modeling_unime.UniMEEmbeddingModel`]):
            The Embedder (a UniME checkpoint or a backbone to wrap; loaded with `args.embedder_init_kwargs`). It is
            frozen and moved to the training device.
        args ([`EmbedRLConfig`], *optional*):
            Configuration; a plain `GRPOConfig` gets the Embed-RL defaults.
        train_dataset, eval_dataset (`datasets.Dataset`, *optional*):
            Prompts from [`build_reasoner_dataset`] (any dataset with `prompt` and the pair columns).
        processing_class (*optional*):
            The Reasoner's processor; defaults to the image-only UniME processor of its checkpoint when the
            architecture is supported, else to TRL's default. Its tokenizer is set to left padding.
        callbacks, optimizers, peft_config:
            As for `GRPOTrainer`.
        embedder_processor (*optional*):
            The Embedder's UniME processor (defaults to the one saved with it).
        discriminator ([`~unime_hf.reasoning.rewards.Discriminator`], *optional*):
            Turns the process reward on.
        reward_funcs (`list[Callable]`, *optional*):
            More reward functions, appended after the Embed-RL ones (weight 1 each unless `args.reward_weights`).
        reward_columns ([`~unime_hf.reasoning.rewards.RewardColumns`], *optional*):
            Names of the dataset columns the rewards read.

    Example:

    ```python
    >>> trainer = EmbedRLTrainer("Qwen/Qwen2-VL-2B-Instruct", embedder="runs/shapes/embedding",  # doctest: +SKIP
    ...                          args=EmbedRLConfig("runs/reasoner", num_generations=4), train_dataset=prompts,
    ...                          discriminator=EmbedderDiscriminator(embedder))
    >>> trainer.train()  # doctest: +SKIP

    ```
    """

    _tag_names = ["trl", "grpo", "unime-hf", "embed-rl"]
    _name = "Embed-RL"

    def __init__(
        self,
        model: str | nn.Module,
        embedder: str | nn.Module,
        args: EmbedRLConfig | GRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        peft_config: Any = None,
        *,
        embedder_processor: Any = None,
        discriminator: Discriminator | None = None,
        reward_funcs: list[Callable[..., list[float | None]]] | None = None,
        reward_columns: RewardColumns | None = None,
    ):
        model_id = model if isinstance(model, str | os.PathLike) else getattr(model.config, "_name_or_path", "")
        if args is None:
            args = EmbedRLConfig(f"{str(model_id).rstrip('/').split('/')[-1] or 'reasoner'}-embed-rl")
        elif not isinstance(args, EmbedRLConfig):
            values = {k: v for k, v in args.to_dict().items() if not k.startswith("_")}
            values["hub_token"] = args.hub_token
            values.pop("generation_batch_size", None)  # derived from steps_per_generation; both may not be given
            args = EmbedRLConfig(**values)
        if isinstance(embedder, str | os.PathLike):
            from unime_hf.trainer.embedding_trainer import load_embedding_model

            embedder = load_embedding_model(embedder, **(args.embedder_init_kwargs or {}))
        elif args.embedder_init_kwargs:
            logger.warning("`embedder_init_kwargs` is ignored because the trainer got an Embedder instance.")
        if not hasattr(embedder, "encode"):
            raise TypeError(
                f"`embedder` must be a UniME embedding model with `encode` (or a path to one), got "
                f"{type(embedder).__name__}."
            )
        if isinstance(model, nn.Module) and model is embedder:
            raise ValueError("The Reasoner and the Embedder must be different models (the Embedder stays frozen).")
        freeze_embedder(embedder)
        if processing_class is None:
            processing_class = _default_reasoner_processor(model)
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if tokenizer is not None and getattr(tokenizer, "padding_side", "left") != "left":
            # GRPOTrainer left-pads the prompt ids itself but takes the image token types (mm_token_type_ids) from a
            # processor call: with right padding they no longer line up with the prompts, and the multimodal
            # position ids of image prompts go wrong (or fail) whenever the prompts of a batch differ in length.
            logger.info("Setting the Reasoner's tokenizer to left padding, as GRPO needs.")
            tokenizer.padding_side = "left"

        prompts_per_process = args.per_device_train_batch_size * args.steps_per_generation // args.num_generations
        if prompts_per_process < 2:
            raise ValueError(
                "The outcome reward ranks each query's positive among the other targets of the same generation batch, "
                f"which holds per_device_train_batch_size x steps_per_generation / num_generations = "
                f"{args.per_device_train_batch_size} x {args.steps_per_generation} / {args.num_generations} = "
                f"{prompts_per_process} prompt(s) per process; raise per_device_train_batch_size or "
                "gradient_accumulation_steps so that it holds at least 2 (the more, the more negatives)."
            )
        use_process = discriminator is not None and args.process_reward_weight > 0
        if discriminator is None and args.process_reward_weight > 0:
            logger.warning(
                "No discriminator given: the process reward (weight %s) is off; pass `discriminator=` to use it.",
                args.process_reward_weight,
            )
        self.rewards = EmbedderGuidedRewards(
            embedder,
            embedder_processor,
            discriminator=discriminator if use_process else None,
            top_n=args.outcome_top_n,
            temperature=args.negative_temperature,
            outcome_scale=args.outcome_scale,
            num_process_negatives=args.process_num_negatives,
            cot_mode=args.cot_for_embedding,
            discriminator_cot_mode=args.cot_for_embedding,
            embed_crops=args.embed_crops,
            box_coords=args.box_coords,
            box_scale=args.box_scale,
            batch_size=args.embedder_batch_size,
            image_root=args.image_root,
            columns=reward_columns,
            seed=args.seed,
        )
        functions = self.rewards.reward_functions(process=use_process)
        extra = list(reward_funcs or [])
        if args.reward_weights is None:
            weights = [args.format_reward_weight, args.outcome_reward_weight]
            weights += [args.process_reward_weight] if use_process else []
            args.reward_weights = weights + [1.0] * len(extra)
        self.embedder = embedder
        super().__init__(
            model=model,
            reward_funcs=functions + extra,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
        )
        trained = {id(p) for p in self.model.parameters()}
        if any(id(p) in trained for p in embedder.parameters()):
            raise ValueError("The Embedder shares parameters with the Reasoner; give it its own copy of the weights.")
        embedder.to(self.accelerator.device)
        self.embedder_id = getattr(embedder.config, "_name_or_path", None) or None
        self.base_model_id = str(model_id) if model_id else None

    def _generate(self, prompts: list):
        # TRL 1.x marks an image-less prompt with `None` in the per-prompt image lists it returns, and the processor
        # call that follows rejects `None` next to real images, so a batch that mixes text-only and image prompts
        # fails. An empty list means "no image" to both.
        result = super()._generate(prompts)
        if isinstance(result, tuple) and len(result) == 8 and isinstance(result[6], list):
            images = result[6]
            if any(x is None for x in images) and any(x for x in images):
                result = (*result[:6], [x if x is not None else [] for x in images], result[7])
        return result

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ) -> None:
        """Write the Embed-RL reasoner card (`README.md`) into `args.output_dir`."""
        if not self.is_world_process_zero():
            return
        from unime_hf.hub.model_card import render_reasoner_card, write_model_card

        args = self.args
        training = {
            "method": "EG-RL (GRPO, embedder frozen)",
            "reward_weights (format, outcome[, process])": list(args.reward_weights or []),
            "outcome": f"{args.outcome_scale} x share(top-{args.outcome_top_n}) x margin",
            "negative_temperature": args.negative_temperature,
            "num_generations": args.num_generations,
            "learning_rate": args.learning_rate,
            "max_steps": args.max_steps,
            "beta": args.beta,
            "max_completion_length": args.max_completion_length,
        }

        def hub_id(name: str | None) -> str | None:
            return name if name and not os.path.isdir(name) else None  # local folders are no Hub links

        try:
            card = render_reasoner_card(
                base_model=hub_id(self.base_model_id),
                datasets=dataset_name or args.dataset_name,
                training=training,
                embedding_model=hub_id(self.embedder_id),
                model_id=args.hub_model_id or model_name,
            )
            write_model_card(card, args.output_dir)
        except (ValueError, OSError, ImportError) as err:  # a card must not stop training
            logger.warning("Could not write the reasoner model card: %s", err)
