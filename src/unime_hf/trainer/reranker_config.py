# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Configuration of [`RerankerSFTTrainer`]: `trl.SFTConfig` plus the reranker LoRA, vision and data options."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from trl import SFTConfig

from unime_hf.scoring import JUDGE_PROMPT, check_prompt_template
from unime_hf.trainer.reranker_data import LISTWISE_PROMPT, check_listwise_template, check_row_ratios

logger = logging.getLogger(__name__)


@dataclass
class RerankerSFTConfig(SFTConfig):
    r"""Configuration of [`RerankerSFTTrainer`] (UniME-V2-Reranker, METHOD.md §4).

    Everything of [`trl.SFTConfig`] plus the fields below. Defaults follow the paper (Qwen2.5-VL-7B, LoRA r=128,
    alpha=256 on the language model, vision tower frozen, lr 2e-5 with a cosine schedule, 1 epoch), and the loss is on
    the answer tokens only.

    Parameters:
        use_lora (`bool`, *optional*, defaults to `True`):
            Train LoRA adapters on the language model; they are merged into the weights by the final `save_model`,
            which writes a plain generative checkpoint. `False` trains all weights (except a frozen vision tower).
        lora_r (`int`, *optional*, defaults to `128`):
            LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `256`):
            LoRA scaling numerator (the update is scaled by `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to `0.05`):
            Dropout on the LoRA input (the paper does not give one).
        lora_target_modules (`list[str]`, *optional*):
            Leaf names of the language model's linear layers to adapt (e.g. `["q_proj", "v_proj"]`); defaults to every
            linear layer of the language model. The vision tower and the LM head are never adapted.
        freeze_vision_tower (`bool`, *optional*, defaults to `True`):
            Keep the vision encoder (Qwen `visual`, LLaVA `vision_tower`) frozen. `False` trains all of its weights;
            under DeepSpeed ZeRO-2 that needs every batch of every process to hold an image (a text-only batch gives
            the tower no gradient), so keep it frozen for mixed data.
        list_size (`int`, *optional*, defaults to `4`):
            `x`: hard negatives in a listwise prompt (top `x` by judge score), so `x + 1` candidates with the positive.
            4 matches the paper's top-5 listwise reranking.
        pairwise_ratio (`float`, *optional*, defaults to `1.0`):
            Pairwise groups (a `Yes` row and a `No` row) per query when the trainer builds rows from mined data.
        listwise_ratio (`float`, *optional*, defaults to `1.0`):
            Listwise rows per query when the trainer builds rows from mined data; 0 trains pairwise only.
        random_negative_ratio (`float`, *optional*, defaults to `0.0`):
            Pairwise groups per query whose `No` row has a random negative (the positive of another mined query)
            instead of a mined hard one. Not in the paper; easy negatives that a small reranker learns from first
            (see [`~unime_hf.trainer.reranker_data.build_reranker_rows`]).
        negative_group_column (`str`, *optional*):
            Column of the mined rows (e.g. `dataset`) that bounds the random draws to queries with the same value.
        judge_prompt (`str`, *optional*, defaults to [`~unime_hf.scoring.JUDGE_PROMPT`]):
            Pairwise prompt, with `{query}` and `{candidate}`; the pointwise score at inference uses the same one.
        listwise_prompt (`str`, *optional*, defaults to [`~unime_hf.trainer.reranker_data.LISTWISE_PROMPT`]):
            Listwise prompt, with `{query}` and `{candidates}`.
        dataset_name (`str`, *optional*):
            Name of the training data, shown in the model card.
        embedding_model (`str`, *optional*):
            The embedding model whose candidates the reranker reorders, named in the model card.

    Defaults that differ from `SFTConfig`: `completion_only_loss=True` (the loss is on the answer: `Yes`, `No` or
    `(k)`, plus the chat template's end-of-turn tokens), `remove_unused_columns=False` (the collator reads `images`
    and the row metadata), `max_length=None` (truncation would cut image tokens or the answer), `lr_scheduler_type=
    "cosine"`, `bf16` on only where a bf16-capable GPU is present (TRL turns it on everywhere, which fails on a CPU).

    Example:

    ```python
    >>> from unime_hf.trainer.reranker_config import RerankerSFTConfig
    >>> args = RerankerSFTConfig("runs/reranker", lora_r=128, lora_alpha=256, learning_rate=2e-5, bf16=True)
    >>> args.freeze_vision_tower, args.completion_only_loss
    (True, True)
    ```
    """

    use_lora: bool = field(
        default=True,
        metadata={"help": "Train LoRA adapters on the language model (merged into the weights on the final save)."},
    )
    lora_r: int = field(default=128, metadata={"help": "LoRA rank (paper: 128)."})
    lora_alpha: int = field(
        default=256, metadata={"help": "LoRA alpha; the update is scaled by alpha / r (paper: 256)."}
    )
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, in [0, 1)."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Leaf names of language-model linear layers to adapt; default: all of them."},
    )
    freeze_vision_tower: bool = field(
        default=True, metadata={"help": "Keep the vision encoder frozen (paper: frozen)."}
    )
    list_size: int = field(
        default=4,
        metadata={"help": "Hard negatives per listwise prompt (x); the prompt lists x + 1 candidates."},
    )
    pairwise_ratio: float = field(
        default=1.0, metadata={"help": "Pairwise (Yes row + No row) groups per mined query; 0 turns them off."}
    )
    listwise_ratio: float = field(default=1.0, metadata={"help": "Listwise rows per mined query; 0 turns them off."})
    random_negative_ratio: float = field(
        default=0.0,
        metadata={"help": "Pairwise groups per mined query with a random negative (another query's positive)."},
    )
    negative_group_column: str | None = field(
        default=None,
        metadata={"help": "Mined-row column whose value bounds the random negatives (e.g. dataset); default: none."},
    )
    judge_prompt: str = field(
        default=JUDGE_PROMPT, metadata={"help": "Pairwise prompt with {query} and {candidate} (the judge prompt)."}
    )
    listwise_prompt: str = field(
        default=LISTWISE_PROMPT, metadata={"help": "Listwise prompt with {query} and {candidates}."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Training data name, for the model card."})
    embedding_model: str | None = field(
        default=None, metadata={"help": "Embedding model whose candidates are reranked, for the model card."}
    )

    # Defaults that differ from SFTConfig.
    completion_only_loss: bool | None = field(
        default=True,
        metadata={"help": "Loss on the answer tokens only; the reranker requires it (True or None)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every dataset column for the collator (images, row metadata)."}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Truncate sequences to this many tokens; None (default) never cuts image tokens."},
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule (paper: cosine)."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision; default: on where a bf16 GPU is present (and fp16 is off)."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = _parse_names(self.lora_target_modules)
        self._validate_reranker_options()
        if self.bf16 is None:
            # TRL turns bf16 on everywhere, which TrainingArguments rejects on a CPU-only machine.
            from transformers.utils import is_torch_bf16_gpu_available

            self.bf16 = not self.fp16 and is_torch_bf16_gpu_available()
        super().__post_init__()

    def _validate_reranker_options(self) -> None:
        if not isinstance(self.lora_r, int) or self.lora_r < 1:
            raise ValueError(f"`lora_r` must be an int >= 1, got {self.lora_r!r}; the paper uses 128.")
        if not self.lora_alpha > 0:
            raise ValueError(f"`lora_alpha` must be > 0, got {self.lora_alpha!r}; the paper uses 256.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}.")
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError(
                "`lora_target_modules` is empty; leave it unset to adapt every language-model linear layer."
            )
        if not isinstance(self.list_size, int) or self.list_size < 1:
            raise ValueError(f"`list_size` must be an int >= 1, got {self.list_size!r}; top-5 reranking uses 4.")
        check_row_ratios(
            {
                "pairwise_ratio": self.pairwise_ratio,
                "listwise_ratio": self.listwise_ratio,
                "random_negative_ratio": self.random_negative_ratio,
            }
        )
        check_prompt_template(self.judge_prompt)
        check_listwise_template(self.listwise_prompt)
        if self.completion_only_loss is False:
            raise ValueError(
                "`completion_only_loss=False` would train on the prompt (the candidates' texts and image tokens); the "
                "reranker learns the answer only. Leave it at True."
            )
        if self.packing or self.padding_free:
            raise ValueError(
                "`packing` and `padding_free` are not supported for vision rows; set both to False (the default)."
            )
        if self.max_length is not None:
            if self.max_length < 1:
                raise ValueError(f"`max_length` must be >= 1 or None, got {self.max_length!r}.")
            logger.warning(
                "max_length=%d truncates rows from the end: a longer row loses its answer (no loss) or image tokens "
                "(an error). Leave max_length=None unless every row is known to fit.",
                self.max_length,
            )


def _parse_names(value: str) -> list[str]:
    """`"q_proj,v_proj"` or a JSON list -> `["q_proj", "v_proj"]` (YAML and the command line pass strings)."""
    value = value.strip()
    if value.startswith("["):
        names = json.loads(value)
    else:
        names = [name.strip() for name in value.split(",")]
    return [name for name in names if name]
