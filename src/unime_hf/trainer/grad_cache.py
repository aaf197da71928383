# Copyright 2026 The unime-hf authors. Licensed under the Apache License, Version 2.0.
"""GradCache: the gradients of a large contrastive batch with the activation memory of one chunk.

A batch loss over embeddings only needs the model through the embeddings, so its gradient factorises
(Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):

1. embed every chunk without building a graph, remembering the random state before each chunk;
2. compute the loss on the cached embeddings (leaf tensors) and its gradient with respect to them;
3. for each chunk, embed it again with the same random state (same dropout masks) and back-propagate the
   cached gradient through it: `backward(sum(embedding * cached_gradient))`.

Step 3 accumulates exactly the parameter gradients of the full-batch loss, while only one chunk's activations are
alive at a time. [`EmbeddingDistillTrainer`] calls [`grad_cache_step`] from its `training_step`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch


class RandomState:
    """The CPU and (when used) CUDA random states at one point, to replay dropout in a second forward pass."""

    def __init__(self, device: torch.device | None = None):
        self.cpu_state = torch.get_rng_state()
        self.device = device if device is not None and device.type == "cuda" else None
        self.cuda_state = torch.cuda.get_rng_state(self.device) if self.device is not None else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block with the recorded random state; the surrounding random state is restored afterwards."""
        devices = [self.device] if self.device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu_state)
            if self.device is not None:
                torch.cuda.set_rng_state(self.cuda_state, self.device)
            yield


def grad_cache_step(
    embed: Callable[[Mapping[str, Any]], torch.Tensor],
    chunks: Mapping[str, Sequence[Mapping[str, Any]]],
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    device: torch.device | None = None,
    num_backward_passes: int | None = None,
) -> torch.Tensor:
    r"""One GradCache forward/backward: accumulates into `.grad` the parameter gradients of `loss_fn` over the
    embeddings of all chunks, holding one chunk's activations at a time.

    Args:
        embed (`Callable`):
            Maps one chunk of model inputs to its embeddings `(chunk_rows, dim)`; called twice per chunk (without
            and with gradient).
        chunks (`Mapping[str, Sequence[Mapping]]`):
            Model inputs per side, e.g. `{"query": [chunk, ...], "candidate": [chunk, ...]}`. A side's embeddings
            are the concatenation of its chunks' embeddings, in order.
        loss_fn (`Callable`):
            Maps `{side: embeddings}` to the scalar loss to differentiate (already scaled for gradient
            accumulation). May use collectives (e.g. `gather_with_grad`); every process calls it once.
        backward (`Callable`, *optional*):
            Back-propagates a scalar, e.g. `accelerator.backward`; defaults to `Tensor.backward`.
        no_sync (`Callable`, *optional*):
            Returns the context in which all but the last backward pass run (e.g. DDP's `no_sync`), so gradients
            are synchronised once per step.
        device (`torch.device`, *optional*):
            The device whose random state is replayed besides the CPU's (CUDA only).
        num_backward_passes (`int`, *optional*):
            Run exactly this many backward passes (at least the number of chunks): the first chunk is run again with
            a zero gradient to make up the difference. DeepSpeed ZeRO-2 reduces gradients in every backward pass,
            so every process must run as many as the others, whatever its number of chunks.

    Returns:
        `torch.Tensor`: the detached loss.

    Example:

    ```python
    >>> def embed(chunk):
    ...     return model(**chunk).embeddings
    >>> def loss_fn(embeddings):
    ...     return info_nce_loss(embeddings["query"], embeddings["candidate"])
    >>> loss = grad_cache_step(embed, {"query": query_chunks, "candidate": candidate_chunks}, loss_fn)
    ```
    """
    backward = backward if backward is not None else torch.Tensor.backward
    no_sync = no_sync if no_sync is not None else contextlib.nullcontext

    # 1. Embeddings without a graph; the random state before each chunk is kept to replay its dropout masks.
    states: dict[str, list[RandomState]] = {}
    cached: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for side, side_chunks in chunks.items():
            states[side], pieces = [], []
            for chunk in side_chunks:
                states[side].append(RandomState(device))
                pieces.append(embed(chunk))
            cached[side] = torch.cat(pieces).detach().requires_grad_()

    # 2. Loss on the cached embeddings and its gradient with respect to them.
    with torch.enable_grad():
        loss = loss_fn(cached)
        gradients = torch.autograd.grad(loss, list(cached.values()))
    gradients_by_side = dict(zip(cached, gradients))

    # 3. Re-embed each chunk with gradient and push the cached gradient through it.
    work = [(side, i, chunk) for side, side_chunks in chunks.items() for i, chunk in enumerate(side_chunks)]
    if num_backward_passes is not None and num_backward_passes > len(work):
        # Padding passes come first, so the last pass (the one that synchronises) stays a real one.
        work = [(None, 0, work[0][2])] * (num_backward_passes - len(work)) + work
    first_side = next(iter(chunks))
    offsets = {side: 0 for side in chunks}
    for position, (side, i, chunk) in enumerate(work):
        # DDP decides in forward whether the backward pass synchronises, so the context spans both.
        context = no_sync() if position < len(work) - 1 else contextlib.nullcontext()
        with context:
            with states[side if side is not None else first_side][i].replay():
                embeddings = embed(chunk)
            if side is None:
                gradient = torch.zeros_like(embeddings)
            else:
                rows = embeddings.shape[0]
                gradient = gradients_by_side[side][offsets[side] : offsets[side] + rows]
                offsets[side] += rows
            backward(torch.sum(embeddings * gradient.to(embeddings.dtype)))
    return loss.detach()
