"""Loss functions: pure functions on tensors that never call the model.

- [`symmetric_kl_loss`]: the UniME-V2 objective as the authors' code computes it (the paper calls it JS divergence).
- [`js_divergence_loss`]: the true Jensen-Shannon divergence, as an option.
- [`info_nce_loss`]: InfoNCE with in-batch negatives (VLM2Vec baseline).
- [`hard_negative_ce_loss`]: cross-entropy over the positive and its hard negatives (hard labels).
- [`gather_with_grad`]: differentiable all-gather for cross-process negatives.

Select a loss by name from a config with [`get_loss`].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unime_hf.losses.contrastive import (
    duplicate_positive_mask,
    gather_with_grad,
    hard_negative_ce_loss,
    info_nce_loss,
)
from unime_hf.losses.distill import js_divergence_loss, symmetric_kl_loss

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "symmetric_kl": symmetric_kl_loss,
    "js": js_divergence_loss,
    "info_nce": info_nce_loss,
    "hard_negative_ce": hard_negative_ce_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """Returns the loss function registered under `name` in [`LOSSES`].

    Args:
        name (`str`):
            One of `"symmetric_kl"`, `"js"`, `"info_nce"`, `"hard_negative_ce"`.

    Returns:
        `Callable[..., torch.Tensor]`: the loss function.

    Raises:
        `ValueError`: if `name` is not registered; the message lists the valid names.

    Example:

    ```python
    >>> from unime_hf.losses import get_loss
    >>> get_loss("symmetric_kl").__name__
    'symmetric_kl_loss'
    ```
    """
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; valid names are: {', '.join(sorted(LOSSES))}.")
    return LOSSES[name]


__all__ = [
    "LOSSES",
    "duplicate_positive_mask",
    "gather_with_grad",
    "get_loss",
    "hard_negative_ce_loss",
    "info_nce_loss",
    "js_divergence_loss",
    "symmetric_kl_loss",
]
