"""The stages of `unime-hf demo` (see [`unime_hf.scripts.demo`]), each a function on paths and datasets.

World -> one init backbone -> embedders (InfoNCE, hard labels, UniME-V2 soft scores) -> a stand-in judge trained on
the world's truth -> mining -> reranker -> evaluation. Every stage logs its wall time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("unime_hf.demo")

JUDGE_NOTICE = "stand-in judge: a tiny VLM trained on the world's truth, not an MLLM"
IMAGE_PROMPT = "<|image_1|>\nRepresent the given image."


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Log the start and the wall time of a stage and add the time to `timings[name]`."""
    logger.info("[%s] start", name)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    timings[name] = timings.get(name, 0.0) + elapsed
    logger.info("[%s] done in %.1f s", name, elapsed)


@dataclass
class Budget:
    """What every embedding variant gets: the same steps, queries per step, learning rate and init."""

    steps: int
    batch_size: int
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    temperature: float = 0.02
    num_hard_negatives: int = 8


# ------------------------------------------------------------------------------------------------------ the world
# Settings that do not change what is saved in the output folder (seeds add their own folders).
REUSE_NEUTRAL = frozenset({"out", "quick", "threads", "eval_batch_size", "seeds"})


def claim_output(out: Path, settings: dict[str, Any]) -> None:
    """Record the settings behind `out`'s artefacts, or refuse to reuse artefacts made with other settings.

    Every stage reuses what it finds (an interrupted demo resumes), so a folder left by a run with another init size,
    budget or world would silently mix old models into the new table."""
    import json

    wanted = {k: v for k, v in settings.items() if k not in REUSE_NEUTRAL}
    record = out / "demo_settings.json"
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        changed = sorted(k for k in wanted.keys() | saved.keys() if saved.get(k) != wanted.get(k))
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
            raise ValueError(
                f"{out} holds a demo run with other settings ({details}); its checkpoints would be reused. "
                "Pass another --out or delete the folder."
            )
    elif (out / "init-qwen2_vl").exists() or any(out.glob("seed*")):
        raise ValueError(
            f"{out} holds checkpoints of a demo run whose settings were not recorded (an older unime-hf); they would "
            "be reused. Pass another --out or delete the folder."
        )
    record.write_text(json.dumps(wanted, indent=2, sort_keys=True), encoding="utf-8")


def ensure_world(folder: Path, preset: str, overrides: dict[str, Any]) -> Path:
    """Generate the shapes world in `folder` unless a world with the same config is there already."""
    import json

    from unime_hf.data.shapes import ShapesWorldConfig, generate_shapes_world

    config = ShapesWorldConfig.preset(preset, **overrides)
    info = folder / "world.json"
    if info.is_file():
        saved = json.loads(info.read_text(encoding="utf-8")).get("config")
        if saved == json.loads(json.dumps(config.to_dict())):
            logger.info("Reusing the shapes world in %s", folder)
            return folder
    generate_shapes_world(folder, config)
    return folder


# The shapes world draws on white: with this normalisation the background is zero input and only shapes carry signal.
# Measured (InfoNCE on t2i + i2t pairs of a 2x2-grid world, 400 steps x 32, train in-batch accuracy): CLIP's
# normalisation, vision width 32, hidden 64: 0.10 with image embeddings near-collapsed (image-image cosine 0.99);
# this normalisation: 0.19; and vision width 64, hidden 128: 0.55.
WHITE_BACKGROUND = {"image_mean": (1.0, 1.0, 1.0), "image_std": (0.5, 0.5, 0.5)}


def build_init(folder: Path, hidden_size: int, vision_hidden_size: int = 64) -> Path:
    """The one random tiny Qwen2-VL that every variant (embedders, judge, reranker) starts from."""
    from unime_hf.testing.tiny import build_tiny_backbone

    if not (folder / "config.json").is_file():
        build_tiny_backbone(
            "qwen2_vl",
            folder,
            seed=0,
            hidden_size=hidden_size,
            vision_hidden_size=vision_hidden_size,
            **WHITE_BACKGROUND,
        )
    return folder


# ------------------------------------------------------------------------------------------------- the embedders
def train_embedder(
    init: Path, out: Path, loss: str, train: Any, corpus: Any, budget: Budget, seed: int, dataset_name: str
) -> Path:
    """Train one embedding variant from `init` with `loss` and save a full UniME checkpoint (card included)."""
    from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer

    if (out / "model.safetensors").is_file():
        logger.info("Reusing %s", out)
        return out
    args = EmbeddingDistillConfig(
        output_dir=str(out),
        loss=loss,
        loss_temperature=budget.temperature,
        num_hard_negatives=budget.num_hard_negatives,
        learning_rate=budget.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=budget.warmup_steps,
        max_steps=budget.steps,
        per_device_train_batch_size=budget.batch_size,
        weight_decay=0.0,
        seed=seed,
        data_seed=seed,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=max(1, budget.steps // 5),
        dataloader_num_workers=0,
        dataset_name=dataset_name,
        use_cpu=True,
    )
    trainer = EmbeddingDistillTrainer(str(init), args=args, train_dataset=train, corpus=corpus)
    trainer.train()
    trainer.save_model(str(out))
    return out


# ---------------------------------------------------------------------------------------------------- the judge
def judge_rows(retrieved: Any, corpus: Any, truth: Any, per_query: int, seed: int, random_per_query: int = 1) -> Any:
    """Pairwise Yes/No SFT rows labelled by the world's truth: (query, positive) -> Yes, and `per_query` retrieved
    candidates (random ranks) plus `random_per_query` random corpus items per query -> Yes when the world says the
    candidate meets the query (false negatives are labelled Yes), else No."""
    import datasets

    from unime_hf.scoring import JUDGE_PROMPT, build_pair_content
    from unime_hf.trainer.reranker_data import reranker_features

    items = {row["id"]: {"text": row["text"], "image": row["image"]} for row in corpus}
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []

    def add(query: dict[str, Any], candidate_id: str, candidate: dict[str, Any], answer: str, index: int) -> None:
        prepared = build_pair_content(query, candidate, JUDGE_PROMPT, index)
        rows.append(
            {
                "prompt": [
                    {"role": "user", "content": [{"type": p["type"], "text": p.get("text")} for p in prepared.content]}
                ],
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                "images": [str(image) for _, image in prepared.images],
                "task": "pairwise",
                "query_id": query_id,
                "candidate_ids": [candidate_id],
                "answer": answer,
                "target": 0,
            }
        )

    for index, row in enumerate(retrieved):
        query_id = row["query_id"]
        query = {"text": row["query_text"], "image": row["query_image"]}
        add(query, row["pos_id"], {"text": row["pos_text"], "image": row["pos_image"]}, "Yes", index)
        ids = list(row["candidate_ids"])
        picked = rng.sample(ids, min(per_query, len(ids))) + rng.sample(list(items), random_per_query)
        for candidate_id in picked:
            candidate = items[candidate_id]
            add(query, candidate_id, candidate, "Yes" if truth(query, candidate) else "No", index)
    yes = sum(r["answer"] == "Yes" for r in rows)
    logger.info("Judge training rows: %d (%d Yes, %d No)", len(rows), yes, len(rows) - yes)
    return datasets.Dataset.from_list(rows, features=reranker_features())


def train_generative(
    init: Path, out: Path, rows: Any, corpus: Any, steps: int, batch_size: int, seed: int, listwise: bool
) -> Path:
    """Fine-tune every language-model weight of `init` with the reranker trainer (answer-only cross-entropy).

    `rows` are either ready prompt-completion rows (the judge) or mined rows (the reranker: pairwise + listwise).
    A random tiny backbone starts with near-uniform logits that LoRA cannot move, so this trains in full."""
    from unime_hf.trainer.reranker_config import RerankerSFTConfig
    from unime_hf.trainer.reranker_trainer import RerankerSFTTrainer

    if (out / "model.safetensors").is_file():
        logger.info("Reusing %s", out)
        return out
    args = RerankerSFTConfig(
        output_dir=str(out),
        use_lora=False,
        freeze_vision_tower=False,
        list_size=4,
        pairwise_ratio=1.0,
        listwise_ratio=1.0 if listwise else 0.0,
        bf16=False,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        weight_decay=0.0,
        seed=seed,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=max(1, steps // 5),
        dataloader_num_workers=0,
        use_cpu=True,
    )
    trainer = RerankerSFTTrainer(str(init), args=args, train_dataset=rows, corpus=corpus)
    trainer.train()
    trainer.save_model(str(out))
    return out


def truth_scores(row: dict[str, Any], items: dict[str, dict[str, str]], truth: Any) -> dict[str, Any]:
    """The world's truth as the judge: P(Yes) = 1.0 for the positive and every candidate that meets the query."""
    query = {"text": row["query_text"], "image": row["query_image"]}
    return {"pos_score": 1.0, "candidate_scores": [float(truth(query, items[c])) for c in row["candidate_ids"]]}


def judge_agreement(judged: Any, corpus: Any, truth: Any) -> dict[str, float]:
    """How often the stand-in judge's P(Yes) > 0.5 agrees with the world's truth on the judged pairs."""
    items = {row["id"]: {"text": row["text"], "image": row["image"]} for row in corpus}
    agree = total = true_pairs = 0
    positives = [float(s) > 0.5 for s in judged["pos_score"]]
    for row in judged:
        query = {"text": row["query_text"], "image": row["query_image"]}
        for candidate_id, score in zip(row["candidate_ids"], row["candidate_scores"]):
            label = truth(query, items[candidate_id])
            true_pairs += label
            agree += label == (score > 0.5)
            total += 1
    pos = list(judged["pos_score"])
    above = sum(p > c for p, row in zip(pos, judged["candidate_scores"]) for c in row)
    return {
        "positive_above_candidate": above / max(total, 1),
        "score_range": [min(pos + [c for row in judged["candidate_scores"] for c in row]), max(pos)],
        "candidate_accuracy": agree / max(total, 1),
        "positive_recall": sum(positives) / max(len(positives), 1),
        "true_candidate_share": true_pairs / max(total, 1),
        "judged_pairs": total + len(positives),
    }


# ------------------------------------------------------------------------------------------------ the evaluation
def eval_config(world: Path, model: Path, out: Path, batch_size: int, rerank: dict[str, Any] | None = None) -> Any:
    """The `unime-hf eval` config of the shapes world (MMEB-style sets, gallery retrieval, compositional)."""
    from unime_hf.scripts.evaluate import EvalConfig

    mmeb = {"dataset_info": str(world / "world.json"), "image_root": str(world)}
    if rerank is not None:
        return EvalConfig(
            model=str(model), output_dir=str(out), batch_size=batch_size, show_progress=False, tasks=["mmeb"],
            mmeb=mmeb, rerank=rerank,
        )  # fmt: skip
    return EvalConfig(
        model=str(model),
        output_dir=str(out),
        batch_size=batch_size,
        show_progress=False,
        mmeb=mmeb,
        retrieval={
            "shapes_gallery": {
                "path": str(world / "gallery.jsonl"),
                "image_root": str(world),
                "image_prompt": IMAGE_PROMPT,
            }
        },
        compositional={
            "shapes_compositional": {
                "path": str(world / "compositional.jsonl"),
                "image_root": str(world),
                "image_prompt": IMAGE_PROMPT,
            }
        },
        plots={"modality_gap": True},
    )


def summarize(results: dict[str, Any]) -> dict[str, float | None]:
    """The table's numbers from a `run_evaluation` results dict (fractions in [0, 1])."""
    mmeb = results.get("mmeb") or {}
    summary: dict[str, float | None] = {
        "overall": mmeb.get("overall"),
        "ind": mmeb.get("ind"),
        "ood": mmeb.get("ood"),
    }
    for name, value in (mmeb.get("datasets") or {}).items():
        summary[f"p@1/{name}"] = value.get("precision@1")
    if "embedding_only" in mmeb:
        summary["overall_embedding_only"] = mmeb["embedding_only"].get("overall")
    gallery = (results.get("retrieval") or {}).get("shapes_gallery")
    if gallery:
        summary["t2i_r@1"] = gallery["text_to_image"]["recall@1"]
        summary["i2t_r@1"] = gallery["image_to_text"]["recall@1"]
    compositional = (results.get("compositional") or {}).get("shapes_compositional")
    if compositional:
        summary["compositional"] = compositional["overall"]
    return summary


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; 0 for one value) of the values that are not None."""
    kept = [v for v in values if v is not None]
    if not kept:
        return None, None
    mean = sum(kept) / len(kept)
    if len(kept) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))


def gap_embeddings(model_path: Path, world: Path, max_images: int, batch_size: int) -> tuple[Any, Any]:
    """(image, caption) embeddings of the first `max_images` gallery images and their first captions."""
    import json

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    rows = [json.loads(line) for line in (world / "gallery.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = rows[:max_images]
    model = UniMEEmbeddingModel.from_pretrained(model_path).eval()
    images = [{"text": IMAGE_PROMPT, "image": str(world / row["image"])} for row in rows]
    captions = [row["caption"] if isinstance(row["caption"], str) else row["caption"][0] for row in rows]
    return model.encode(images, batch_size=batch_size), model.encode(captions, batch_size=batch_size)


# ------------------------------------------------------------------------------------------------------- mining
def mine(
    args: Any, out: Path, init: Path, pairs: Any, corpus: Any, truth: Any, retriever_path: Path, timings: dict
) -> dict[str, Any]:
    """Retrieval with the seed-0 InfoNCE model, the stand-in judge (trained here on other queries' retrieved
    candidates, labelled by the world's truth), then the paper's false-negative filter and interval sampling.

    Returns `{"mined", "judged", "judge_path", "agreement", "sampling"}`; the mined rows are also saved to
    `out/mined` (a `DatasetDict` with `train` and `corpus`, as `unime-hf mine` writes them)."""
    import datasets

    from unime_hf.mining import retrieve_candidates, sample_hard_negatives
    from unime_hf.mining.judge import MLLMJudge, judge_candidates
    from unime_hf.models.modeling_unime import UniMEEmbeddingModel

    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    n_mine = min(args.mine_queries, len(pairs))
    n_judge = min(args.judge_queries, len(pairs) - n_mine)
    with stage("mine: retrieve", timings):
        retriever = UniMEEmbeddingModel.from_pretrained(retriever_path).eval()
        retrieved = retrieve_candidates(
            pairs.select(order[: n_mine + n_judge]),
            corpus,
            retriever,
            top_k=args.mine_top_k,
            batch_size=args.eval_batch_size,
            show_progress=False,
            use_faiss=False,
        )
        del retriever

    judge_path = None
    if args.judge == "truth":
        logger.info("Judge: the world's truth (P(Yes) = 1 for a candidate that meets the query, else 0).")
        with stage("mine: judge", timings):
            items = {row["id"]: {"text": row["text"], "image": row["image"]} for row in corpus}
            judged = retrieved.select(range(n_mine)).map(lambda row: truth_scores(row, items, truth))
    else:
        print(JUDGE_NOTICE, flush=True)
        logger.info(JUDGE_NOTICE)
        with stage("train judge", timings):
            # The judge starts from the retrieval model's weights (a random tiny VLM learns only the Yes/No prior in
            # this budget) and learns from queries that are not mined, so it judges pairs it has not seen.
            start = generative_from_embedder(retriever_path, init, out / "judge-init")
            rows = judge_rows(retrieved.select(range(n_mine, n_mine + n_judge)), corpus, truth, 1, seed=0)
            judge_path = train_generative(
                start, out / "judge", rows, corpus, args.judge_steps, args.generative_batch_size, 0, listwise=False
            )
            write_judge_card(judge_path, args.judge_steps, args.generative_batch_size, len(rows))
        with stage("mine: judge", timings):
            judge = MLLMJudge(str(judge_path), batch_size=args.eval_batch_size, device="cpu", prefetch=False)
            judged = judge_candidates(retrieved.select(range(n_mine)), corpus, judge, show_progress=False)
    agreement = judge_agreement(judged, corpus, truth)
    logger.info("Judge vs the world's truth on the mined pairs: %s", agreement)
    with stage("mine: sample", timings):
        mined, sampling = sample_hard_negatives(
            judged, beta=0.01, num_negatives=10, interval=args.mine_interval, seed=0, show_progress=False
        )
        logger.info("%s", sampling)
        datasets.DatasetDict(train=mined, corpus=corpus).save_to_disk(str(out / "mined"))
    return {"mined": mined, "judged": judged, "judge_path": judge_path, "agreement": agreement, "sampling": sampling}


def generative_from_embedder(embedder_path: Path, init: Path, out: Path) -> Path:
    """A generative VLM folder with the weights of a trained UniME embedder (its backbone; the LM head is tied to the
    token embeddings), so that the stand-in judge starts from a model that has already seen the world."""
    from transformers import AutoModelForImageTextToText

    from unime_hf.models.modeling_unime import UniMEEmbeddingModel
    from unime_hf.models.processing_unime import load_processor, save_processor

    if (out / "model.safetensors").is_file():
        return out
    model = AutoModelForImageTextToText.from_pretrained(init)
    embedder = UniMEEmbeddingModel.from_pretrained(embedder_path)
    model.model.load_state_dict(embedder.backbone.state_dict())
    model.tie_weights()
    model.save_pretrained(out)
    save_processor(load_processor(init), out)
    return out


DESCRIPTIONS = {
    "info_nce": "A tiny multimodal embedding model trained on the shapes world with InfoNCE and in-batch "
    "negatives (the VLM2Vec-style baseline of the unime-hf demo); not a UniME-V2 model.",
    "hard_negative_ce": "A tiny multimodal embedding model trained on the shapes world with cross-entropy"
    " over the positive and judge-mined hard negatives (hard labels; the ablation of the unime-hf demo).",
    "symmetric_kl": "A tiny multimodal embedding model trained on the shapes world the UniME-V2 way: "
    "symmetric KL to the judge's soft scores over the positive and judge-mined hard negatives (unime-hf demo).",
}


def card_with_results(
    path: Path,
    loss: str,
    budget: Budget,
    seed: int,
    results: dict[str, Any],
    base: bool = True,
    judge: str | None = None,
) -> Path:
    """Rewrite an embedder's model card with what it is (by loss), its demo budget and its evaluation results.
    `base`: it was fine-tuned from the seed's InfoNCE base embedder (else trained from the random init); `judge`: what
    scored its mined training rows (the demo's judge notice), for the variants trained on them."""
    from unime_hf.hub.model_card import render_embedding_card, write_model_card

    init = "random tiny Qwen2-VL (unime_hf.testing.tiny)"
    init = f"the seed's InfoNCE base embedder, trained from a {init}" if base else init
    training = {"loss": loss, **vars(budget), "seed": seed, "init": init}
    card = render_embedding_card(
        base_model=None,
        datasets="shapes world (unime_hf.data.shapes)",
        training=training,
        results=results,
        model_name=f"unime-hf demo: {path.parent.name}/{path.name}",
        description=DESCRIPTIONS[loss] + (f" The {judge}." if judge else ""),
        mmeb_dataset="shapes-world-mmeb-style",  # the world's MMEB-format sets, not MMEB itself
    )
    return write_model_card(card, path)


def write_judge_card(path: Path, steps: int, batch_size: int, rows: int) -> Path:
    """The stand-in judge's card says what it is: a tiny VLM trained on the world's truth, not an MLLM."""
    from unime_hf.hub.model_card import render_reranker_card, write_model_card

    card = render_reranker_card(
        base_model=None,
        datasets="shapes world truth (unime_hf.data.shapes.ShapesTruth)",
        training={"task": "pairwise Yes/No SFT", "steps": steps, "batch_size": batch_size, "rows": rows},
        model_name="unime-hf demo stand-in judge",
        description=f"{JUDGE_NOTICE[0].upper()}{JUDGE_NOTICE[1:]}: it answers the UniME-V2 judge prompt with Yes/No "
        "and was trained on shapes-world (query, candidate) pairs labelled by the world's truth, starting from the "
        "demo's seed-0 InfoNCE embedder. It is infrastructure for the demo's mining step, not a model to use.",
    )
    return write_model_card(card, path)
