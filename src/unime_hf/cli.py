"""`unime-hf <job> ...`: one entry point dispatching to `unime_hf.scripts.<job>.main(argv)`."""

from __future__ import annotations

import importlib
import sys

# job name -> (module under unime_hf.scripts, one-line help)
JOBS: dict[str, tuple[str, str]] = {
    "shapes": ("shapes", "generate the shapes world (a synthetic multimodal dataset)"),
    "mine": ("mine", "MLLM-as-a-Judge hard-negative mining: retrieve | judge | sample | all"),
    "train": ("train_embedding", "train a UniME embedding model (EmbeddingDistillTrainer)"),
    "train-reranker": ("train_reranker", "train the pairwise + listwise reranker (TRL SFT)"),
    "train-reasoner": ("train_reasoner", "Embed-RL: train the reasoner with embedder-guided GRPO"),
    "eval": ("evaluate", "evaluate an embedding model (MMEB, retrieval, compositional)"),
    "push": ("push", "upload a checkpoint folder with its model card to the Hub"),
    "demo": ("demo", "run the whole pipeline on the shapes world with tiny backbones"),
}


def _usage() -> str:
    width = max(map(len, JOBS))
    lines = ["usage: unime-hf <job> [options]   (unime-hf <job> --help for a job's options)", "", "jobs:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in JOBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from unime_hf import __version__

        print(__version__)
        return 0
    job, rest = argv[0], argv[1:]
    if job not in JOBS:
        print(f"unime-hf: unknown job {job!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = f"unime_hf.scripts.{JOBS[job][0]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"unime-hf: the {job!r} job is not available in this version.", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
