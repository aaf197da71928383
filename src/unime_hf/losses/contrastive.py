"""Contrastive baselines for ablations (METHOD.md §3) and cross-process gathering of embeddings.

- [`info_nce_loss`]: InfoNCE with in-batch negatives (the VLM2Vec baseline), optionally with hard negatives.
- [`hard_negative_ce_loss`]: cross-entropy over the positive and its mined hard negatives (hard labels, no judge
  scores).
- [`gather_with_grad`]: all-gather embeddings from every process while keeping them differentiable.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from unime_hf.losses.distill import _check_finite, _check_reduction, _check_temperature


def _check_embeddings(tensor: torch.Tensor, name: str) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"`{name}` must be 2-D `[num_rows, dim]`, got shape {tuple(tensor.shape)}.")
    _check_finite(tensor, name)


def info_nce_loss(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    temperature: float = 0.02,
    hard_negative_embeddings: torch.Tensor | None = None,
    reduction: str = "mean",
    label_offset: int = 0,
    candidate_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE with in-batch negatives (the VLM2Vec baseline), optionally with extra hard negatives.

    Row `i` of the logits is `[q_i . c_j for every candidate j] (+ hard-negative columns)`, divided by `temperature`,
    and its label is `i + label_offset`: query `i`'s positive is candidate row `i + label_offset`, every other
    candidate is a negative. Embeddings are assumed to be L2-normalised already (so dot products are cosines); they are
    not renormalised here. Computed in float32.

    Hard negatives come in two layouts:

    - `(batch_size, h, dim)`: per-query hard negatives (VLM2Vec-style); row `i` gets `h` extra columns
      `q_i . n_{i,m}`, so each query sees only its own hard negatives. Logits are `(batch_size, num_candidates + h)`.
    - `(m, dim)`: a shared pool (for instance the hard negatives of the whole batch, possibly gathered from every
      process); every query gets all `m` as extra columns. Logits are `(batch_size, num_candidates + m)`.

    In-batch false negatives: when two queries share a positive (the same corpus item, e.g. the VQA answer "yellow"),
    each one's copy of the other's positive is that same item, so counting it as a negative is wrong and caps the loss
    at `log 2`. Pass `candidate_keys` (one id per candidate row, equal ids = the same item) and every candidate with
    the same key as a query's positive, other than the positive itself, is left out of that query's softmax.

    Cross-process negatives: gather the candidates (and a 2-D hard-negative pool) with [`gather_with_grad`], keep the
    queries local, and pass `label_offset = rank * local_batch_size`, so that local query `i` points at its own
    positive inside the gathered candidates. Batch sizes must be equal on every rank.

    Args:
        query_embeddings (`torch.Tensor` of shape `(batch_size, dim)`):
            L2-normalised query embeddings.
        candidate_embeddings (`torch.Tensor` of shape `(num_candidates, dim)`):
            L2-normalised candidate embeddings, `num_candidates >= batch_size + label_offset`; row `i + label_offset`
            is the positive of query `i`.
        temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature.
        hard_negative_embeddings (`torch.Tensor`, *optional*):
            L2-normalised hard negatives, `(batch_size, h, dim)` per query or `(m, dim)` shared (see above).
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"`, `"sum"` or `"none"` (per-query losses of shape `(batch_size,)`).
        label_offset (`int`, *optional*, defaults to `0`):
            Index of query 0's positive among the candidates.
        candidate_keys (`torch.Tensor` of shape `(num_candidates,)`, *optional*):
            Integer item ids of the candidate rows (gathered like the candidates); duplicates of a query's positive
            are masked out of its negatives. Hard-negative columns are never masked.

    Returns:
        `torch.Tensor`: float32 loss, a scalar unless `reduction="none"`.

    Raises:
        `ValueError`: on shapes that do not fit together, an out-of-range `label_offset`, a non-positive temperature,
            an unknown reduction, or NaN/inf in an input.

    Example:

    ```python
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from unime_hf.losses import info_nce_loss
    >>> queries = F.normalize(torch.randn(4, 8), dim=-1)
    >>> candidates = F.normalize(torch.randn(4, 8), dim=-1)
    >>> hard_negatives = F.normalize(torch.randn(4, 2, 8), dim=-1)
    >>> loss = info_nce_loss(queries, candidates, hard_negative_embeddings=hard_negatives)
    ```
    """
    _check_embeddings(query_embeddings, "query_embeddings")
    _check_embeddings(candidate_embeddings, "candidate_embeddings")
    batch_size, dim = query_embeddings.shape
    num_candidates = candidate_embeddings.shape[0]
    if candidate_embeddings.shape[1] != dim:
        raise ValueError(
            f"`query_embeddings` and `candidate_embeddings` must have the same embedding size, got shapes "
            f"{tuple(query_embeddings.shape)} and {tuple(candidate_embeddings.shape)}."
        )
    if isinstance(label_offset, bool) or not isinstance(label_offset, int) or label_offset < 0:
        raise ValueError(f"`label_offset` must be an int >= 0, got {label_offset!r}.")
    if label_offset + batch_size > num_candidates:
        raise ValueError(
            f"`label_offset` + batch size must be <= the number of candidates: query i's positive is candidate row "
            f"i + label_offset, but label_offset={label_offset}, query shape {tuple(query_embeddings.shape)} and "
            f"candidate shape {tuple(candidate_embeddings.shape)}. When gathering across processes use "
            "label_offset = rank * local_batch_size."
        )
    _check_temperature(temperature)
    _check_reduction(reduction)

    queries = query_embeddings.float()
    logits = queries @ candidate_embeddings.float().T
    labels = torch.arange(batch_size, device=logits.device) + label_offset
    if candidate_keys is not None:
        logits = logits.masked_fill(duplicate_positive_mask(candidate_keys, labels, num_candidates), float("-inf"))
    if hard_negative_embeddings is not None:
        negatives = hard_negative_embeddings
        if negatives.dim() == 3:
            if negatives.shape[0] != batch_size or negatives.shape[2] != dim:
                raise ValueError(
                    f"Per-query `hard_negative_embeddings` must have shape (batch_size, h, dim) = ({batch_size}, h, "
                    f"{dim}), got {tuple(negatives.shape)}."
                )
            _check_finite(negatives, "hard_negative_embeddings")
            hard_logits = torch.einsum("bd,bhd->bh", queries, negatives.float())
        elif negatives.dim() == 2:
            if negatives.shape[1] != dim:
                raise ValueError(
                    f"Shared `hard_negative_embeddings` must have shape (m, dim) with dim={dim}, got "
                    f"{tuple(negatives.shape)}."
                )
            _check_finite(negatives, "hard_negative_embeddings")
            hard_logits = queries @ negatives.float().T
        else:
            raise ValueError(
                f"`hard_negative_embeddings` must be 3-D (batch_size, h, dim) or 2-D (m, dim), got shape "
                f"{tuple(negatives.shape)}."
            )
        logits = torch.cat([logits, hard_logits], dim=1)

    return F.cross_entropy(logits / temperature, labels, reduction=reduction)


def duplicate_positive_mask(candidate_keys: torch.Tensor, labels: torch.Tensor, num_candidates: int) -> torch.Tensor:
    """`(batch_size, num_candidates)` bool mask: True where a candidate is the same item as the query's positive
    (equal key) but not the positive's own column, i.e. an in-batch false negative."""
    if candidate_keys.dim() != 1 or candidate_keys.shape[0] != num_candidates:
        raise ValueError(
            f"`candidate_keys` must have shape (num_candidates,) = ({num_candidates},), got "
            f"{tuple(candidate_keys.shape)}."
        )
    keys = candidate_keys.to(labels.device)
    same = keys[labels].unsqueeze(1) == keys.unsqueeze(0)
    same[torch.arange(labels.shape[0], device=labels.device), labels] = False
    return same


def hard_negative_ce_loss(
    similarities: torch.Tensor,
    temperature: float = 0.02,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Cross-entropy over a query's positive and its hard negatives, with the positive at index 0.

    The ablation "judge-mined hard negatives, hard labels": the same `(batch_size, 1 + k)` similarities the
    distillation losses take, but the target is the positive alone instead of the judge's soft distribution. No
    in-batch negatives. Computed in float32.

    Args:
        similarities (`torch.Tensor` of shape `(batch_size, 1 + k)`):
            Model scores (cosine similarities) of each query with its candidates, positive at index 0.
        temperature (`float`, *optional*, defaults to `0.02`):
            Softmax temperature.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"`, `"sum"` or `"none"` (per-query losses of shape `(batch_size,)`).

    Returns:
        `torch.Tensor`: float32 loss, a scalar unless `reduction="none"`.

    Raises:
        `ValueError`: if `similarities` is not 2-D with at least 2 columns, the temperature is not a finite positive
            number, the reduction is unknown, or the input holds NaN or inf.

    Example:

    ```python
    >>> import torch
    >>> from unime_hf.losses import hard_negative_ce_loss
    >>> loss = hard_negative_ce_loss(torch.tensor([[0.8, 0.3, 0.1], [0.2, 0.6, 0.1]]))
    ```
    """
    if similarities.dim() != 2 or similarities.shape[1] < 2:
        raise ValueError(
            f"`similarities` must be 2-D `[batch, 1 + k]` with at least 2 columns (the positive first, then hard "
            f"negatives), got shape {tuple(similarities.shape)}."
        )
    _check_temperature(temperature)
    _check_reduction(reduction)
    _check_finite(similarities, "similarities")
    labels = torch.zeros(similarities.shape[0], dtype=torch.long, device=similarities.device)
    return F.cross_entropy(similarities.float() / temperature, labels, reduction=reduction)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    r"""All-gathers `tensor` along dim 0 from every `torch.distributed` process, keeping it differentiable.

    Uses the autograd-aware `torch.distributed.nn.functional.all_gather`: the backward pass sums, for the local shard,
    the gradients of every rank's loss (not only the local one), so with DDP's gradient averaging the update equals
    the gradient of the mean loss over ranks. Returns `tensor` unchanged when `torch.distributed` is unavailable, not
    initialised, or has a single process.

    The shard of rank `r` occupies rows `r * local_batch_size : (r + 1) * local_batch_size` of the result, so a caller
    computing [`info_nce_loss`] on local queries against gathered candidates passes
    `label_offset = rank * local_batch_size`. Every rank must pass a tensor of the same shape (equal local batch sizes;
    pad or drop the last incomplete batch), otherwise the collective fails or hangs.

    Args:
        tensor (`torch.Tensor` of shape `(local_batch_size, ...)`):
            The local shard, e.g. candidate embeddings.

    Returns:
        `torch.Tensor` of shape `(world_size * local_batch_size, ...)`: the shards of all ranks in rank order.

    Example:

    ```python
    >>> import torch.distributed as dist
    >>> from unime_hf.losses import gather_with_grad, info_nce_loss
    >>> all_candidates = gather_with_grad(candidates)  # doctest: +SKIP
    >>> offset = dist.get_rank() * queries.shape[0] if dist.is_initialized() else 0  # doctest: +SKIP
    >>> loss = info_nce_loss(queries, all_candidates, label_offset=offset)  # doctest: +SKIP
    ```
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    # Imported lazily: torch.distributed.nn pulls in RPC machinery that single-process users never need.
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)
