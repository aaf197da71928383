"""EmbeddingDistillConfig: defaults from the paper and validation errors that say the fix."""

from __future__ import annotations

import pytest

from unime_hf.trainer.embedding_config import EmbeddingDistillConfig


def test_defaults(tmp_path):
    args = EmbeddingDistillConfig(str(tmp_path))
    assert (args.loss, args.loss_temperature, args.num_hard_negatives) == ("symmetric_kl", 0.02, 8)
    assert (args.lora_r, args.lora_alpha, args.lora_dropout, args.use_dora) == (16, 64, 0.1, False)
    assert args.grad_cache_chunk_size is None and args.remove_unused_columns is False
    assert '"loss_temperature": 0.02' in args.to_json_string()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "contrastive"}, "`loss` must be one of"),
        ({"loss_temperature": 0.0}, "the paper uses 0.02"),
        ({"loss_temperature": float("nan")}, "finite number > 0"),
        ({"num_hard_negatives": -1}, "int >= 0"),
        ({"num_hard_negatives": 0}, "use `loss='info_nce'`"),
        ({"loss": "hard_negative_ce", "num_hard_negatives": 0}, "must be >= 1"),
        ({"grad_cache_chunk_size": 0}, "GradCache off"),
        ({"max_length": 0}, "no truncation"),
        ({"image_size": 0}, "672 for Qwen2-VL"),
        ({"image_resize": "crop"}, "`image_resize` must be one of"),
        ({"lora_r": 0}, "`lora_r` must be >= 1"),
        ({"lora_alpha": 0}, "`lora_alpha` must be > 0"),
        ({"lora_dropout": 1.0}, r"in \[0, 1\)"),
        ({"use_dora": True}, "needs `use_lora=True`"),
        ({"lora_target_modules": "q_proj"}, "list of layer names"),
        ({"model_init_kwargs": "{dtype: bf16}"}, "JSON object string"),
    ],
)
def test_validation_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingDistillConfig(str(tmp_path), **kwargs)


def test_info_nce_allows_pairs_and_json_kwargs(tmp_path):
    args = EmbeddingDistillConfig(
        str(tmp_path), loss="info_nce", num_hard_negatives=0, model_init_kwargs='{"dtype": "float32"}'
    )
    assert args.model_init_kwargs == {"dtype": "float32"}
