# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""Peak memory and throughput of EmbeddingDistillTrainer at growing batch sizes, with and without GradCache.

Each (batch size, GradCache on/off) point trains a few steps in its own subprocess on a small random Qwen2-VL
backbone (`build_tiny_backbone(hidden_size=256)`) and synthetic mined data (text, image and image+text items). It
reports the process's peak resident memory during training (Linux `VmHWM`, reset after the model is built; psutil
polling elsewhere), that peak minus the memory before training (the training increment: activations, gradients,
optimizer state, batches), and samples (queries) per second. Ratios are against batch 16 of the same run.

    python benchmarks/train_memory.py                      # batch 16, 64, 256; GradCache chunks of 16
    python benchmarks/train_memory.py --batch-sizes 16 64 --chunk-size 8 --json results.json

Target: with GradCache, peak memory at batch 256 within 1.5x of batch 16.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger("benchmarks.train_memory")


# ------------------------------------------------------------------------------------------------------ memory
def _read_status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory from now on: the kernel's high-water mark (reset through `/proc/self/clear_refs`) on
    Linux, otherwise psutil polled every 5 ms."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._peak = 0
        self._stop = threading.Event()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.kernel = _read_status("VmHWM") is not None
        except OSError:
            self.kernel = False
        if not self.kernel:
            import psutil

            process = psutil.Process()

            def poll() -> None:
                while not self._stop.is_set():
                    self._peak = max(self._peak, process.memory_info().rss)
                    time.sleep(0.005)

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()

    def peak(self) -> int:
        if self.kernel:
            return _read_status("VmHWM") or 0
        self._stop.set()
        self._thread.join()
        return self._peak


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


# -------------------------------------------------------------------------------------------------------- data
def make_data(root: Path, num_rows: int, num_items: int, num_images: int = 200, seed: int = 0):
    """Mined rows (10 hard negatives each) over a corpus of distinct text-only, image-only and image+text items.

    Images come from a pool of `num_images` files; every corpus item has its own id, so the collator encodes each
    referenced item once and a large corpus keeps the candidates of a batch (mostly) distinct.
    """
    import datasets
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    shapes = ["square", "circle", "bar", "cross"]
    pool = []
    for i in range(num_images):
        picture = Image.new("RGB", (56, 56), (255, 255, 255))
        box = [rng.randint(0, 20), rng.randint(0, 20), rng.randint(30, 55), rng.randint(30, 55)]
        ImageDraw.Draw(picture).rectangle(box, fill=colours[i % len(colours)])
        pool.append(str(root / f"{i}.png"))
        picture.save(pool[-1])
    corpus = []
    for i in range(num_items):
        caption = f"a {rng.choice(colours)} {rng.choice(shapes)} number {i}"
        kind = i % 3  # 0: text only, 1: image only, 2: image + text
        image = rng.choice(pool) if kind else ""
        text = {0: caption, 1: "", 2: f"<|image_1|>\nRepresent the given image. {caption}"}[kind]
        corpus.append({"id": f"c{i}", "text": text, "image": image})
    rows = []
    for q in range(num_rows):
        positive = corpus[rng.randrange(num_items)]
        query_image = rng.choice(pool) if q % 2 else ""
        rows.append(
            {
                "query_id": f"q{q}",
                "query_text": "<|image_1|>\nFind a matching item." if query_image else f"Find item {q} of the world",
                "query_image": query_image,
                "pos_id": positive["id"],
                "pos_text": positive["text"],
                "pos_image": positive["image"],
                "pos_score": 0.9,
                "hard_negative_ids": [corpus[rng.randrange(num_items)]["id"] for _ in range(10)],
                "hard_negative_scores": [rng.uniform(0, 0.8) for _ in range(10)],
            }
        )
    return datasets.Dataset.from_list(rows), datasets.Dataset.from_list(corpus)


# ------------------------------------------------------------------------------------------------------- child
def run_point(args: argparse.Namespace) -> dict:
    """Train `args.steps` steps at one batch size; returns the measurements (runs inside a subprocess)."""
    import torch
    from transformers import TrainerCallback

    from unime_hf.trainer import EmbeddingDistillConfig, EmbeddingDistillTrainer

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # A corpus several times the candidates of a batch, so that few candidates repeat inside a batch.
    num_items = args.corpus_factor * args.batch_size * (1 + args.num_hard_negatives)
    mined, corpus = make_data(data_dir, num_rows=args.batch_size * args.steps, num_items=num_items)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = [], []

        def on_step_begin(self, *unused, **kwargs):
            self.starts.append(time.perf_counter())

        def on_step_end(self, *unused, **kwargs):
            self.ends.append(time.perf_counter())

    times = StepTimes()
    config = EmbeddingDistillConfig(
        str(work / "out"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        num_hard_negatives=args.num_hard_negatives,
        grad_cache_chunk_size=args.chunk_size if args.grad_cache else None,
        learning_rate=1e-4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1000,
        dataloader_num_workers=0,
    )
    trainer = EmbeddingDistillTrainer(
        args.backbone, args=config, train_dataset=mined, corpus=corpus, callbacks=[times]
    )
    before = current_rss()
    peak = PeakMemory()
    trainer.train()
    peak_bytes = max(peak.peak(), before)
    # The first step pays for lazy initialisation; throughput is measured on the others.
    measured = list(zip(times.starts, times.ends))[1:] or list(zip(times.starts, times.ends))
    seconds = sum(end - start for start, end in measured)
    return {
        "batch_size": args.batch_size,
        "grad_cache": bool(args.grad_cache),
        "peak_rss_mb": peak_bytes / 2**20,
        "training_mb": (peak_bytes - before) / 2**20,
        "samples_per_second": args.batch_size * len(measured) / seconds,
        "memory_source": "VmHWM" if peak.kernel else "psutil",
    }


# ------------------------------------------------------------------------------------------------------ parent
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--chunk-size", type=int, default=16, help="GradCache chunk (items per forward pass)")
    parser.add_argument("--num-hard-negatives", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=256, help="language-model width of the backbone")
    parser.add_argument("--corpus-factor", type=int, default=4, help="corpus items per candidate of a batch")
    parser.add_argument("--steps", type=int, default=3, help="training steps per point (the first is not timed)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per point (1 keeps timings stable on a shared CPU)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    # internal: one measurement point
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grad-cache", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    return parser


def _child_command(args: argparse.Namespace, batch: int, grad_cache: bool, backbone: Path, work: Path) -> list[str]:
    return [
        sys.executable, __file__, "--child", "--batch-size", str(batch), "--grad-cache", str(int(grad_cache)),
        "--chunk-size", str(args.chunk_size), "--num-hard-negatives", str(args.num_hard_negatives),
        "--corpus-factor", str(args.corpus_factor), "--steps", str(args.steps), "--backbone", str(backbone),
        "--work-dir", str(work), "--threads", str(args.threads),
    ]  # fmt: skip


def format_table(results: list[dict], baseline_batch: int) -> str:
    base = {r["grad_cache"]: r for r in results if r["batch_size"] == baseline_batch}
    plain = base.get(False)
    x = f"x batch {baseline_batch}"
    lines = [
        f"| GradCache | batch | peak RSS (MB) | {x} | training MB | {x} | samples/s | {x} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = base.get(r["grad_cache"]) or plain
        lines.append(
            f"| {'on' if r['grad_cache'] else 'off'} | {r['batch_size']} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f} | {r['training_mb']:.0f} | "
            f"{r['training_mb'] / max(ref['training_mb'], 1e-9):.2f} | {r['samples_per_second']:.1f} | "
            f"{r['samples_per_second'] / ref['samples_per_second']:.2f} |"
        )
    if plain is not None:
        lines.append(f"\n(ratios against batch {baseline_batch} with the same GradCache setting)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        print(json.dumps(run_point(args)))
        return 0

    from unime_hf.testing.tiny import build_tiny_backbone

    results = []
    with tempfile.TemporaryDirectory(prefix="unime-train-memory-") as tmp:
        backbone = build_tiny_backbone("qwen2_vl", Path(tmp) / "backbone", hidden_size=args.hidden_size)
        for grad_cache in (False, True):
            for batch in args.batch_sizes:
                work = Path(tmp) / f"point-{batch}-{int(grad_cache)}"
                command = _child_command(args, batch, grad_cache, backbone, work)
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                output = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
                if output.returncode != 0:
                    logger.error(output.stderr[-3000:])
                    return output.returncode
                result = json.loads(output.stdout.strip().splitlines()[-1])
                logger.info(
                    "GradCache %-3s batch %4d: peak %7.0f MB (training %6.0f MB), %6.1f samples/s",
                    "on" if grad_cache else "off", batch, result["peak_rss_mb"], result["training_mb"],
                    result["samples_per_second"],
                )  # fmt: skip
                results.append(result)
    table = format_table(results, baseline_batch=min(args.batch_sizes))
    logger.info("\n%s", table)
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
