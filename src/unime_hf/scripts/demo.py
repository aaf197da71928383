"""`unime-hf demo`: the whole UniME-V2 pipeline on the shapes world with tiny backbones trained from scratch.

1. the shapes world (generated offline) and one random tiny Qwen2-VL init shared by every model below;
2. per seed, a base embedder trained with InfoNCE (in-batch negatives) from that init: the tiny stand-in for the
   pretrained VLM the paper starts from (UniME-V2's loss has no in-batch negatives, so from a random init it never
   learns coarse content); the seed-0 base is the retrieval model;
3. a stand-in judge: a tiny VLM (warm-started from the seed-0 InfoNCE weights) trained with pairwise Yes/No SFT on
   retrieved (query, candidate) pairs of other queries, labelled by the world's truth (false negatives are labelled
   Yes). It stands in for the paper's Qwen2.5-VL-7B; it is not an MLLM, and the output says so (`--judge truth`
   uses the world's truth itself);
4. mining: retrieval (top-k), the judge's P(Yes), the paper's false-negative filter and interval sampling;
5. per seed, each variant fine-tunes that seed's base for the same steps and batch: InfoNCE (the VLM2Vec baseline,
   continuing on the pairs), the hard-labels ablation (cross-entropy over the positive and the judge-mined hard
   negatives) and UniME-V2 (symmetric KL on the judge's scores);
6. the reranker (pairwise + listwise SFT on the mined rows, from the random init: starting it from the base measured
   no better, README), reranking the UniME-V2 embedders' top-k;
7. evaluation: MMEB-style P@1 over the world's eval sets (IND, held-out OOD, overall), gallery R@1 both ways and
   compositional accuracy; a Table-4-shaped table with mean ± std over seeds (`table.md`, `results.json`), plots
   (`plots/`), checkpoints with model cards (load with `AutoModel` and `SentenceTransformer`, trust_remote_code).

```bash
unime-hf demo --out runs/demo            # the full demo (make demo)
unime-hf demo --out /tmp/demo --quick    # a tiny world, few steps, one seed: the test suite's smoke run
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from unime_hf.data.shapes.config import PRESETS
from unime_hf.scripts.demo_steps import JUDGE_NOTICE, Budget, mean_std, stage, summarize

logger = logging.getLogger("unime_hf.demo")

# Table rows in the order of the paper's Table 4, then the reranker.
VARIANTS: dict[str, tuple[str, str]] = {
    "infonce": ("InfoNCE (VLM2Vec-style)", "info_nce"),
    "hard_labels": ("+ judge hard negatives (hard labels)", "hard_negative_ce"),
    "unime_v2": ("+ soft scores (UniME-V2)", "symmetric_kl"),
}
RERANKER_ROW = "+ reranker (UniME-V2 top-k reranked)"
COLUMNS = (
    ("overall", "MMEB-style P@1"),
    ("ind", "IND"),
    ("ood", "OOD (held-out)"),
    ("t2i_r@1", "t2i R@1"),
    ("i2t_r@1", "i2t R@1"),
    ("compositional", "Compositional acc."),
)

# Full demo and --quick settings; any flag given on the command line wins.
FULL = {
    "preset": "small",
    "seeds": [0, 1, 2],
    "hidden_size": 128,
    "vision_hidden_size": 64,
    "steps": 80,
    "finetune_steps": 40,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "mine_queries": 800,
    "mine_top_k": 20,
    "mine_interval": 2,
    "judge_queries": 400,
    "judge_steps": 60,
    "reranker_steps": 60,
    "generative_batch_size": 16,
    "rerank_top_k": 5,
}
QUICK = {
    "preset": "tiny",
    "seeds": [0],
    "hidden_size": 32,
    "vision_hidden_size": 32,
    "steps": 4,
    "finetune_steps": 2,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "mine_queries": 24,
    "mine_top_k": 8,
    "mine_interval": 1,
    "judge_queries": 12,
    "judge_steps": 4,
    "reranker_steps": 4,
    "generative_batch_size": 8,
    "rerank_top_k": 3,
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unime-hf demo", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="Output folder (world, checkpoints, table, plots).")
    parser.add_argument("--quick", action="store_true", help="Tiny world, few steps, one seed (about a minute).")
    parser.add_argument("--preset", choices=list(PRESETS), help="Shapes world (size and vocabulary).")
    parser.add_argument(
        "--world_overrides",
        type=json.loads,
        default=None,
        help="ShapesWorldConfig fields as JSON, e.g. '{\"seed\": 1}'",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="Training seeds (the table reports mean ± std).")
    parser.add_argument("--hidden_size", type=int, help="Hidden size of the tiny Qwen2-VL init.")
    parser.add_argument("--vision_hidden_size", type=int, help="Width of the tiny Qwen2-VL init's vision encoder.")
    parser.add_argument("--steps", type=int, help="InfoNCE steps of the base embedder every variant starts from.")
    parser.add_argument("--finetune_steps", type=int, help="Training steps of every embedding variant on the base.")
    parser.add_argument("--batch_size", type=int, help="Queries per step of every embedding variant.")
    parser.add_argument("--learning_rate", type=float, help="Learning rate of every embedding variant.")
    parser.add_argument("--temperature", type=float, default=0.02, help="Loss temperature of every embedding variant.")
    parser.add_argument("--mine_queries", type=int, help="Training queries mined (the listwise variants' data).")
    parser.add_argument("--mine_top_k", type=int, help="Candidates retrieved per mined query.")
    parser.add_argument("--mine_interval", type=int, help="Interval of the cyclic sampling (paper: 5 of 50).")
    parser.add_argument("--judge_queries", type=int, help="Queries whose candidates train the stand-in judge.")
    parser.add_argument("--judge_steps", type=int, help="Training steps of the stand-in judge.")
    parser.add_argument("--reranker_steps", type=int, help="Training steps of the reranker.")
    parser.add_argument("--generative_batch_size", type=int, help="Batch of the judge and reranker training.")
    parser.add_argument("--rerank_top_k", type=int, help="Embedding top-k reranked per eval query.")
    parser.add_argument("--rerank_mode", default="pointwise", choices=["pointwise", "listwise"])
    parser.add_argument(
        "--judge",
        default="tiny_vlm",
        choices=["tiny_vlm", "truth"],
        help="tiny_vlm: a tiny VLM trained on the world's truth (stand-in for an MLLM); truth: the world's truth.",
    )
    parser.add_argument(
        "--infonce_only", action="store_true", help="Only the InfoNCE baseline (issue 3's measurement): no mining."
    )
    parser.add_argument("--eval_batch_size", type=int, default=64, help="Items per forward pass in evaluation.")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is several times faster on a shared, busy CPU)."
    )
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the full or the quick settings."""
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.world_overrides is None:
        args.world_overrides = {}
    return args


def format_table(rows: dict[str, dict[str, list[float | None]]], seeds: list[int]) -> str:
    """Markdown table: one row per variant, `mean ± std` (in %) over seeds per column."""
    header = "| Model | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS)]
    for name, values in rows.items():
        cells = []
        for key, _ in COLUMNS:
            mean, std = mean_std(values.get(key, []))
            cells.append("—" if mean is None else f"{100 * mean:.1f} ± {100 * std:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Mean ± sample std over seeds {seeds} (percent). The reranker row reranks each UniME-V2 embedder's top-k on "
        "the MMEB-style sets only; retrieval and compositional numbers are the embedders' own."
    )
    return "\n".join(lines)


TRUTH_NOTICE = "judge: the world's truth (P(Yes) = 1 for a candidate that meets the query, else 0), not an MLLM"


def judge_notice(args: argparse.Namespace) -> str | None:
    """What judged the mined rows, for the table and results.json (None when nothing was mined)."""
    if args.infonce_only:
        return None
    return TRUTH_NOTICE if args.judge == "truth" else JUDGE_NOTICE


def main(argv: list[str] | None = None) -> int:
    args = resolve(make_parser().parse_args(argv))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch

    from unime_hf.data.shapes import ShapesTruth, load_shapes_train
    from unime_hf.scripts import demo_steps as steps

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    steps.claim_output(out, json.loads(json.dumps(vars(args))))
    started = time.perf_counter()
    timings: dict[str, float] = {}
    budget = Budget(
        args.steps,
        args.batch_size,
        args.learning_rate,
        warmup_steps=max(1, args.steps // 10),
        temperature=args.temperature,
    )
    finetune = dataclasses.replace(budget, steps=args.finetune_steps, warmup_steps=max(1, args.finetune_steps // 10))
    logger.info("Demo settings: %s", {k: v for k, v in vars(args).items()})

    with stage("world", timings):
        world = steps.ensure_world(out / "world", args.preset, args.world_overrides)
        init = steps.build_init(out / "init-qwen2_vl", args.hidden_size, args.vision_hidden_size)
        data = load_shapes_train(world)
        pairs, corpus = data["train"], data["corpus"]
        truth = ShapesTruth.from_dir(world)
        logger.info("World: %d training pairs, %d corpus items; init %s", len(pairs), len(corpus), init)

    checkpoints: dict[str, dict[int, Path]] = {name: {} for name in VARIANTS}
    bases: dict[int, Path] = {}
    for seed in args.seeds:
        with stage("train base", timings):
            bases[seed] = steps.train_embedder(
                init, out / f"seed{seed}" / "base", "info_nce", pairs, corpus, budget, seed, "shapes world pairs"
            )
    if args.infonce_only:
        checkpoints["infonce"] = dict(bases)

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    mining: dict[str, Any] = {}
    if not args.infonce_only:
        mining = steps.mine(args, out, init, pairs, corpus, truth, bases[args.seeds[0]], timings)
        mined = mining["mined"]

    for seed in [] if args.infonce_only else args.seeds:
        for name, (_, loss) in VARIANTS.items():
            data, description = (pairs, "shapes world pairs") if name == "infonce" else (mined, "shapes world, mined")
            with stage(f"train {name}", timings):
                checkpoints[name][seed] = steps.train_embedder(
                    bases[seed], out / f"seed{seed}" / name, loss, data, corpus, finetune, seed, description
                )

    reranker_path = None
    if not args.infonce_only:
        with stage("train reranker", timings):
            reranker_path = steps.train_generative(
                init, out / "reranker", mined, corpus, args.reranker_steps, args.generative_batch_size, 0, True
            )

    from unime_hf.scripts.evaluate import run_evaluation

    table: dict[str, dict[str, list[float | None]]] = {}
    per_seed: dict[str, dict[int, dict[str, Any]]] = {}
    for name, (title, _) in VARIANTS.items():
        if not checkpoints[name]:
            continue
        table[title], per_seed[name] = {}, {}
        for seed, path in checkpoints[name].items():
            with stage(f"eval {name}", timings):
                results = run_evaluation(
                    steps.eval_config(world, path, out / "eval" / f"seed{seed}" / name, args.eval_batch_size),
                    UniMEEmbeddingModel.from_pretrained(path).eval(),
                )
            variant_budget, from_base = (budget, False) if args.infonce_only else (finetune, True)
            mined_by = judge_notice(args) if name != "infonce" else None
            steps.card_with_results(
                path, VARIANTS[name][1], variant_budget, seed, results, base=from_base, judge=mined_by
            )
            summary = summarize(results)
            per_seed[name][seed] = summary
            for key, value in summary.items():
                table[title].setdefault(key, []).append(value)
    if reranker_path is not None:
        table[RERANKER_ROW], per_seed["reranker"] = {}, {}
    for seed, path in checkpoints["unime_v2"].items() if reranker_path is not None else ():
        with stage("eval reranker", timings):
            rerank = {"model": str(reranker_path), "top_k": args.rerank_top_k, "mode": args.rerank_mode}
            config = steps.eval_config(
                world, path, out / "eval" / f"seed{seed}" / "reranker", args.eval_batch_size, rerank
            )
            results = run_evaluation(config, UniMEEmbeddingModel.from_pretrained(path).eval())
        summary = summarize(results)
        per_seed["reranker"][seed] = summary
        for key in ("overall", "ind", "ood"):
            table[RERANKER_ROW].setdefault(key, []).append(summary.get(key))

    with stage("plots", timings):
        from unime_hf.evaluation.plots import plot_judge_scores, plot_modality_gap

        plots = []
        if mining:
            plots.append(plot_judge_scores(mining["judged"], out / "plots" / "judge_scores.png", title=JUDGE_NOTICE))
        seed = args.seeds[0]
        gap = {
            VARIANTS[name][0]: steps.gap_embeddings(checkpoints[name][seed], world, 300, args.eval_batch_size)
            for name in ("infonce", "unime_v2")
            if checkpoints[name]
        }
        plots.append(plot_modality_gap(gap, out / "plots" / "modality_gap.png", title=f"Gallery, seed {seed}"))

    wall = time.perf_counter() - started
    text = format_table(table, args.seeds)
    notice = judge_notice(args)
    judge = f"{notice}.\n" if notice else ""
    (out / "table.md").write_text(
        f"# unime-hf demo on the shapes world ({args.preset})\n\n{text}\n\n{judge}"
        + f"Base embedders: {budget.steps} InfoNCE steps x {budget.batch_size} queries from the init; "
        + ("" if args.infonce_only else f"each variant then fine-tunes its seed's base for {finetune.steps} steps, ")
        + f"lr {budget.learning_rate}, "
        + f"same init ({init.name}, hidden size {args.hidden_size}, vision width {args.vision_hidden_size}). "
        + f"Wall time {wall:.0f} s.\n",
        encoding="utf-8",
    )
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "budget": vars(budget),
        "finetune_budget": vars(finetune),
        "judge": {
            "notice": notice,
            "path": str(mining.get("judge_path")),
            "agreement_with_truth": mining.get("agreement"),
        },
        "sampling": str(mining.get("sampling")),
        "rows": {title: values for title, values in table.items()},
        "per_seed": per_seed,
        "checkpoints": {name: {str(s): str(p) for s, p in paths.items()} for name, paths in checkpoints.items()}
        | {"judge": {"0": str(mining.get("judge_path"))}, "reranker": {"0": str(reranker_path)}},
        "plots": [str(p) for p in plots],
        "timings_s": timings,
        "wall_time_s": wall,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\n{text}\n\n{judge}wall time {wall:.0f} s; table in {out / 'table.md'}", flush=True)
    logger.info("Stage timings (s): %s", {k: round(v, 1) for k, v in timings.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
