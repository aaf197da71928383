"""EmbeddingDistillTrainer on a tiny Qwen2-VL backbone: training changes the right parameters, the loss falls,
gradient accumulation and GradCache give the gradients they should, runs resume, and the saved checkpoint loads."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoProcessor, TrainerCallback

from unime_hf.models.modeling_unime import UniMEEmbeddingModel
from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer
from unime_hf.trainer.lora import is_peft_model

PROBE = ["a red square at the top", "Find the item number 3"]


class GradientCapture(TrainerCallback):
    """Keeps the gradients of the first optimizer step (clipping off: `max_grad_norm=0`)."""

    def __init__(self):
        self.gradients: dict[str, torch.Tensor] | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.gradients is None:
            self.gradients = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def make_trainer(backbone, output_dir, train_dataset, corpus=None, callbacks=None, **overrides):
    options = {
        "max_steps": 5,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "num_hard_negatives": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "train_sampling_strategy": "sequential",
    }
    options.update(overrides)
    args = EmbeddingDistillConfig(str(output_dir), **options)
    return EmbeddingDistillTrainer(
        backbone, args=args, train_dataset=train_dataset, corpus=corpus, callbacks=callbacks
    )


def first_step_gradients(backbone, output_dir, dataset, corpus=None, **overrides) -> dict[str, torch.Tensor]:
    capture = GradientCapture()
    trainer = make_trainer(
        backbone, output_dir, dataset, corpus, callbacks=[capture], max_steps=1, max_grad_norm=0.0, **overrides
    )
    trainer.train()
    return capture.gradients


def assert_same_gradients(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tolerance: float = 1e-5):
    assert got.keys() == want.keys() and got
    for name in want:
        scale = max(want[name].abs().max().item(), 1.0)
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=tolerance * scale, msg=name)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_full_training_changes_every_trained_parameter(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    trainer = make_trainer(backbone, tmp_path, mined, corpus)
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    assert trainer.state.global_step == 5
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"loss_symmetric_kl", "similarity/positive", "judge_score/positive"} <= set(logged[0])
    assert logged[0]["judge_score/positive"] == pytest.approx(0.9)


def test_loss_falls_on_a_repeated_batch(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    trainer = make_trainer(backbone, tmp_path, mined.select(range(4)), corpus, max_steps=8)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0]


def test_lora_trains_adapters_only_and_saves_a_merged_checkpoint(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    trainer = make_trainer(backbone, tmp_path / "run", mined, corpus, use_lora=True, lora_dropout=0.0)
    assert is_peft_model(trainer.model)
    lora_names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert lora_names and all("lora_" in n and ".language_model." in n for n in lora_names)
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == set(lora_names)  # base weights and the whole vision tower are untouched

    output = tmp_path / "final"
    trainer.save_model(str(output))
    with safe_open(output / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert not any("lora_" in key or "base_layer" in key for key in keys)
    for name in ("config.json", "modeling_unime.py", "processor_config.json", "modules.json", "README.md"):
        assert (output / name).is_file(), name
    card = (output / "README.md").read_text()
    assert backbone in card and "symmetric KL" in card and "| LoRA r | 16 |" in card

    loaded = AutoModel.from_pretrained(str(output), trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(str(output), trust_remote_code=True)
    image = mined[1]["query_image"]
    items = [*PROBE, {"text": "<|image_1|>\nRepresent the given image.", "image": image}]
    in_memory = trainer.model.encode(items, processor=trainer.processing_class)
    torch.testing.assert_close(loaded.encode(items, processor=processor), in_memory, rtol=0, atol=1e-5)
    # The merge changed the weights: the checkpoint is not the untrained backbone.
    untrained = UniMEEmbeddingModel.from_backbone(backbone)
    assert not torch.allclose(untrained.encode(items, processor=processor), in_memory, atol=1e-4)


def test_dora_merges_on_save(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    trainer = make_trainer(backbone, tmp_path / "run", mined, corpus, max_steps=2, use_lora=True, use_dora=True)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    loaded = AutoModel.from_pretrained(str(tmp_path / "final"), trust_remote_code=True)
    expected = trainer.model.encode(PROBE, processor=trainer.processing_class)
    torch.testing.assert_close(loaded.encode(PROBE), expected, rtol=0, atol=1e-5)


def test_lora_leaves_a_vision_tower_with_same_named_layers_alone(tiny_backbones, tmp_path):
    # SigLIP's attention has q_proj/k_proj/v_proj like the language model: the targets must not reach it.
    args = EmbeddingDistillConfig(str(tmp_path), use_lora=True, lora_target_modules=["q_proj", "v_proj"], use_cpu=True)
    model = EmbeddingDistillTrainer(tiny_backbones["llava_onevision"], args=args).model
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted and all(".language_model." in n for n in adapted)
    assert len(adapted) == 2 * model.get_base_model().config.backbone_config.text_config.num_hidden_layers


def test_gradient_accumulation_matches_the_full_batch_for_the_soft_label_loss(backbone, synthetic_data, tmp_path):
    # symmetric KL is a mean of per-query terms: 2 micro-batches of 2 give exactly the gradient of the batch of 4.
    mined, corpus = synthetic_data
    data = mined.select(range(4))
    full = first_step_gradients(backbone, tmp_path / "a", data, corpus, per_device_train_batch_size=4)
    accumulated = first_step_gradients(
        backbone, tmp_path / "b", data, corpus, per_device_train_batch_size=2, gradient_accumulation_steps=2
    )
    assert_same_gradients(accumulated, full)


def test_gradient_accumulation_with_info_nce_averages_the_micro_batches(backbone, synthetic_data, tmp_path):
    # InfoNCE's negatives are the batch: a micro-batch of 2 sees 1 in-batch negative per query, the batch of 4 sees 3,
    # so accumulation cannot give the batch-4 gradient. What it must give is the mean of the micro-batch gradients.
    mined, corpus = synthetic_data
    data = mined.select(range(4))
    options = {"loss": "info_nce", "num_hard_negatives": 2}
    accumulated = first_step_gradients(
        backbone, tmp_path / "a", data, corpus, per_device_train_batch_size=2, gradient_accumulation_steps=2, **options
    )
    reference = make_trainer(backbone, tmp_path / "b", data, corpus, **options)
    model = reference.model
    model.train()
    model.zero_grad()
    for rows in ([data[0], data[1]], [data[2], data[3]]):
        (reference.compute_loss(model, reference.data_collator(rows)) / 2).backward()
    micro_mean = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    assert_same_gradients(accumulated, micro_mean)

    model.zero_grad()
    reference.compute_loss(model, reference.data_collator([data[i] for i in range(4)])).backward()
    full = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any(not torch.allclose(full[n], micro_mean[n], atol=1e-4) for n in full)


@pytest.mark.parametrize("loss", ["symmetric_kl", "info_nce"])
def test_grad_cache_gives_the_plain_gradients(backbone, synthetic_data, tmp_path, loss):
    mined, corpus = synthetic_data
    data = mined.select(range(4))
    plain = first_step_gradients(backbone, tmp_path / "a", data, corpus, loss=loss)
    cached = first_step_gradients(backbone, tmp_path / "b", data, corpus, loss=loss, grad_cache_chunk_size=3)
    assert_same_gradients(cached, plain)


def test_grad_cache_with_gradient_accumulation(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    data = mined.select(range(4))
    options = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}
    plain = first_step_gradients(backbone, tmp_path / "a", data, corpus, **options)
    cached = first_step_gradients(backbone, tmp_path / "b", data, corpus, grad_cache_chunk_size=2, **options)
    assert_same_gradients(cached, plain)


def test_resumed_run_continues_from_its_checkpoint(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    options = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "train_sampling_strategy": "random"}
    straight = make_trainer(backbone, tmp_path / "straight", mined, corpus, **options)
    straight.train()
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert "auto_map" in json.loads((checkpoint / "processor_config.json").read_text())

    resumed = make_trainer(backbone, tmp_path / "resumed", mined, corpus, **options)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    final, again = snapshot(straight.model), snapshot(resumed.model)
    for name in final:
        torch.testing.assert_close(again[name], final[name], rtol=0, atol=1e-6, msg=name)


def test_info_nce_on_plain_pairs_and_evaluation(backbone, synthetic_data, tmp_path):
    mined, _ = synthetic_data
    pairs = mined.remove_columns(["pos_score", "hard_negative_ids", "hard_negative_scores"])
    trainer = make_trainer(backbone, tmp_path, pairs, None, max_steps=2, loss="info_nce")
    trainer.train()
    metrics = trainer.evaluate(pairs.select(range(4)))
    assert {"eval_loss", "eval_loss_info_nce", "eval_accuracy"} <= set(metrics)
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_loss_info_nce"], rel=1e-5)


def test_data_errors_say_the_fix(backbone, synthetic_data, tmp_path):
    mined, corpus = synthetic_data
    pairs = mined.remove_columns(["pos_score", "hard_negative_ids", "hard_negative_scores"])
    with pytest.raises(ValueError, match="use loss='info_nce' for plain pairs"):
        make_trainer(backbone, tmp_path, pairs, corpus)
    with pytest.raises(ValueError, match="pass `corpus=`"):
        make_trainer(backbone, tmp_path, mined, None)
    with pytest.raises(ValueError, match="lacks the pair columns"):
        make_trainer(backbone, tmp_path, corpus, corpus)


def test_plain_training_arguments_and_gradient_checkpointing_with_lora(backbone, synthetic_data, tmp_path):
    from transformers import TrainingArguments

    mined, corpus = synthetic_data
    plain = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", max_steps=1, learning_rate=1e-2)
    trainer = EmbeddingDistillTrainer(backbone, args=plain, train_dataset=mined.select(range(2)), corpus=corpus)
    assert isinstance(trainer.args, EmbeddingDistillConfig) and trainer.args.learning_rate == 1e-2

    trainer = make_trainer(
        backbone, tmp_path, mined.select(range(4)), corpus, max_steps=1, use_lora=True, gradient_checkpointing=True
    )
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    assert any("lora_B" in n and not torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("loss", ["js", "hard_negative_ce"])
def test_other_listwise_losses_train(backbone, synthetic_data, tmp_path, loss):
    mined, corpus = synthetic_data
    trainer = make_trainer(backbone, tmp_path, mined.select(range(4)), corpus, max_steps=1, loss=loss)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert logged[f"loss_{loss}"] == pytest.approx(logged["loss"], rel=1e-3) and logged["loss"] > 0
