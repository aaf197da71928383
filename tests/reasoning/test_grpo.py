"""EG-RL: GRPO steps on a tiny Reasoner with a tiny frozen Embedder, prompts from the shapes world, the script."""

from __future__ import annotations

import json

import pytest
import torch

from unime_hf.models.processing_unime import PROCESSOR_CLASSES
from unime_hf.reasoning.tcot import SHORT_TCOT_PROMPT


@pytest.fixture(scope="module")
def shapes_pairs(tmp_path_factory):
    """Two image queries of different prompt lengths (image -> caption, VQA) and two text queries (caption -> image)
    of a tiny shapes world: prompts that pad differently next to images in one batch."""
    from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world, load_shapes_train

    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_world(root, ShapesWorldConfig.preset("tiny"))
    train = load_shapes_train(root)["train"]
    image_queries = [
        next(i for i, row in enumerate(train) if "caption" in row["query_text"] and row["query_image"]),
        next(i for i, row in enumerate(train) if "question" in row["query_text"] and row["query_image"]),
    ]
    text_queries = [i for i, row in enumerate(train) if not row["query_image"] and row["pos_image"]][:2]
    return root, train.select(image_queries + text_queries)


def test_build_reasoner_dataset(shapes_pairs):
    from unime_hf.reasoning.grpo import build_reasoner_dataset

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    assert set(pairs.column_names) < set(prompts.column_names)
    assert [len(images) for images in prompts["images"]] == [1, 1, 0, 0]
    assert prompts[0]["images"][0].mode == "RGB"  # decoded to PIL on access
    first = prompts[0]["prompt"]
    assert first[0]["role"] == "user" and first[0]["content"].startswith("T-CoT for this query: Input: the image")
    assert "<|image_1|>" not in first[0]["content"]
    with pytest.raises(ValueError, match="lack the columns"):
        build_reasoner_dataset(pairs.remove_columns("pos_id"))
    with pytest.raises(ValueError, match="already have"):
        build_reasoner_dataset(prompts)


def _args(output_dir, **overrides):
    from unime_hf.reasoning.grpo import EmbedRLConfig

    values = {
        "per_device_train_batch_size": 8,  # 4 prompts x 2 generations: one batch mixes image and text prompts
        "num_generations": 2,
        "max_completion_length": 12,
        "max_steps": 2,
        "learning_rate": 5e-3,
        "outcome_top_n": 10,  # every positive is in the top n: the outcome reward is 0.5 x margin, never constant
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "dataloader_num_workers": 0,
    }
    values.update(overrides)
    return EmbedRLConfig(str(output_dir), **values)


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen3_vl"])  # Qwen3-VL: the paper's Reasoner architecture
def test_two_grpo_steps_train_the_reasoner_not_the_embedder(tiny_backbones, shapes_pairs, tmp_path, kind):
    from transformers import AutoModelForImageTextToText

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel
    from unime_hf.reasoning.grpo import EmbedRLTrainer, build_reasoner_dataset
    from unime_hf.reasoning.rewards import EmbedderDiscriminator

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    path = tiny_backbones[kind]
    reasoner = AutoModelForImageTextToText.from_pretrained(path)
    embedder = UniMEEmbeddingModel.from_backbone(path)
    reasoner_before = {n: p.detach().clone() for n, p in reasoner.named_parameters()}
    embedder_before = {n: p.detach().clone() for n, p in embedder.named_parameters()}

    trainer = EmbedRLTrainer(
        reasoner,
        embedder,
        args=_args(tmp_path),
        train_dataset=prompts,
        discriminator=EmbedderDiscriminator(embedder),
    )
    assert trainer.args.reward_weights == [0.05, 0.8, 0.2]
    assert trainer.reward_func_names == ["format_reward", "outcome_reward", "process_reward"]
    trainer.train()

    changed = [n for n, p in reasoner.named_parameters() if not torch.equal(p.detach(), reasoner_before[n])]
    assert changed, "two GRPO steps left every Reasoner parameter unchanged"
    assert any("language_model" in n for n in changed)
    for name, parameter in embedder.named_parameters():
        assert torch.equal(parameter.detach(), embedder_before[name]), name
        assert not parameter.requires_grad
    assert not embedder.training
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in embedder.parameters()}
    assert optimized & {id(p) for p in reasoner.parameters()}

    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2
    for entry in logged:
        for name in ("format_reward", "outcome_reward", "process_reward"):
            assert f"rewards/{name}/mean" in entry
        assert "outcome/share" in entry and "outcome/margin" in entry
        total = 0.05 * entry["rewards/format_reward/mean"] + 0.8 * entry["rewards/outcome_reward/mean"]
        assert entry["reward"] == pytest.approx(total + 0.2 * entry["rewards/process_reward/mean"], abs=1e-4)


def test_trainer_loads_paths_and_rejects_shared_weights(tiny_backbones, shapes_pairs, tmp_path):
    from transformers import AutoModelForImageTextToText

    from unime_hf.reasoning.grpo import EmbedRLTrainer, build_reasoner_dataset

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    path = tiny_backbones["qwen2_vl"]
    trainer = EmbedRLTrainer(path, path, args=_args(tmp_path, process_reward_weight=0.5), train_dataset=prompts)
    assert trainer.args.reward_weights == [0.05, 0.8]  # no discriminator: no process reward
    assert hasattr(trainer.processing_class, "prepare_items")  # the image-only UniME processor
    assert all(not p.requires_grad for p in trainer.embedder.parameters())

    reasoner = AutoModelForImageTextToText.from_pretrained(path)
    with pytest.raises(TypeError, match="encode"):
        EmbedRLTrainer(reasoner, reasoner, args=_args(tmp_path), train_dataset=prompts)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="cot_for_embedding"):
        _args(tmp_path, cot_for_embedding="thinking")
    with pytest.raises(ValueError, match="box_coords"):
        _args(tmp_path, box_coords="relative")
    with pytest.raises(ValueError, match=">= 0"):
        _args(tmp_path, outcome_reward_weight=-1.0)
    assert _args(tmp_path, embedder_init_kwargs='{"dtype": "float32"}').embedder_init_kwargs == {"dtype": "float32"}


def test_train_reasoner_script(shapes_pairs, tmp_path):
    import yaml

    from unime_hf.cli import main as cli_main

    root, _ = shapes_pairs
    config = {
        "reasoner_name_or_path": "tiny:qwen2_vl",
        "embedder_name_or_path": "tiny:qwen2_vl",
        "discriminator_name_or_path": "embedder",
        "train_file": str(root / "train.jsonl"),
        "output_dir": str(tmp_path / "reasoner"),
        "prompt_template": "short",
        "max_train_samples": 4,
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 8,
        "max_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
    }
    path = tmp_path / "reasoner.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert cli_main(["train-reasoner", "--config", str(path), "--learning_rate", "1e-3"]) == 0
    out = tmp_path / "reasoner"
    assert (out / "model.safetensors").exists() and (out / "processing_unime.py").exists()
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2_vl"
    card = (out / "README.md").read_text()
    assert "embed-rl" in card and "format, outcome" in card

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config, "no_such_option": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="no_such_option"):
        cli_main(["train-reasoner", "--config", str(bad)])


def test_too_few_prompts_per_process_for_in_batch_negatives(tiny_backbones, shapes_pairs, tmp_path):
    from unime_hf.reasoning.grpo import EmbedRLTrainer, build_reasoner_dataset

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    path = tiny_backbones["qwen2_vl"]
    with pytest.raises(ValueError, match="at least 2"):
        EmbedRLTrainer(path, path, args=_args(tmp_path, per_device_train_batch_size=2), train_dataset=prompts)


@pytest.mark.parametrize("name", ["reasoner_shapes.yaml", "reasoner_qwen3vl.yaml"])
def test_example_configs_parse(name):
    from pathlib import Path

    from unime_hf.scripts.train_reasoner import parse_args

    config = Path(__file__).resolve().parents[2] / "examples" / "configs" / name
    script_args, args = parse_args(["--config", str(config), "--bf16", "false", "--use_cpu", "true"])
    assert script_args.reasoner_name_or_path and script_args.embedder_name_or_path
    assert (args.format_reward_weight, args.outcome_reward_weight, args.process_reward_weight) == (0.05, 0.8, 0.2)
    assert args.outcome_scale == 0.5 and args.process_num_negatives == 4
    assert args.per_device_train_batch_size * args.steps_per_generation // args.num_generations >= 2


def test_plain_grpo_config_gets_embed_rl_defaults(tiny_backbones, shapes_pairs, tmp_path):
    from trl import GRPOConfig

    from unime_hf.reasoning.grpo import EmbedRLConfig, EmbedRLTrainer, build_reasoner_dataset

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    args = GRPOConfig(
        str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_generations=2,
        bf16=False,
        use_cpu=True,
        report_to="none",
        max_steps=1,
    )
    path = tiny_backbones["qwen2_vl"]
    trainer = EmbedRLTrainer(path, path, args=args, train_dataset=prompts)
    assert isinstance(trainer.args, EmbedRLConfig) and trainer.args.steps_per_generation == 2
    assert trainer.args.reward_weights == [0.05, 0.8] and trainer.rewards.outcome_scale == 0.5


@pytest.mark.parametrize("kind", ["qwen2_vl", "qwen3_vl"])
def test_image_token_types_line_up_with_left_padded_prompts(tiny_backbones, shapes_pairs, tmp_path, kind):
    from unime_hf.reasoning.grpo import EmbedRLTrainer, build_reasoner_dataset

    _, pairs = shapes_pairs
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)
    path = tiny_backbones[kind]
    trainer = EmbedRLTrainer(path, path, args=_args(tmp_path), train_dataset=prompts)
    assert type(trainer.processing_class).__name__ == PROCESSOR_CLASSES[kind].__name__  # image-only, no torchvision
    tokenizer = trainer.processing_class.tokenizer
    assert tokenizer.padding_side == "left"
    rows = [prompts[i] for i in range(len(prompts)) for _ in range(2)]
    batch = trainer._generate_and_score_completions(rows)
    prompt_ids = batch["prompt_ids"]
    image_tokens = prompt_ids == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert image_tokens.sum() > 0 and prompt_ids.shape[0] == 8
    assert torch.equal(batch["mm_token_type_ids"][:, : prompt_ids.shape[1]] == 1, image_tokens)
