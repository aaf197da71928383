# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""EG-RL on the shapes world: does the Reasoner's mean reward rise over its first GRPO steps?

Everything is tiny and runs on a CPU:

1. a tiny shapes world (48 training pairs: image->caption, caption->image, VQA, classification, grounding);
2. teacher T-CoTs read off the world's truth (an oracle Reasoner: keywords "colour shape", the 0-1000 boxes of the
   grid cells of the named objects, the answer = the positive's text, the query caption for caption->image, the
   crop's description for grounding);
3. the Embedder: a tiny random Qwen2-VL trained briefly with InfoNCE on (query + teacher T-CoT, positive) pairs
   (`EmbeddingDistillTrainer`, T-CoTs folded in with `attach_cot`), then frozen; its top-1 accuracy with and
   without the teacher T-CoT is printed, to show that the outcome reward is informative. By default
   (`--embedder-rows cot`) every training query carries its T-CoT, so the Embedder reads it (top-1 among the 48
   positives about 0.25 without the T-CoT, 0.85 with it) and the outcome reward depends on what the Reasoner writes.
   With `--embedder-rows both` (half the rows without T-CoT, the earlier default) the tiny Embedder ranks most
   queries from the query alone: the teacher T-CoT, an empty one and the Reasoner's samples then get about the same
   outcome reward (0.19 / 0.15 / 0.16 on the RL prompts), which leaves GRPO nothing to learn;
4. the Reasoner: a tiny random Qwen2-VL, warm-started with TRL's `SFTTrainer` on the teacher T-CoTs (500 steps:
   at temperature 1 it writes the format about 2/3 of the time and the right answer in some of its samples; after
   150 steps its answers were prompt-independent, so no sample was better than another for a reason GRPO could
   reinforce);
5. EG-RL: `EmbedRLTrainer` for `--steps` steps per seed on `--num-prompts` prompts (format + outcome + process
   rewards, weights 0.05 / 0.8 / 0.2; the process reward's discriminator is the Embedder itself,
   `EmbedderDiscriminator`, a stand-in for the paper's MLLM), and, per seed, a control run with learning rate 0 that
   samples the same prompts in the same order: its curve is what the reward does without learning. By default every
   step holds all 8 prompts (4 generations each), so each step ranks the same 8 targets and a run's own curve is not
   dominated by which prompts a step drew (with 4 of the 8 prompts per step, the batch-to-batch spread hid the rise).

It prints the reward of every step (total and per component), the mean of the first and last `--window` steps with
the ratio last/first of the total reward (the baseline being the run's own first steps), and the paired difference
learning minus control per block and over the last steps (with the standard error of the per-step differences), the
figure that separates learning from sampling noise.

    python benchmarks/eg_rl_shapes.py                  # 3 seeds x 40 steps (+ controls): about 7 min on 1 busy core
    python benchmarks/eg_rl_shapes.py --seeds 0 --steps 200 --json runs/eg_rl.json

Learning rates of 1e-3 and above break the format within 20-40 steps on this tiny Reasoner (format reward -> 0);
3e-4 (the default) learns.

The Embedder and the warm-started Reasoner are saved under `--out` (in folders named after their settings) and
reused by later runs in the same folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("benchmarks.eg_rl_shapes")

COMPONENTS = ("format_reward", "outcome_reward", "process_reward")


# ------------------------------------------------------------------------------------------------- teacher T-CoTs
def teacher_tcots(pairs: Any, world: Path) -> list[str]:
    """An oracle T-CoT for every pair, read off the shapes world's truth."""
    from unime_hf.data.shapes import COLOURS, SHAPES, ShapesTruth
    from unime_hf.reasoning.tcot import format_tcot

    truth = ShapesTruth.from_dir(world)
    phrase = re.compile(r"\b(" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")\b")

    def cell_box(cell: int, grid: int) -> list[int]:
        row, col = divmod(cell, grid)
        side = 1000 / grid
        return [round(col * side), round(row * side), round((col + 1) * side), round((row + 1) * side)]

    cots = []
    for row in pairs:
        if row["pos_image"] and "cropped" in row["pos_text"]:
            shape, colour, size = truth.crop(row["pos_image"])
            answer = f"a {size} {colour} {shape}"
        elif row["pos_image"]:
            answer = row["query_text"].split(": ", 1)[-1]  # the caption of a caption->image query
        else:
            answer = row["pos_text"]
        keywords = [" ".join(match) for match in phrase.findall(answer)][:3]
        boxes = []
        if row["query_image"]:
            scene = truth.scene(row["query_image"])
            named = [o for o in scene.objects if f"{o.colour} {o.shape}" in keywords]
            boxes = [cell_box(o.cell, scene.grid) for o in named][:2]
        cots.append(format_tcot(keywords=keywords, boxes=boxes, rethink="checked", answer=answer))
    return cots


# ------------------------------------------------------------------------------------------------------ Embedder
def train_embedder(
    pairs: Any, cots: list[str], backbone: str, out: Path, steps: int, seed: int, rows: str = "cot"
) -> Any:
    import datasets

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel
    from unime_hf.reasoning.tcot import attach_cot
    from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer

    with_cot = attach_cot(pairs.add_column("query_cot", cots))
    # rows="cot": every query carries its teacher T-CoT, so the Embedder reads the T-CoT (reasoning-driven embeddings)
    # and the outcome reward depends on what the Reasoner writes; rows="both": half the rows also without it (the
    # Embedder then ranks most queries without their T-CoT and the reward hardly depends on it)
    data = (with_cot if rows == "cot" else datasets.concatenate_datasets([with_cot, pairs])).shuffle(seed=seed)
    folder = out / f"embedder-{steps}-{rows}"
    final = folder / "final"
    if (final / "config.json").exists():  # reuse the Embedder of an earlier run in the same folder
        return UniMEEmbeddingModel.from_pretrained(final).eval()
    model = UniMEEmbeddingModel.from_backbone(backbone)
    args = EmbeddingDistillConfig(
        str(folder),
        loss="info_nce",
        loss_temperature=0.05,
        per_device_train_batch_size=16,
        max_steps=steps,
        learning_rate=2e-3,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10),
        seed=seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, steps // 5),
        dataloader_num_workers=0,
    )
    trainer = EmbeddingDistillTrainer(model, args=args, train_dataset=data)
    trainer.train()
    trainer.save_model(str(final))
    return UniMEEmbeddingModel.from_pretrained(final).eval()


def embedder_accuracy(embedder: Any, pairs: Any, cots: list[str]) -> dict[str, float]:
    """Top-1 accuracy of each query (with and without its teacher T-CoT) among all positives of the pairs."""
    import torch

    targets = [{"text": row["pos_text"], "image": row["pos_image"]} for row in pairs]
    queries = [{"text": row["query_text"], "image": row["query_image"]} for row in pairs]
    target_embeddings = embedder.encode(targets)
    gold = torch.tensor([pairs["pos_id"].index(pid) for pid in pairs["pos_id"]])
    result = {}
    for name, items in (("query", queries), ("query+teacher_tcot", [{**q, "cot": c} for q, c in zip(queries, cots)])):
        top = (embedder.encode(items) @ target_embeddings.T).argmax(dim=1)
        result[name] = float((top == gold).float().mean())
    return result


# ------------------------------------------------------------------------------------------------------ Reasoner
def warm_start_reasoner(prompts: Any, cots: list[str], backbone: str, out: Path, steps: int, seed: int) -> str:
    import datasets
    from transformers import AutoModelForImageTextToText
    from trl import SFTConfig, SFTTrainer

    from unime_hf.models.processing_unime import load_processor, save_processor

    path = out / f"reasoner-sft-{steps}" / "final"
    if (path / "config.json").exists():  # reuse the warm start of an earlier run in the same folder
        return str(path)
    messages = []
    for prompt, images, cot in zip(prompts["prompt"], prompts["images"], cots):
        user = [{"type": "image"}] * len(images) + [{"type": "text", "text": prompt[-1]["content"]}]
        messages.append(
            [{"role": "user", "content": user}, {"role": "assistant", "content": [{"type": "text", "text": cot}]}]
        )
    data = datasets.Dataset.from_dict({"messages": messages, "images": prompts["images"]})
    processor = load_processor(backbone)
    model = AutoModelForImageTextToText.from_pretrained(backbone)
    args = SFTConfig(
        str(path.parent),
        per_device_train_batch_size=8,
        max_steps=steps,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        assistant_only_loss=True,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, steps // 5),
        seed=seed,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    trainer.save_model(str(path))
    save_processor(processor, path)
    return str(path)


# --------------------------------------------------------------------------------------------------------- EG-RL
def run_eg_rl(
    reasoner: str, embedder: Any, prompts: Any, out: Path, *, seed: int, steps: int, learning_rate: float, opts: Any
) -> list[dict[str, float]]:
    from unime_hf.reasoning.grpo import EmbedRLConfig, EmbedRLTrainer
    from unime_hf.reasoning.rewards import EmbedderDiscriminator

    args = EmbedRLConfig(
        str(out / f"eg-rl-seed{seed}-lr{learning_rate:g}"),
        per_device_train_batch_size=opts.prompts_per_step * opts.num_generations,
        num_generations=opts.num_generations,
        max_completion_length=opts.max_completion_length,
        temperature=opts.temperature,
        beta=opts.beta,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        max_steps=steps,
        outcome_top_n=opts.top_n,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        dataloader_num_workers=0,
    )
    recorder = FormatErrorRecorder()
    args.reward_weights = [0.05, 0.8, 0.2, 0.0]  # the recorder only watches
    trainer = EmbedRLTrainer(
        reasoner,
        embedder,
        args=args,
        train_dataset=prompts,
        discriminator=EmbedderDiscriminator(embedder),
        reward_funcs=[recorder],
    )
    trainer.train()
    keys = ("reward", *(f"rewards/{c}/mean" for c in COMPONENTS), "outcome/share", "outcome/margin")
    curve = [
        {key: entry[key] for key in keys if key in entry} for entry in trainer.state.log_history if "reward" in entry
    ]
    for step, entry in zip(curve, recorder.steps):
        step.update(entry)
    return curve


class FormatErrorRecorder:
    """A zero-weight reward function that records, per step, the mean completion length in characters, the most
    frequent format error and one completion."""

    __name__ = "format_errors"

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def __call__(self, prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
        from collections import Counter

        from unime_hf.reasoning.rewards import completion_text
        from unime_hf.reasoning.tcot import parse_tcot

        texts = [completion_text(c) for c in completions]
        errors: Counter[str] = Counter()
        for text in texts:
            errors.update({re.sub(r"\[\d+\]", "[k]", e.split(":")[0]) for e in parse_tcot(text).errors})
        top = errors.most_common(1)
        self.steps.append(
            {
                "chars": statistics.fmean(len(t) for t in texts),
                "top_error": f"{top[0][0]} ({top[0][1]}/{len(texts)})" if top else "",
                "sample": texts[0],
            }
        )
        return [0.0] * len(texts)


def summarize(curve: list[dict[str, float]], window: int) -> dict[str, dict[str, float]]:
    first, last = curve[:window], curve[-window:]
    summary = {}
    for key in ("reward", *(f"rewards/{c}/mean" for c in COMPONENTS)):
        a = statistics.fmean(step[key] for step in first)
        b = statistics.fmean(step[key] for step in last)
        summary[key] = {"first": a, "last": b, "change": b - a}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/eg_rl_shapes", help="Working folder (world, models).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40, help="GRPO steps per run.")
    parser.add_argument("--window", type=int, default=10, help="Steps averaged at the start and the end.")
    parser.add_argument("--embedder-steps", type=int, default=200)
    parser.add_argument("--sft-steps", type=int, default=500)
    parser.add_argument(
        "--num-prompts", type=int, default=8, help="GRPO on this many prompts drawn from the pairs (seed 0)."
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=8, help="With --num-prompts 8: every step ranks the same 8 targets."
    )
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--top-n", type=int, default=1, help="n of the outcome share (8 targets a batch).")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature of the GRPO rollouts.")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient of GRPO (TRL's default 0).")
    parser.add_argument(
        "--embedder-rows",
        choices=("cot", "both"),
        default="cot",
        help="Embedder training rows: queries with their teacher T-CoT ('cot'), or also without it ('both').",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runs are tiny; 1 is fastest).")
    parser.add_argument("--no-control", action="store_true", help="Skip the learning-rate-0 control runs.")
    parser.add_argument("--json", default=None, help="Write every figure to this file.")
    opts = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for noisy in ("transformers", "trl", "datasets", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world, load_shapes_train
    from unime_hf.reasoning.grpo import build_reasoner_dataset
    from unime_hf.reasoning.tcot import SHORT_TCOT_PROMPT
    from unime_hf.testing.tiny import build_tiny_backbone

    torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    start = time.perf_counter()
    world = out / "world"
    generate_shapes_world(world, ShapesWorldConfig.preset("tiny"))
    pairs = load_shapes_train(world)["train"]
    cots = teacher_tcots(pairs, world)
    prompts = build_reasoner_dataset(pairs, template=SHORT_TCOT_PROMPT)

    embedder_backbone = str(build_tiny_backbone("qwen2_vl", out / "embedder-backbone", seed=1))
    embedder = train_embedder(
        pairs, cots, embedder_backbone, out, opts.embedder_steps, seed=0, rows=opts.embedder_rows
    )
    accuracy = embedder_accuracy(embedder, pairs, cots)
    logger.info("Embedder top-1 among the %d positives: %s", len(pairs), accuracy)

    reasoner_backbone = str(build_tiny_backbone("qwen2_vl", out / "reasoner-backbone", seed=0))
    reasoner = warm_start_reasoner(prompts, cots, reasoner_backbone, out, opts.sft_steps, seed=0)
    setup_seconds = time.perf_counter() - start

    rl_prompts = prompts.shuffle(seed=0).select(range(min(opts.num_prompts, len(prompts))))
    runs: dict[str, list[dict[str, float]]] = {}
    rates = [opts.learning_rate] + ([] if opts.no_control else [0.0])
    for seed in opts.seeds:
        for rate in rates:
            name = f"seed{seed}" + ("" if rate else "-control")
            began = time.perf_counter()
            runs[name] = run_eg_rl(
                reasoner, embedder, rl_prompts, out, seed=seed, steps=opts.steps, learning_rate=rate, opts=opts
            )
            logger.info("%s: %d steps in %.0f s", name, len(runs[name]), time.perf_counter() - began)

    header = f"{'run':<16}{'step':>5}{'reward':>9}{'format':>9}{'outcome':>9}{'process':>9}{'share':>8}{'chars':>7}"
    header += "  most frequent format error"
    lines = [header]
    for name, curve in runs.items():
        for step, entry in enumerate(curve, start=1):
            values = [entry["reward"], *(entry.get(f"rewards/{c}/mean", float("nan")) for c in COMPONENTS)]
            numbers = "".join(f"{v:>9.4f}" for v in values)
            share = entry.get("outcome/share", float("nan"))
            lines.append(
                f"{name:<16}{step:>5}{numbers}{share:>8.3f}{entry.get('chars', 0):>7.0f}  {entry.get('top_error', '')}"
            )
    print("\n".join(lines))

    summaries = {name: summarize(curve, opts.window) for name, curve in runs.items()}
    print(f"\nmean over the first / last {opts.window} steps (change):")
    for name, summary in summaries.items():
        parts = [
            f"{key.split('/')[-2] if '/' in key else key} {v['first']:.4f} -> {v['last']:.4f} ({v['change']:+.4f})"
            for key, v in summary.items()
        ]
        ratio = summary["reward"]["last"] / summary["reward"]["first"] if summary["reward"]["first"] else float("nan")
        print(f"{name:<16} " + "; ".join(parts) + f"; total last/first = {ratio:.2f}x")
    paired = {}
    for seed in opts.seeds:
        rl, control = runs.get(f"seed{seed}"), runs.get(f"seed{seed}-control")
        if rl and control:
            # same prompts in the same order: the per-step difference removes the batch-to-batch spread
            last = range(len(rl) - opts.window, len(rl))
            paired[f"seed{seed}"] = {
                key: statistics.fmean(rl[i][key] - control[i][key] for i in last)
                for key in ("reward", *(f"rewards/{c}/mean" for c in COMPONENTS))
            }
            diffs = [rl[i]["reward"] - control[i]["reward"] for i in last]
            spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
            paired[f"seed{seed}"]["reward_standard_error"] = spread
            paired[f"seed{seed}"]["reward_steps_positive"] = sum(d > 0 for d in diffs)
    blocks = {}
    for seed in opts.seeds:
        rl, control = runs.get(f"seed{seed}"), runs.get(f"seed{seed}-control")
        if rl and control:
            blocks[f"seed{seed}"] = {
                key: [
                    statistics.fmean(
                        a[key] - b[key] for a, b in zip(rl[i : i + opts.window], control[i : i + opts.window])
                    )
                    for i in range(0, len(rl), opts.window)
                ]
                for key in ("reward", *(f"rewards/{c}/mean" for c in COMPONENTS))
            }
    if blocks:
        print(f"\nlearning minus control per block of {opts.window} steps (same prompts):")
        for name, values in blocks.items():
            for key, diffs in values.items():
                label = key.split("/")[-2] if "/" in key else key
                print(f"{name:<8}{label:<16}" + " ".join(f"{d:+.3f}" for d in diffs))
    if paired:
        print(f"\nlearning minus control, mean over the last {opts.window} steps (same prompts):")
        for name, values in paired.items():
            keys = ("reward", *(f"rewards/{c}/mean" for c in COMPONENTS))
            print(
                f"{name:<16} reward {values['reward']:+.4f} +- {values['reward_standard_error']:.4f} (standard "
                f"error of the {opts.window} per-step differences; {values['reward_steps_positive']}/{opts.window} "
                "steps positive); " + "; ".join(f"{key.split('/')[-2]} {values[key]:+.4f}" for key in keys[1:])
            )
        rewards = [values["reward"] for values in paired.values()]
        print(f"mean over the seeds: reward {statistics.fmean(rewards):+.4f}")
    for name, curve in runs.items():
        print(f"\n{name}, a completion of the last step:\n{curve[-1].get('sample', '')}")
    print(f"\nEmbedder top-1: {accuracy}; setup {setup_seconds:.0f} s, total {time.perf_counter() - start:.0f} s")
    if opts.json:
        Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
        report = {
            "options": vars(opts),
            "embedder_top1": accuracy,
            "runs": runs,
            "summaries": summaries,
            "learning_minus_control": paired,
            "learning_minus_control_blocks": blocks,
        }
        Path(opts.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
