"""grad_cache_step gives the gradients of the plain full-batch path, dropout included."""

from __future__ import annotations

import torch
from torch import nn

from unime_hf.losses import info_nce_loss
from unime_hf.trainer.grad_cache import RandomState, grad_cache_step


class _Encoder(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(x), dim=-1)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def _loss(embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
    return info_nce_loss(embeddings["query"], embeddings["candidate"], temperature=0.05)


def test_chunked_gradients_equal_full_batch_gradients():
    torch.manual_seed(0)
    model = _Encoder()
    queries, candidates = torch.randn(7, 6), torch.randn(7, 6)

    model.zero_grad()
    plain = _loss({"query": model(queries), "candidate": model(candidates)})
    plain.backward()
    expected = _grads(model)

    model.zero_grad()
    chunks = {"query": list(queries.split(3)), "candidate": list(candidates.split(2))}
    cached = grad_cache_step(model, chunks, _loss)
    torch.testing.assert_close(cached, plain.detach())
    for got, want in zip(_grads(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_dropout_masks_are_replayed():
    model = _Encoder(dropout=0.5)
    queries, candidates = torch.randn(4, 6), torch.randn(4, 6)

    torch.manual_seed(1)
    model.zero_grad()
    _loss({"query": model(queries), "candidate": model(candidates)}).backward()
    expected = _grads(model)

    torch.manual_seed(1)
    model.zero_grad()
    grad_cache_step(model, {"query": [queries], "candidate": [candidates]}, _loss)
    for got, want in zip(_grads(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_no_sync_wraps_all_but_the_last_backward():
    model = _Encoder()
    entered = []

    class Context:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    chunks = {"query": list(torch.randn(4, 6).split(2)), "candidate": list(torch.randn(4, 6).split(2))}
    grad_cache_step(model, chunks, _loss, no_sync=Context)
    assert len(entered) == 3


def test_random_state_replay_restores_the_outer_stream():
    torch.manual_seed(3)
    state = RandomState()
    first = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(3)
    torch.rand(3)
    with state.replay():
        torch.testing.assert_close(torch.rand(3), first)
    torch.testing.assert_close(torch.rand(3), after)
