# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""[`EmbeddingDistillTrainer`]: trains a UniME embedding model by distilling judge scores (UniME-V2), or with the
InfoNCE / hard-negative cross-entropy baselines, with optional GradCache and LoRA."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.distributed as dist
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import EvalPrediction

from unime_hf.losses import (
    duplicate_positive_mask,
    gather_with_grad,
    get_loss,
    hard_negative_ce_loss,
    info_nce_loss,
)
from unime_hf.models.modeling_unime import UniMEEmbeddingModel
from unime_hf.models.processing_unime import as_unime_processor, load_processor, save_processor
from unime_hf.trainer.collator import EmbeddingCollator
from unime_hf.trainer.embedding_config import LISTWISE_LOSSES, SOFT_LABEL_LOSSES, EmbeddingDistillConfig
from unime_hf.trainer.grad_cache import grad_cache_step
from unime_hf.trainer.lora import (
    apply_lora,
    build_lora_config,
    freeze_vision_tower,
    is_peft_model,
    language_model_name,
    merged_state_dict,
)

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ("query_text", "query_image", "pos_text", "pos_image")
MINED_COLUMNS = ("pos_score", "hard_negative_ids", "hard_negative_scores")
# Batch keys of EmbeddingCollator that are not model inputs of a side, although they carry its prefix.
BATCH_KEYS = frozenset({"candidate_index", "query_chunks", "candidate_chunks"})


def load_embedding_model(name_or_path: str | os.PathLike, **kwargs: Any) -> UniMEEmbeddingModel:
    """Load a UniME checkpoint, or wrap a generative VLM checkpoint (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision, ...).

    Args:
        name_or_path (`str` or `os.PathLike`):
            A UniME checkpoint (`model_type` `"unime"`) or a backbone checkpoint, local or on the Hub.
        kwargs:
            For `from_pretrained` (`dtype` may be a string such as `"bfloat16"`).

    Example:

    ```python
    >>> model = load_embedding_model("Qwen/Qwen2-VL-2B-Instruct", dtype="bfloat16")
    ```
    """
    kwargs = dict(kwargs)
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"Unknown dtype {dtype!r} in model_init_kwargs; use e.g. 'bfloat16' or 'float32'.")
        kwargs["dtype"] = getattr(torch, dtype)
    config, _ = PretrainedConfig.get_config_dict(name_or_path)
    if config.get("model_type") == "unime":
        return UniMEEmbeddingModel.from_pretrained(name_or_path, **kwargs)
    return UniMEEmbeddingModel.from_backbone(name_or_path, **kwargs)


class EmbeddingDistillTrainer(Trainer):
    r"""Trainer for UniME embedding models (METHOD.md §3).

    Each batch holds queries and their candidates (the positive, then `num_hard_negatives` mined hard negatives),
    built by [`EmbeddingCollator`] from pairs or mined rows. The loss (`args.loss`) is the symmetric KL between the
    model's and the judge's softmax over each query's candidates (UniME-V2), the true JS divergence, cross-entropy
    over the candidates with hard labels, or InfoNCE with in-batch negatives gathered across processes. With
    `args.grad_cache_chunk_size` the gradients of the whole batch are computed chunk by chunk (GradCache); with
    `args.use_lora`, LoRA adapters train on the language model and are merged into the weights on the final
    [`~EmbeddingDistillTrainer.save_model`], which writes a full UniME checkpoint (remote code, processor,
    sentence-transformers files, model card).

    Args:
        model (`str`, `PreTrainedModel` or `nn.Module`):
            A path or Hub id (a backbone VLM or a UniME checkpoint, loaded with `args.model_init_kwargs`), a
            [`UniMEEmbeddingModel`], or a PEFT model wrapping one.
        args ([`EmbeddingDistillConfig`], *optional*):
            Training configuration; defaults to `EmbeddingDistillConfig("<model name>-unime")`.
        data_collator (`Callable`, *optional*):
            Defaults to an [`EmbeddingCollator`] configured from `args`.
        train_dataset (`datasets.Dataset` or `datasets.DatasetDict`, *optional*):
            Pairs or mined rows; a `DatasetDict` with `train` and `corpus` splits (what the readers of
            `unime_hf.data.formats` return) gives the corpus too.
        eval_dataset (`datasets.Dataset` or `datasets.DatasetDict`, *optional*):
            Like `train_dataset`; its loss and metrics are logged with an `eval_` prefix.
        processing_class (*optional*):
            The UniME processor; defaults to the one of the model's checkpoint.
        callbacks, optimizers, optimizer_cls_and_kwargs:
            As for [`~transformers.Trainer`].
        corpus (`datasets.Dataset`, *optional*):
            The corpus (`id, text, image`) that `hard_negative_ids` refer to.
        peft_config (`peft.PeftConfig`, *optional*):
            A PEFT config to apply instead of the one built from the `lora_*` fields.

    Example:

    ```python
    >>> from unime_hf.data.formats import read_unime_v2_mined
    >>> from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer
    >>> data = read_unime_v2_mined("mined.json")  # DatasetDict: train + corpus
    >>> args = EmbeddingDistillConfig("qwen2vl-2b-unime", use_lora=True, learning_rate=1e-4, max_steps=2000,
    ...                               per_device_train_batch_size=64, grad_cache_chunk_size=16, bf16=True)
    >>> trainer = EmbeddingDistillTrainer("Qwen/Qwen2-VL-2B-Instruct", args=args, train_dataset=data)
    >>> trainer.train()
    >>> trainer.save_model()  # merged UniME checkpoint: AutoModel.from_pretrained(path, trust_remote_code=True)
    ```
    """

    _tag_names = ["unime-hf", "multimodal-embedding"]
    # compute_loss returns the mean loss of the micro-batch; the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: str | PreTrainedModel | nn.Module,
        args: EmbeddingDistillConfig | TrainingArguments | None = None,
        data_collator: Callable[[list[Any]], dict[str, Any]] | None = None,
        train_dataset: datasets.Dataset | datasets.DatasetDict | None = None,
        eval_dataset: datasets.Dataset | datasets.DatasetDict | None = None,
        processing_class: Any = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        *,
        corpus: datasets.Dataset | None = None,
        peft_config: Any = None,
    ):
        model_id = model if isinstance(model, str | os.PathLike) else _name_or_path(model)
        if args is None:
            args = EmbeddingDistillConfig(f"{str(model_id).rstrip('/').split('/')[-1] or 'model'}-unime")
        elif not isinstance(args, EmbeddingDistillConfig):
            values = args.to_dict()
            values["hub_token"] = args.hub_token
            args = EmbeddingDistillConfig(**{k: v for k, v in values.items() if not k.startswith("_")})

        if isinstance(model, str | os.PathLike):
            model = load_embedding_model(model, **(args.model_init_kwargs or {}))
        elif args.model_init_kwargs:
            logger.warning("`model_init_kwargs` is ignored because the trainer got a model instance, not a path.")
        self.base_model_id = str(model_id) if model_id else None

        train_dataset, corpus = _split_corpus(train_dataset, corpus)
        eval_dataset, eval_corpus = _split_corpus(eval_dataset, None)
        if eval_corpus is not None:
            corpus = eval_corpus if corpus is None else datasets.concatenate_datasets([corpus, eval_corpus])
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            _check_columns(dataset, name, args, corpus)

        processor = processing_class if processing_class is not None else _default_processor(model, model_id)
        if not hasattr(processor, "prepare_items"):
            processor = as_unime_processor(processor, _unime_model(model).config.backbone_config.model_type)
        if args.image_size is not None:
            processor.image_size = args.image_size
            processor.resize_policy = args.image_resize
        _unime_model(model).processor = processor

        if args.freeze_vision_tower:
            frozen = freeze_vision_tower(_unime_model(model))
            logger.info("Froze %d parameter tensors outside the language model.", len(frozen))
        if (args.use_lora or peft_config is not None) and not is_peft_model(model):
            model = apply_lora(model, peft_config if peft_config is not None else build_lora_config(model, args))
            if args.gradient_checkpointing:
                # Frozen embeddings give checkpointed blocks no input that requires grad, and no gradient to LoRA.
                model.enable_input_require_grads()

        if data_collator is None:
            data_collator = EmbeddingCollator(
                processor,
                corpus=corpus,
                num_hard_negatives=args.num_hard_negatives,
                chunk_size=args.grad_cache_chunk_size,
                max_length=args.max_length,
                image_root=args.image_root,
            )
        self.corpus = corpus

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processor,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
        )
        self.loss_name = self.args.loss
        self._loss_fn = get_loss(self.loss_name)
        self._metrics: dict[str, defaultdict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._num_parameters: int | None = None
        if self.is_deepspeed_enabled and not is_peft_model(self.model):
            prefix = language_model_name(_unime_model(self.model)) + "."
            if any(p.requires_grad and not n.startswith(prefix) for n, p in self.model.named_parameters()):
                logger.warning(
                    "DeepSpeed ZeRO with a trainable vision tower: a text-only batch on one process and an image "
                    "batch on another give gradients to different parameters, which ZeRO cannot reduce. Set "
                    "`freeze_vision_tower=True` or `use_lora=True`, or make every batch hold images."
                )
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    # ----------------------------------------------------------------------------------------------- forward
    def _embed(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        inputs = dict(inputs)
        for key, value in inputs.items():
            if key.startswith("pixel_values") and torch.is_tensor(value) and dtype is not None:
                inputs[key] = value.to(dtype)
        return model(**inputs, return_dict=True).embeddings

    @staticmethod
    def _side_chunks(inputs: dict[str, Any], side: str) -> list[dict[str, Any]]:
        """The model inputs of one side (`"query"` or `"candidate"`), as a list of chunks."""
        if f"{side}_chunks" in inputs:
            return list(inputs[f"{side}_chunks"])
        prefix = f"{side}_"
        chunk = {
            key[len(prefix) :]: value
            for key, value in inputs.items()
            if key.startswith(prefix) and key not in BATCH_KEYS
        }
        if "input_ids" not in chunk:
            raise ValueError(
                f"The batch has no `{side}_input_ids` or `{side}_chunks`; build batches with `EmbeddingCollator`."
            )
        return [chunk]

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embeds queries and candidates and returns the configured loss (the mean over the micro-batch's queries).

        With `return_outputs=True` also returns `{"query_embeddings", "candidate_embeddings"}`.
        """
        embeddings = {
            side: torch.cat([self._embed(model, chunk) for chunk in self._side_chunks(inputs, side)])
            for side in ("query", "candidate")
        }
        loss = self.embedding_loss(embeddings["query"], embeddings["candidate"], inputs)
        if return_outputs:
            return loss, {"query_embeddings": embeddings["query"], "candidate_embeddings": embeddings["candidate"]}
        return loss

    def embedding_loss(
        self, query_embeddings: torch.Tensor, candidate_embeddings: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        """The configured loss from embeddings: `query_embeddings` `(B, d)`, `candidate_embeddings` `(U, d)` of the
        distinct candidates, arranged per query by `inputs["candidate_index"]` `(B, 1 + k)`. Records the metrics."""
        index = inputs["candidate_index"]
        queries = query_embeddings.float()
        metrics: dict[str, torch.Tensor] = {}
        if self.loss_name in LISTWISE_LOSSES:
            if index.shape[1] < 2:
                raise ValueError(
                    f"loss={self.loss_name!r} needs hard negatives, but the batch has none; train on mined data "
                    "(pos_score, hard_negative_ids, hard_negative_scores) or use loss='info_nce' for plain pairs."
                )
            similarities = torch.einsum("bd,bkd->bk", queries, candidate_embeddings.float()[index])
            if self.loss_name in SOFT_LABEL_LOSSES:
                judge_scores = inputs["judge_scores"]
                loss = self._loss_fn(similarities, judge_scores, temperature=self.args.loss_temperature)
                metrics["judge_score/positive"] = judge_scores[:, 0].mean()
                metrics["judge_score/negative"] = judge_scores[:, 1:].mean()
            else:
                loss = hard_negative_ce_loss(similarities, temperature=self.args.loss_temperature)
            metrics["similarity/positive"] = similarities[:, 0].mean()
            metrics["similarity/negative"] = similarities[:, 1:].mean()
            metrics["accuracy"] = (similarities.argmax(dim=1) == 0).float().mean()
        else:
            positives = candidate_embeddings[index[:, 0]]
            hard_negatives = candidate_embeddings[index[:, 1:]] if index.shape[1] > 1 else None
            gathered = gather_with_grad(positives)
            offset = dist.get_rank() * positives.shape[0] if gathered.shape[0] != positives.shape[0] else 0
            keys = None
            if self.args.mask_duplicate_positives and "positive_keys" in inputs:
                keys = inputs["positive_keys"].to(positives.device)
                keys = self.accelerator.gather(keys) if gathered.shape[0] != positives.shape[0] else keys
            loss = info_nce_loss(
                query_embeddings,
                gathered,
                temperature=self.args.loss_temperature,
                hard_negative_embeddings=hard_negatives,
                label_offset=offset,
                candidate_keys=keys,
            )
            with torch.no_grad():
                logits = queries @ gathered.float().T
                batch = torch.arange(queries.shape[0], device=logits.device)
                positive = logits[batch, batch + offset]
                metrics["similarity/positive"] = positive.mean()
                if logits.shape[1] > 1:
                    metrics["similarity/negative"] = (logits.sum(dim=1) - positive).mean() / (logits.shape[1] - 1)
                if keys is not None:  # a copy of the positive is not a wrong answer
                    logits = logits.masked_fill(duplicate_positive_mask(keys, batch + offset, len(keys)), -2.0)
                metrics["accuracy"] = (logits.argmax(dim=1) == batch + offset).float().mean()
        metrics[f"loss_{self.loss_name}"] = loss
        self._record(metrics)
        return loss

    def _record(self, metrics: dict[str, torch.Tensor]) -> None:
        mode = "train" if self.model.training else "eval"
        names = sorted(metrics)
        values = torch.stack([metrics[name].detach().float() for name in names])
        values = self.accelerator.gather(values.unsqueeze(0)).mean(dim=0)
        for name, value in zip(names, values.tolist()):
            self._metrics[mode][name].append(value)

    # ---------------------------------------------------------------------------------------------- training
    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """The Trainer's step, or with `grad_cache_chunk_size` a GradCache step with the same gradients."""
        if self.args.grad_cache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps
        backward_kwargs = {"scale_wrt_gas": False} if self.is_deepspeed_enabled else {}

        def embed(chunk: dict[str, Any]) -> torch.Tensor:
            with self.compute_loss_context_manager():
                return self._embed(model, chunk)

        def loss_fn(cached: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.embedding_loss(cached["query"], cached["candidate"], inputs) * scale

        chunks = {side: self._side_chunks(inputs, side) for side in ("query", "candidate")}
        num_backward_passes = None
        if self.is_deepspeed_enabled:
            # ZeRO reduces gradients in every backward pass: every process must run as many as the busiest one.
            count = torch.tensor([sum(len(c) for c in chunks.values())], device=self.args.device)
            num_backward_passes = int(self.accelerator.gather(count).max())
        loss = grad_cache_step(
            embed,
            chunks,
            loss_fn,
            backward=lambda tensor: self.accelerator.backward(tensor, **backward_kwargs),
            no_sync=lambda: self._defer_gradient_sync(model),
            device=self.args.device,
            num_backward_passes=num_backward_passes,
        )
        return loss

    @contextlib.contextmanager
    def _defer_gradient_sync(self, model: nn.Module) -> Iterator[None]:
        """No gradient synchronisation (DDP) and no optimizer step (DeepSpeed) for an intermediate GradCache chunk."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.accelerator.no_sync(model))
            if self.is_deepspeed_enabled:
                state = self.accelerator.gradient_state
                previous = state.sync_gradients
                state._set_sync_gradients(False)
                stack.callback(state._set_sync_gradients, previous)
            yield

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        """The Trainer's evaluation loop, with the averaged loss parts and similarities in its metrics."""
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        recorded = self._metrics["eval"]
        output.metrics.update({f"{prefix}_{name}": sum(v) / len(v) for name, v in recorded.items() if v})
        recorded.clear()
        return output

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """About `6 x tokens x parameters` (forward and backward) over the queries' and candidates' tokens."""
        tokens = 0
        for side in ("query", "candidate"):
            for chunk in inputs.get(f"{side}_chunks", [{"attention_mask": inputs.get(f"{side}_attention_mask")}]):
                mask = chunk.get("attention_mask")
                tokens += int(mask.sum()) if torch.is_tensor(mask) else 0
        if self._num_parameters is None:
            self._num_parameters = sum(p.numel() for p in self.model.parameters())
        return 6 * tokens * self._num_parameters

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the averages of the recorded loss parts and similarities since the last log (all processes)."""
        mode = "train" if self.model.training else "eval"
        averages = {name: sum(values) / len(values) for name, values in self._metrics[mode].items() if values}
        if mode == "eval":
            averages = {f"eval_{name}": value for name, value in averages.items()}
        super().log({**logs, **averages}, start_time)
        self._metrics[mode].clear()

    # ------------------------------------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        # Trainer saves the processor without its `auto_map`; write it again so AutoProcessor finds the UniME class.
        if self.args.should_save and self.processing_class is not None:
            save_processor(self.processing_class, output_dir)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints during training are the Trainer's (LoRA adapters only when training LoRA). A call by the user
        (`trainer.save_model()`) writes a full UniME checkpoint instead: LoRA merged into the weights, remote code,
        processor, sentence-transformers files and a model card, loadable with
        `AutoModel.from_pretrained(output_dir, trust_remote_code=True)`."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.is_fsdp_enabled or (self.is_deepspeed_enabled and _zero_stage(self) == 3):
            # Sharded parameters: gather through the Trainer; a LoRA run then saves its adapters only.
            logger.warning(
                "Sharded training (FSDP / ZeRO-3): saving through the Trainer, LoRA adapters are not merged."
            )
            super().save_model(output_dir, _internal_call=True)
            if self.args.should_save:
                self._write_model_card(output_dir)
            return
        model = self.accelerator.unwrap_model(self.model)
        state_dict = None
        if is_peft_model(model):
            state_dict = merged_state_dict(model)
            model = model.get_base_model()
        if self.args.should_save:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            model.save_pretrained(output_dir, state_dict=state_dict)
            if self.processing_class is not None:
                save_processor(self.processing_class, output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
            self._write_model_card(output_dir)
            logger.info("Saved the UniME embedding model to %s", output_dir)
            if self.args.push_to_hub:
                from huggingface_hub import upload_folder

                upload_folder(
                    repo_id=self.hub_model_id,
                    folder_path=output_dir,
                    token=self.args.hub_token,
                    commit_message="End of training",
                    ignore_patterns=["checkpoint-*", "_*"],
                )

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Writes the UniME model card (`README.md`) into `args.output_dir`."""
        if self.is_world_process_zero():
            self._write_model_card(self.args.output_dir)

    def _write_model_card(self, output_dir: str | os.PathLike) -> None:
        build_model_card(self).save(os.path.join(output_dir, "README.md"))


# ---------------------------------------------------------------------------------------------------- helpers
def _name_or_path(model: nn.Module) -> str | None:
    config = getattr(_unime_model(model), "config", None)
    return getattr(config, "_name_or_path", None) or None


def _unime_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if is_peft_model(model) else model


def _default_processor(model: nn.Module, model_id: str | None) -> Any:
    unime = _unime_model(model)
    attached = getattr(unime, "_processor", None)
    if attached is not None:
        return attached
    if not model_id:
        raise ValueError(
            "The model has no processor attached and no path to load one from; pass `processing_class=` (e.g. "
            "`unime_hf.models.processing_unime.load_processor(backbone_path)`)."
        )
    return load_processor(model_id)


def _split_corpus(
    dataset: datasets.Dataset | datasets.DatasetDict | None, corpus: datasets.Dataset | None
) -> tuple[datasets.Dataset | None, datasets.Dataset | None]:
    if isinstance(dataset, datasets.DatasetDict) and "train" in dataset:
        return dataset["train"], corpus if corpus is not None else dataset.get("corpus")
    return dataset, corpus


def _check_columns(dataset: Any, name: str, args: EmbeddingDistillConfig, corpus: Any) -> None:
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return
    missing = [c for c in PAIR_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{name} lacks the pair columns {missing} (has {columns}); read raw files with "
            "unime_hf.data.formats (read_mmeb_train, read_unime_v2_mined) to get the canonical layout."
        )
    mined = all(c in columns for c in MINED_COLUMNS)
    if args.loss in LISTWISE_LOSSES and not mined:
        raise ValueError(
            f"loss={args.loss!r} needs mined data with {list(MINED_COLUMNS)}, but {name} has only {columns}; mine "
            "hard negatives first (`unime-hf mine`) or use loss='info_nce' for plain pairs."
        )
    if mined and args.num_hard_negatives > 0 and corpus is None:
        raise ValueError(
            f"{name} is mined data whose hard negatives are corpus ids; pass `corpus=` (id, text, image) or a "
            "DatasetDict with 'train' and 'corpus' splits."
        )


def _zero_stage(trainer: Trainer) -> int | None:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return getattr(plugin, "zero_stage", None)


def _hyperparameters(trainer: EmbeddingDistillTrainer) -> dict[str, Any]:
    args = trainer.args
    values: dict[str, Any] = {
        "loss": args.loss,
        "loss_temperature": args.loss_temperature,
        "num_hard_negatives": args.num_hard_negatives,
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "max_steps": args.max_steps,
        "num_train_epochs": None if args.max_steps > 0 else args.num_train_epochs,
        "queries_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "grad_cache_chunk_size": args.grad_cache_chunk_size,
        "use_lora": args.use_lora,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "lora_target_modules": args.lora_target_modules or ("language model linear layers" if args.use_lora else None),
        "use_dora": args.use_dora,
        "bf16": args.bf16,
        "image_size": args.image_size,
        "max_length": args.max_length,
        "seed": args.seed,
        # Free keys: the card shows them as written.
        "Processes": args.world_size,
        "Weight decay": args.weight_decay,
        "Steps trained": trainer.state.global_step,
    }
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        values["Final training loss"] = round(losses[-1], 4)
    return values


def build_model_card(trainer: EmbeddingDistillTrainer) -> Any:
    """The model card (`huggingface_hub.ModelCard`, rendered with `unime_hf.hub.render_embedding_card`) of a
    training run: base model, data, loss and hyper-parameters."""
    from unime_hf.hub.model_card import render_embedding_card

    args = trainer.args
    config = getattr(_unime_model(trainer.accelerator.unwrap_model(trainer.model)), "config", None)
    return render_embedding_card(
        base_model=trainer.base_model_id,
        datasets=args.dataset_name,
        training=_hyperparameters(trainer),
        model_id=args.hub_model_id,
        model_name=Path(args.output_dir).name if not args.hub_model_id else None,
        embedding_dim=getattr(config, "hidden_size", None),
    )
