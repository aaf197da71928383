"""Pictures for a run directory: the judge's score distribution and the modality gap (the paper's Figure 4).

matplotlib is imported only when a picture is drawn, and only its object-oriented API with the Agg canvas is used
(no `pyplot`, no global backend switch), so drawing works headless and leaves a notebook's backend alone.

- [`plot_judge_scores`]: histograms of the judge's P(Yes) for the positives against the (hard) negatives of a
  mined dataset; a good judge separates them, and false negatives show as negatives scoring like positives.
- [`plot_modality_gap`]: "representation distributions" as the paper's Figure 4 compares them (EVA-CLIP-8B left,
  UniME-V2 right), one column per model: the image and text embeddings projected on their two joint principal
  components (a modality gap shows as two separate clouds), and the distributions of cosine similarity of
  image-image, text-text, matched image-text and unmatched image-text pairs. [`modality_gap`] gives the numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

IMAGE_COLOUR = "#1f77b4"
TEXT_COLOUR = "#d62728"
POSITIVE_COLOUR = "#2ca02c"
NEGATIVE_COLOUR = "#7f7f7f"
DISTRIBUTION_COLOURS = {
    "image-image": IMAGE_COLOUR,
    "text-text": TEXT_COLOUR,
    "matched image-text": POSITIVE_COLOUR,
    "unmatched image-text": NEGATIVE_COLOUR,
}


def _figure(width: float, height: float, rows: int = 1, columns: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def _save(figure: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    logger.info("wrote %s", path)
    return path


# ------------------------------------------------------------------------------------------------- judge scores
def judge_score_lists(data: Any, negative_column: str | None = None) -> tuple[list[float], list[float], str]:
    """Positive and negative judge scores of a judged or mined dataset, and the column the negatives came from.

    The positives are `pos_score` (one float a row); the negatives are `negative_column` (a list a row), by default
    `candidate_scores` (the judge's view of every retrieved candidate, false negatives included) when present, else
    `hard_negative_scores` (the sampled hard negatives)."""
    columns = list(data.column_names if hasattr(data, "column_names") else data)
    if "pos_score" not in columns:
        raise ValueError(f"judge scores need a 'pos_score' column; found {columns}")
    if negative_column is None:
        negative_column = next((c for c in ("candidate_scores", "hard_negative_scores") if c in columns), None)
    if negative_column is None or negative_column not in columns:
        raise ValueError(
            f"judge scores need a 'candidate_scores' or 'hard_negative_scores' column (or negative_column=...); "
            f"found {columns}"
        )
    positives = [float(s) for s in data["pos_score"] if s is not None]
    negatives = [float(s) for row in data[negative_column] for s in (row or []) if s is not None]
    if not positives:
        raise ValueError("no positive scores to plot")
    return positives, negatives, negative_column


def plot_judge_scores(
    data: Any,
    path: str | os.PathLike,
    *,
    bins: int = 40,
    threshold: float | None = None,
    negative_column: str | None = None,
    title: str | None = None,
) -> Path:
    """Histogram of the judge's scores for positives against negatives, written as a PNG.

    Args:
        data (`datasets.Dataset` or `dict` of columns):
            A judged or mined dataset: `pos_score` (one float a row) and `candidate_scores` or
            `hard_negative_scores` (a list a row).
        path (`str` or `os.PathLike`):
            The PNG to write (folders are created).
        bins (`int`, *optional*, defaults to 40):
            Histogram bins over the score range.
        threshold (`float`, *optional*):
            Draw a vertical line here (e.g. the false-negative filter's cut-off).
        negative_column (`str`, *optional*):
            The column of negative scores; default `candidate_scores` if present, else `hard_negative_scores`.
        title (`str`, *optional*):
            Figure title.

    Returns:
        `Path`: the written file.

    Example:

    ```python
    >>> from unime_hf.evaluation.plots import plot_judge_scores
    >>> plot_judge_scores(mined, "runs/shapes/plots/judge_scores.png")
    ```
    """
    import numpy as np

    positives, negatives, column = judge_score_lists(data, negative_column)
    kind = "candidates" if column == "candidate_scores" else "negatives"
    values = np.asarray(positives + negatives)
    low, high = float(values.min()), float(values.max())
    if 0.0 <= low and high <= 1.0:
        low, high = 0.0, 1.0  # probabilities: show the whole range
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    figure, axes = _figure(6.4, 4.0)
    axis = axes[0, 0]
    axis.hist(
        positives,
        bins=edges,
        density=True,
        alpha=0.6,
        color=POSITIVE_COLOUR,
        label=f"positives (n={len(positives)}, mean {np.mean(positives):.3f})",
    )
    if negatives:
        axis.hist(
            negatives,
            bins=edges,
            density=True,
            alpha=0.6,
            color=NEGATIVE_COLOUR,
            label=f"{kind} (n={len(negatives)}, mean {np.mean(negatives):.3f})",
        )
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axis.set_xlabel("judge score  P(Yes)")
    axis.set_ylabel("density")
    axis.set_title(title or f"Judge scores: positives vs {kind}")
    axis.legend(loc="upper center", fontsize=8)
    return _save(figure, path)


# ------------------------------------------------------------------------------------------------- modality gap
def _as_unit(embeddings: Any) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(embeddings, dtype=torch.float32)
    if tensor.ndim != 2 or tensor.shape[0] < 2:
        raise ValueError(f"embeddings must be a [n >= 2, dim] matrix, got shape {tuple(tensor.shape)}")
    return F.normalize(tensor, dim=-1)


def _aligned(image_embeddings: Any, text_embeddings: Any, max_points: int | None, seed: int):
    import torch

    images, texts = _as_unit(image_embeddings), _as_unit(text_embeddings)
    if images.shape != texts.shape:
        raise ValueError(
            f"image and text embeddings must be aligned pairs of the same shape, got {tuple(images.shape)} and "
            f"{tuple(texts.shape)} (row i of each is a matched image-text pair)"
        )
    if max_points is not None and images.shape[0] > max_points:
        keep = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        images, texts = images[keep], texts[keep]
    return images, texts


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    import torch

    rows, cols = torch.triu_indices(matrix.shape[0], matrix.shape[1], offset=1)
    return matrix[rows, cols]


def similarity_distributions(
    image_embeddings: Any, text_embeddings: Any, *, max_points: int | None = 2000, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Cosine similarities of image-image, text-text, matched image-text and unmatched image-text pairs.

    Row `i` of `image_embeddings` and of `text_embeddings` is a matched pair. At most `max_points` pairs (a seeded
    sample) are used, so the all-pairs distributions stay small.
    """
    images, texts = _aligned(image_embeddings, text_embeddings, max_points, seed)
    cross = images @ texts.T
    return {
        "image-image": _off_diagonal(images @ images.T),
        "text-text": _off_diagonal(texts @ texts.T),
        "matched image-text": cross.diagonal().clone(),
        "unmatched image-text": cross[~_eye(cross.shape[0])],
    }


def _eye(n: int) -> torch.Tensor:
    import torch

    return torch.eye(n, dtype=torch.bool)


def modality_gap(
    image_embeddings: Any, text_embeddings: Any, *, max_points: int | None = 2000, seed: int = 0
) -> dict[str, float]:
    """Numbers behind the modality-gap picture.

    Returns:
        `dict`: `centroid_distance` (the gap of Liang et al. 2022: the distance between the mean unit image embedding
        and the mean unit text embedding), and the mean cosine of each distribution of
        [`similarity_distributions`] (`mean_cos_image_image`, ...).

    Example:

    ```python
    >>> import torch
    >>> modality_gap(torch.eye(4)[:2], torch.eye(4)[:2])["centroid_distance"]
    0.0
    ```
    """
    images, texts = _aligned(image_embeddings, text_embeddings, max_points, seed)
    result = {"centroid_distance": float((images.mean(0) - texts.mean(0)).norm())}
    for name, values in similarity_distributions(images, texts, max_points=None).items():
        result["mean_cos_" + name.replace("-", "_").replace(" ", "_")] = float(values.mean())
    return result


def _project_2d(images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both modalities on the first two principal components of their union."""
    import torch

    joint = torch.cat([images, texts])
    centred = joint - joint.mean(0)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    components = right[:2].T
    if components.shape[1] < 2:
        components = torch.cat([components, torch.zeros(components.shape[0], 1)], dim=1)
    projected = centred @ components
    return projected[: len(images)], projected[len(images) :]


def plot_modality_gap(
    embeddings: Mapping[str, tuple[Any, Any]] | tuple[Any, Any],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    max_points: int | None = 2000,
    bins: int = 60,
    seed: int = 0,
) -> Path:
    """Figure 4-style comparison of image and text representation distributions, one column per model.

    Top: the image (blue) and text (red) embeddings on the two principal components of their union, with a few
    matched pairs joined by lines; the centroid distance is in the panel title. Bottom: density histograms of the
    cosine similarity of image-image, text-text, matched image-text and unmatched image-text pairs.

    Args:
        embeddings (`dict[str, tuple]` or `tuple`):
            Model name -> `(image_embeddings, text_embeddings)`, aligned so that row `i` of each is a matched
            pair (tensors or arrays `[n, dim]`); or one such tuple.
        path (`str` or `os.PathLike`):
            The PNG to write.
        title (`str`, *optional*):
            Figure title.
        max_points (`int`, *optional*, defaults to 2000):
            Pairs sampled per model (seeded) for the scatter and the all-pairs distributions.
        bins (`int`, *optional*, defaults to 60):
            Histogram bins over [-1, 1].
        seed (`int`, *optional*, defaults to 0):
            Sampling seed.

    Returns:
        `Path`: the written file.

    Example:

    ```python
    >>> from unime_hf.evaluation.plots import plot_modality_gap
    >>> plot_modality_gap({"EVA-CLIP": (clip_img, clip_txt), "UniME-V2": (img, txt)}, "plots/modality_gap.png")
    ```
    """
    import numpy as np

    if isinstance(embeddings, tuple):
        embeddings = {"": embeddings}
    if not embeddings:
        raise ValueError("no embeddings to plot")
    figure, axes = _figure(4.6 * len(embeddings), 8.0, rows=2, columns=len(embeddings))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for column, (name, (image_embeddings, text_embeddings)) in enumerate(embeddings.items()):
        images, texts = _aligned(image_embeddings, text_embeddings, max_points, seed)
        gap = float((images.mean(0) - texts.mean(0)).norm())
        image_xy, text_xy = _project_2d(images, texts)
        scatter = axes[0, column]
        for i in range(min(20, len(images))):
            scatter.plot(
                [image_xy[i, 0], text_xy[i, 0]], [image_xy[i, 1], text_xy[i, 1]], color="0.75", linewidth=0.5, zorder=1
            )
        size = max(2.0, 30.0 / np.sqrt(len(images)))
        scatter.scatter(image_xy[:, 0], image_xy[:, 1], s=size, c=IMAGE_COLOUR, label="image", alpha=0.7, zorder=2)
        scatter.scatter(text_xy[:, 0], text_xy[:, 1], s=size, c=TEXT_COLOUR, label="text", alpha=0.7, zorder=2)
        scatter.set_title(f"{name + ': ' if name else ''}PCA (centroid gap {gap:.3f})", fontsize=10)
        scatter.set_xlabel("PC 1")
        scatter.set_ylabel("PC 2")
        scatter.legend(loc="best", fontsize=8)
        histogram = axes[1, column]
        for label, values in similarity_distributions(images, texts, max_points=None).items():
            histogram.hist(
                values.numpy(),
                bins=edges,
                density=True,
                histtype="stepfilled",
                alpha=0.35,
                color=DISTRIBUTION_COLOURS[label],
                label=f"{label} ({float(values.mean()):.2f})",
            )
        histogram.set_xlim(-1.0, 1.0)
        histogram.set_xlabel("cosine similarity")
        histogram.set_ylabel("density")
        histogram.set_title("similarity distributions (mean)", fontsize=10)
        histogram.legend(loc="upper left", fontsize=7)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def is_png(path: str | os.PathLike) -> bool:
    """Whether a file starts with the PNG signature."""
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def matched_pairs(
    image_embeddings: torch.Tensor, caption_embeddings: torch.Tensor, caption_images: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned (image, text) rows from a gallery: each image with its first caption."""
    import torch

    first: dict[int, int] = {}
    for position, image in enumerate(caption_images):
        first.setdefault(int(image), position)
    order = sorted(first)
    return image_embeddings[torch.tensor(order)], caption_embeddings[torch.tensor([first[i] for i in order])]
