# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""[`RerankerSFTTrainer`]: UniME-V2-Reranker training with TRL's `SFTTrainer` (METHOD.md §4).

The loss is TRL's next-token cross-entropy on the completion only. Pairwise rows (`Yes` / `No`) and listwise rows
(`(k)`) sit in one dataset and are mixed in every batch, so the optimised loss is the mean over all answer tokens of
the batch: `L_pair + L_list` of the paper up to how many answer tokens each task has (a `Yes` row trains `Yes` and
the end-of-turn tokens of the chat template, a listwise row `(`, `k`, `)` and the same end-of-turn tokens), with the
mix set by `pairwise_ratio` / `listwise_ratio`.

LoRA adapts the language model's linear layers only; the vision tower stays frozen (`freeze_vision_tower=True`). The
final `save_model` merges the adapters and writes a plain generative checkpoint (`AutoModelForImageTextToText`
loads it) with the processor as remote code and a model card; intermediate `checkpoint-*` folders keep the
adapters, for resuming.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForImageTextToText, TrainingArguments
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from unime_hf.trainer.lora import lora_target_regex, merged_state_dict
from unime_hf.trainer.reranker_config import RerankerSFTConfig
from unime_hf.trainer.reranker_data import build_reranker_rows, is_reranker_dataset, open_row_images

logger = logging.getLogger(__name__)

VISION_MODULE_NAMES = ("visual", "vision_tower", "vision_model")
#: Written next to a saved reranker: the prompts it was trained with, read back by `UniMEReranker.from_pretrained`.
RERANKER_CONFIG_NAME = "reranker_config.json"


# ------------------------------------------------------------------------------------------------------ collator
@dataclass
class RerankerCollator(DataCollatorForVisionLanguageModeling):
    """TRL's vision-language collator, opening image paths first.

    Reads, per example, `prompt` and `completion` (conversational messages) and `images` (paths or PIL images, in
    prompt order); other keys (`task`, `answer`, ...) are ignored. Paths are opened as RGB and resized following the
    processor's `resize_policy` / `image_size`, exactly as [`~unime_hf.scoring.YesNoScorer`] does at inference.
    Writes `input_ids`, `attention_mask`, `labels` (`-100` everywhere but the completion: the answer and the chat
    template's end-of-turn tokens) and the processor's image tensors (`pixel_values`, `image_grid_thw`, ...).

    Args:
        processor (`ProcessorMixin`):
            The backbone's processor (with a chat template).
        image_root (`str`, *optional*):
            Folder that relative image paths start from (default: the processor's `image_root`).
        kwargs:
            The arguments of `trl.trainer.sft_trainer.DataCollatorForVisionLanguageModeling` (`completion_only_loss`
            defaults to `True` here).

    Example:

    ```python
    >>> collator = RerankerCollator(processor)
    >>> batch = collator([rows[0], rows[1]])
    >>> processor.tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100])
    'Yes<|im_end|>\\n'
    ```
    """

    completion_only_loss: bool = True
    image_root: str | None = None

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        opened = []
        for position, example in enumerate(examples):
            example = dict(example)  # TRL's collator rewrites the examples it is given
            if "images" in example:
                where = f"example {position} (query {example.get('query_id', '?')})"
                example["images"] = open_row_images(example["images"] or [], self.processor, self.image_root, where)
            opened.append(example)
        return super().torch_call(opened)


# ---------------------------------------------------------------------------------------------------- model parts
def vision_tower(model: nn.Module) -> nn.Module | None:
    """The vision encoder of a generative VLM (Qwen `visual`, LLaVA `vision_tower`, ...), or `None`."""
    found = [
        (name.count("."), name, module)
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES
    ]
    return min(found, key=lambda entry: entry[:2])[2] if found else None


def build_lora_config(model: nn.Module, args: RerankerSFTConfig) -> Any:
    """The `peft.LoraConfig` of a [`RerankerSFTConfig`], targeting the language model of `model`."""
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=lora_target_regex(model, args.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def load_reranker_backbone(name_or_path: str, args: RerankerSFTConfig) -> nn.Module:
    """Load a generative VLM with `AutoModelForImageTextToText` and `args.model_init_kwargs` (`dtype` defaults to
    float32, as in TRL)."""
    from trl.trainer.utils import create_model_from_path

    kwargs = dict(args.model_init_kwargs or {})
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        kwargs["device_map"] = None
    return create_model_from_path(name_or_path, architecture=AutoModelForImageTextToText, **kwargs)


# -------------------------------------------------------------------------------------------------------- trainer
class RerankerSFTTrainer(SFTTrainer):
    """TRL `SFTTrainer` for the UniME-V2 reranker: pairwise (`Yes`/`No`) and listwise (`(k)`) answers, loss on the
    answer tokens, LoRA on the language model, vision tower frozen, merged checkpoint on the final save.

    Args:
        model (`str` or `PreTrainedModel`):
            A generative VLM (`Qwen/Qwen2.5-VL-7B-Instruct`, a local folder, or a loaded model). A string is loaded
            with `AutoModelForImageTextToText` and `args.model_init_kwargs`. A loaded model is wrapped with LoRA in
            place (PEFT injects the adapter layers into it); the merged weights are what `save_model` writes.
        args ([`RerankerSFTConfig`], *optional*):
            Training options; `None` uses the defaults with `output_dir="<model name>-reranker"`.
        train_dataset (`datasets.Dataset`):
            Either reranker rows ([`~unime_hf.trainer.reranker_data.build_reranker_rows`]) or mined rows
            (`query_*`, `pos_*`, `hard_negative_ids`, `hard_negative_scores`), from which rows are built with
            `args.list_size`, `args.pairwise_ratio`, `args.listwise_ratio`, `args.random_negative_ratio`,
            `args.negative_group_column` and `args.seed` (mined rows need `corpus`).
        eval_dataset (`datasets.Dataset` or `dict[str, datasets.Dataset]`, *optional*):
            Like `train_dataset`.
        processing_class (`ProcessorMixin`, *optional*):
            The processor; by default loaded from the model's folder with
            [`~unime_hf.models.processing_unime.load_processor`] (image-only, no torchvision needed).
        data_collator (*optional*):
            Defaults to a [`RerankerCollator`].
        peft_config (`peft.PeftConfig`, *optional*):
            Overrides the LoRA adapter built from `args` (`use_lora`, `lora_r`, ...).
        corpus (`datasets.Dataset`, *optional*):
            The `id, text, image` items that mined `hard_negative_ids` refer to.
        The other arguments are those of `trl.SFTTrainer`.

    Example:

    ```python
    >>> from unime_hf.trainer.reranker_config import RerankerSFTConfig
    >>> from unime_hf.trainer.reranker_trainer import RerankerSFTTrainer
    >>> args = RerankerSFTConfig("runs/reranker", per_device_train_batch_size=4, bf16=True)
    >>> trainer = RerankerSFTTrainer("Qwen/Qwen2.5-VL-7B-Instruct", args=args, train_dataset=mined, corpus=corpus)
    >>> trainer.train()
    >>> trainer.save_model()  # runs/reranker: merged model, processor, README.md
    ```
    """

    _tag_names = ["trl", "sft", "unime-hf", "reranker"]
    _name = "UniME-V2 reranker SFT"

    def __init__(
        self,
        model: str | nn.Module,
        args: RerankerSFTConfig | TrainingArguments | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_loss_func: Any = None,
        compute_metrics: Any = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Any = None,
        quantization_config: Any = None,
        peft_config: Any = None,
        formatting_func: Any = None,
        *,
        corpus: Any = None,
    ) -> None:
        args = self._as_config(model, args)
        name_or_path = model if isinstance(model, str) else getattr(model, "name_or_path", None)
        self._base_model_name = name_or_path
        if isinstance(model, str):
            from transformers import set_seed

            set_seed(args.seed)
            if quantization_config is not None:
                args.model_init_kwargs = {**(args.model_init_kwargs or {}), "quantization_config": quantization_config}
                quantization_config = None
            model = load_reranker_backbone(model, args)
        if processing_class is None:
            if not name_or_path:
                raise ValueError("Pass `processing_class`: the model has no `name_or_path` to load a processor from.")
            from unime_hf.models.processing_unime import load_processor

            processing_class = load_processor(name_or_path)
        if formatting_func is not None:
            raise ValueError("`formatting_func` is not supported: reranker rows are prompt-completion messages.")

        with args.main_process_first(desc="building reranker rows"):
            train_dataset = self._as_rows(train_dataset, corpus, args, "train")
            if isinstance(eval_dataset, dict):
                eval_dataset = {key: self._as_rows(value, corpus, args, key) for key, value in eval_dataset.items()}
            elif eval_dataset is not None:
                eval_dataset = self._as_rows(eval_dataset, corpus, args, "eval")

        tower = vision_tower(model)
        if args.freeze_vision_tower:
            if tower is None:
                logger.warning("No vision tower found in %s; nothing to freeze.", type(model).__name__)
            else:
                tower.requires_grad_(False)
        if args.use_lora and peft_config is None and not _is_peft_model(model):
            peft_config = build_lora_config(model, args)

        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if data_collator is None:
            # SFTTrainer sets the pad token only for its own collators.
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            data_collator = RerankerCollator(
                processor=processing_class,
                max_length=args.max_length,
                completion_only_loss=True,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        if not args.freeze_vision_tower and tower is not None:
            # PEFT froze every base weight; train the vision tower in full alongside the adapters.
            tower.requires_grad_(True)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("Reranker: %d of %d parameters trainable (%.2f%%).", trainable, total, 100 * trainable / total)

    @staticmethod
    def _as_config(model: Any, args: Any) -> RerankerSFTConfig:
        if args is None:
            name = model if isinstance(model, str) else getattr(model, "name_or_path", "") or "model"
            return RerankerSFTConfig(f"{Path(str(name)).name or 'model'}-reranker")
        if isinstance(args, RerankerSFTConfig):
            return args
        if isinstance(args, TrainingArguments):
            values = args.to_dict()
            values["hub_token"] = args.hub_token  # to_dict hides it
            known = RerankerSFTConfig.__dataclass_fields__
            return RerankerSFTConfig(**{key: value for key, value in values.items() if key in known})
        raise TypeError(f"`args` must be a RerankerSFTConfig or TrainingArguments, got {type(args).__name__}.")

    @staticmethod
    def _as_rows(dataset: Any, corpus: Any, args: RerankerSFTConfig, name: str) -> Any:
        if dataset is None or is_reranker_dataset(dataset):
            return dataset
        columns = getattr(dataset, "column_names", None) or []
        if "hard_negative_ids" not in columns:
            raise ValueError(
                f"The {name} dataset has columns {columns}: expected reranker rows (prompt, completion, images) or "
                "mined rows (query_text, query_image, pos_*, hard_negative_ids, hard_negative_scores, ...)."
            )
        if corpus is None:
            raise ValueError(
                f"The {name} dataset holds mined rows: pass `corpus=` (the id, text, image items their "
                "hard_negative_ids refer to), or build rows first with build_reranker_rows."
            )
        return build_reranker_rows(
            dataset,
            corpus,
            list_size=args.list_size,
            pairwise_ratio=args.pairwise_ratio,
            listwise_ratio=args.listwise_ratio,
            random_negative_ratio=args.random_negative_ratio,
            negative_group_column=args.negative_group_column,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            judge_prompt=args.judge_prompt,
            listwise_prompt=args.listwise_prompt,
            source=name,
        )

    # ------------------------------------------------------------------------------------------------------ saving
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model. Called by you (or `push_to_hub`): a plain generative checkpoint with the LoRA adapters
        merged, the processor (with remote code) and the model card. Called by the training loop for `checkpoint-*`
        folders: TRL's save (adapters only), which `resume_from_checkpoint` reads.
        """
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.is_deepspeed_enabled and getattr(self.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3:
            raise NotImplementedError(
                "Saving a merged reranker under DeepSpeed ZeRO-3 is not supported: the weights are partitioned. Train "
                "with ZeRO-2 (the paper's setting, examples/accelerate/deepspeed_zero2.yaml)."
            )
        if self.args.should_save:
            self._save_merged(output_dir)
        self.accelerator.wait_for_everyone()

    def _save_merged(self, output_dir: str) -> None:
        from unime_hf.models.processing_unime import save_processor

        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        if _is_peft_model(model):
            state_dict = merged_state_dict(model)
            base = model.get_base_model()
        else:
            state_dict = {key: value.detach().to("cpu") for key, value in model.state_dict().items()}
            base = model
        base.save_pretrained(output_dir, state_dict=state_dict)
        if hasattr(self.processing_class, "image_processor"):
            save_processor(self.processing_class, output_dir)
        else:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        settings = {
            "judge_prompt": self.args.judge_prompt,
            "listwise_prompt": self.args.listwise_prompt,
            "list_size": self.args.list_size,
        }
        Path(output_dir, RERANKER_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        self._write_card(output_dir)
        logger.info("Saved the merged reranker to %s", output_dir)

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ) -> None:
        """Write the reranker's model card (`README.md`) into `args.output_dir`."""
        if self.is_world_process_zero():
            self._write_card(self.args.output_dir, model_name=model_name, dataset_name=dataset_name)

    def training_summary(self) -> dict[str, Any]:
        """The training settings shown in the model card."""
        args = self.args
        summary: dict[str, Any] = {
            "learning_rate": args.learning_rate,
            "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "num_train_epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "use_lora": args.use_lora,
            "lora_r": args.lora_r,
            "lora_alpha": args.lora_alpha,
            "lora_dropout": args.lora_dropout,
            "lora_target_modules": args.lora_target_modules or "all language-model linear layers",
            "bf16": args.bf16,
            "seed": args.seed,
            "Vision tower": "frozen" if args.freeze_vision_tower else "trained",
            "Listwise candidates (x + 1)": args.list_size + 1,
            "Pairwise groups per query": args.pairwise_ratio,
            "Listwise rows per query": args.listwise_ratio,
            "Random-negative pairwise groups per query": args.random_negative_ratio,
            "Loss": "next-token cross-entropy on the answer tokens (L_pair + L_list)",
        }
        return summary

    def _write_card(self, folder: str, model_name: str | None = None, dataset_name: str | None = None) -> None:
        os.makedirs(folder, exist_ok=True)
        base = self._base_model_name
        datasets_name = dataset_name or self.args.dataset_name
        try:
            from unime_hf.hub.model_card import render_reranker_card, write_model_card
        except ImportError:  # the card renderer ships with unime_hf.hub; keep saving without it
            from huggingface_hub import ModelCard

            header = "---\nlibrary_name: transformers\npipeline_tag: image-text-to-text\n---\n\n"
            text = f"{header}# {model_name or 'UniME-V2 reranker'}\n\nA UniME-V2 reranker fine-tuned from {base}.\n"
            ModelCard(text).save(os.path.join(folder, "README.md"))
            return
        card = render_reranker_card(
            base_model=str(base) if base else None,
            datasets=datasets_name,
            training=self.training_summary(),
            model_id=self.args.hub_model_id,
            model_name=model_name,
            embedding_model=self.args.embedding_model,
        )
        write_model_card(card, folder)
