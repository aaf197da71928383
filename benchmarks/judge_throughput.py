"""Judge throughput: batched one-pass yes/no scoring against a per-pair `generate` loop.

Both sides score the same pairs with the same tiny random judge, the same prompts and the same number of torch
threads. The baseline is what a straightforward judge does: for each pair, build its inputs and call
`model.generate(max_new_tokens=1, output_scores=True, return_dict_in_generate=True)`, then take the two-way softmax
of the Yes/No scores of the first step. Ours is [`~unime_hf.scoring.YesNoScorer.score`]: length-sorted batches,
one forward pass each, logits of the last position only.

Run:

```bash
python benchmarks/judge_throughput.py --kind qwen2_vl --num-pairs 512 --batch-size 32 --threads 2
```
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

logger = logging.getLogger(__name__)

_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "grey"]
_SHAPES = ["square", "circle", "triangle", "star", "diamond", "cross"]
_POSITIONS = ["at the top left", "at the bottom right", "in the center", "on the left", "on the right"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl", "llava_onevision"])
    parser.add_argument("--num-pairs", type=int, default=512)
    parser.add_argument("--image-fraction", type=float, default=0.5, help="share of pairs with images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both sides")
    parser.add_argument("--baseline-pairs", type=int, default=None, help="time the baseline on the first N pairs only")
    parser.add_argument("--no-prefetch", action="store_true", help="build batches in the main thread only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def make_pairs(num_pairs: int, image_fraction: float, seed: int) -> list[tuple[dict, dict]]:
    """Shapes-world-like pairs: text-only, and image+text queries against image and text candidates."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rgb = {name: tuple(rng.randrange(256) for _ in range(3)) for name in _COLOURS}
    pairs = []
    for index in range(num_pairs):
        colour, shape, where = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.choice(_POSITIONS)
        caption = f"a {colour} {shape} {where}"
        other = f"a {rng.choice(_COLOURS)} {rng.choice(_SHAPES)} {rng.choice(_POSITIONS)}"
        words = " ".join(rng.choice(_COLOURS + _SHAPES) for _ in range(rng.randrange(0, 12)))
        if index / max(num_pairs, 1) < image_fraction:
            # Square-ish sizes that every tiny backbone accepts; a few patches each.
            size = rng.choice([28, 40, 56])
            image = Image.new("RGB", (size, size), (255, 255, 255))
            ImageDraw.Draw(image).rectangle([4, 4, size // 2, size // 2], fill=rgb[colour])
            query = {"text": f"Find an image that matches the given caption: {caption} {words}", "image": None}
            candidate = {"text": "Represent the given image.", "image": image}
            if rng.random() < 0.5:
                query, candidate = {"text": "What is in the image?", "image": image}, {"text": other, "image": None}
        else:
            query = {"text": f"{caption} {words}", "image": None}
            candidate = {"text": other, "image": None}
        pairs.append((query, candidate))
    rng.shuffle(pairs)
    return pairs


def generate_scores(model, scorer, pairs) -> list[float]:
    """The baseline: one `generate(max_new_tokens=1)` call per pair."""
    import torch

    scores = []
    with torch.inference_mode():
        for index, pair in enumerate(pairs):
            inputs = scorer.build_inputs([pair], index)
            out = model.generate(
                **inputs, max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True
            )
            logits = out.scores[0][0, [scorer.yes_token_id, scorer.no_token_id]].float()
            scores.append(torch.softmax(logits, dim=-1)[0].item())
    return scores


def main(args: argparse.Namespace) -> dict[str, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForImageTextToText

    from unime_hf.models.processing_unime import load_processor
    from unime_hf.scoring import YesNoScorer
    from unime_hf.testing.tiny import build_tiny_backbone

    torch.set_num_threads(args.threads)
    pairs = make_pairs(args.num_pairs, args.image_fraction, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_backbone(args.kind, os.path.join(tmp, args.kind), seed=args.seed)
        model = AutoModelForImageTextToText.from_pretrained(path).eval()
        processor = load_processor(path)
    # Greedy, no sampling settings left over from the checkpoint's generation config.
    model.generation_config.do_sample = False
    scorer = YesNoScorer(model, processor, batch_size=args.batch_size, prefetch=not args.no_prefetch)

    scorer.score(pairs[:8])  # warm-up for both sides (allocator, first-call overheads)
    generate_scores(model, scorer, pairs[:8])

    baseline_pairs = pairs[: args.baseline_pairs] if args.baseline_pairs else pairs
    # Interleaved repeats, best time of each side: the machine is shared, so the minimum is the least disturbed run.
    ours_times, baseline_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = scorer.score(pairs)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = generate_scores(model, scorer, baseline_pairs)
        baseline_times.append((time.perf_counter() - start) * len(pairs) / len(baseline_pairs))
    ours_s, baseline_s = min(ours_times), min(baseline_times)

    max_diff = max(abs(a - b) for a, b in zip(ours, reference))
    with_images = sum(1 for q, c in pairs if q["image"] is not None or c["image"] is not None)
    result = {
        "pairs": len(pairs),
        "pairs_with_images": with_images,
        "generate_s": baseline_s,
        "scorer_s": ours_s,
        "speedup": baseline_s / ours_s,
        "max_abs_diff": max_diff,
    }
    print(f"judge throughput: {args.kind}, {len(pairs)} pairs ({with_images} with images), threads={args.threads}")
    print(f"{'method':<44} {'seconds':>9} {'pairs/s':>9}")
    print(f"{'per-pair generate(max_new_tokens=1)':<44} {baseline_s:>9.2f} {len(pairs) / baseline_s:>9.1f}")
    label = f"YesNoScorer (batch {args.batch_size}, sorted{'' if args.no_prefetch else ', prefetch'})"
    print(f"{label:<44} {ours_s:>9.2f} {len(pairs) / ours_s:>9.1f}")
    print(f"speed-up: {result['speedup']:.1f}x   max |score difference|: {max_diff:.2e}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(make_parser().parse_args())
