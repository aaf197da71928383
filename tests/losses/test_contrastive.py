import math
import os
import socket
import sys
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from unime_hf.losses import gather_with_grad, hard_negative_ce_loss, info_nce_loss


def _unit(n: int, dim: int = 8) -> torch.Tensor:
    """`n` rows equal to the same unit vector."""
    return F.normalize(torch.ones(n, dim), dim=-1)


def test_info_nce_all_equal_embeddings_give_log_batch_size():
    loss = info_nce_loss(_unit(4), _unit(4))
    torch.testing.assert_close(loss, torch.tensor(math.log(4)))


def test_info_nce_all_equal_with_per_query_hard_negatives_gives_log_b_plus_h():
    loss = info_nce_loss(_unit(4), _unit(4), hard_negative_embeddings=_unit(4 * 3).view(4, 3, 8))
    torch.testing.assert_close(loss, torch.tensor(math.log(4 + 3)))


def test_info_nce_all_equal_with_shared_hard_negatives_gives_log_b_plus_m():
    loss = info_nce_loss(_unit(4), _unit(4), hard_negative_embeddings=_unit(5))
    torch.testing.assert_close(loss, torch.tensor(math.log(4 + 5)))


def test_info_nce_aligned_orthogonal_embeddings_give_zero():
    eye = torch.eye(6)
    loss = info_nce_loss(eye[:4], eye[:4].clone(), temperature=0.02)
    # Each row: positive logit 50, three negatives at 0: log(1 + 3 e^-50).
    assert 0 <= loss.item() < 1e-6


def test_info_nce_hand_computed_2x2():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    # Row 0 logits [0.6, 1.0], label 0; row 1 logits [0.8, 0.0], label 1; temperature 0.5 doubles them.
    row0 = -1.2 + math.log(math.exp(1.2) + math.exp(2.0))
    row1 = -0.0 + math.log(math.exp(1.6) + math.exp(0.0))
    per_row = info_nce_loss(queries, candidates, temperature=0.5, reduction="none")
    torch.testing.assert_close(per_row, torch.tensor([row0, row1]))
    torch.testing.assert_close(info_nce_loss(queries, candidates, temperature=0.5), torch.tensor((row0 + row1) / 2))
    torch.testing.assert_close(
        info_nce_loss(queries, candidates, temperature=0.5, reduction="sum"), torch.tensor(row0 + row1)
    )


def test_per_query_hard_negatives_only_reach_their_own_query():
    eye = torch.eye(4)
    queries, candidates = eye[:2], eye[:2].clone()
    # Query 0's hard negative is e1 (orthogonal to it), query 1's is e0 (orthogonal to it): both rows stay ~0.
    per_query = torch.stack([eye[1:2], eye[0:1]])
    per_row = info_nce_loss(queries, candidates, hard_negative_embeddings=per_query, reduction="none")
    assert per_row.max() < 1e-6
    # The same vectors as a shared pool reach every query: each row now has a second logit of 50, giving log 2.
    per_row = info_nce_loss(queries, candidates, hard_negative_embeddings=eye[[1, 0]], reduction="none")
    torch.testing.assert_close(per_row, torch.full((2,), math.log(2)), atol=1e-6, rtol=0)


def test_label_offset_points_at_gathered_positives():
    eye = torch.eye(6)
    queries = eye[2:4]
    candidates = eye[:6]  # as if gathered from 3 ranks of 2; these queries are rank 1's
    assert info_nce_loss(queries, candidates, label_offset=2) < 1e-6
    # Without the offset the labels point at the wrong rows: logit 0 against a competitor at 50.
    assert info_nce_loss(queries, candidates, label_offset=0) > 49
    logits = queries @ candidates.T / 0.02
    expected = F.cross_entropy(logits, torch.tensor([4, 5]))
    torch.testing.assert_close(info_nce_loss(queries, candidates, label_offset=4), expected)


def test_duplicate_positives_are_left_out_of_the_negatives():
    # Queries 0 and 2 share a positive (the same item, key 7): candidate rows 0 and 2 are equal vectors.
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    candidates = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.6, 0.8]])
    keys = torch.tensor([7, 3, 7])
    logits = queries @ candidates.T / 0.5
    # Row 0 (label 0) drops column 2; row 2 (label 2) drops column 0; row 1 keeps all three.
    row0 = -logits[0, 0] + torch.logsumexp(logits[0, [0, 1]], 0)
    row1 = -logits[1, 1] + torch.logsumexp(logits[1], 0)
    row2 = -logits[2, 2] + torch.logsumexp(logits[2, [1, 2]], 0)
    per_row = info_nce_loss(queries, candidates, temperature=0.5, reduction="none", candidate_keys=keys)
    torch.testing.assert_close(per_row, torch.stack([row0, row1, row2]))
    unmasked = info_nce_loss(queries, candidates, temperature=0.5, reduction="none")
    assert unmasked[0] > per_row[0] and unmasked[2] > per_row[2]
    torch.testing.assert_close(unmasked[1], per_row[1])


def test_all_equal_duplicates_give_zero_loss_once_masked():
    # Four copies of one positive: without masking log 4, with it every other column is a copy, so nothing is left.
    keys = torch.zeros(4, dtype=torch.long)
    torch.testing.assert_close(info_nce_loss(_unit(4), _unit(4)), torch.tensor(math.log(4)))
    torch.testing.assert_close(info_nce_loss(_unit(4), _unit(4), candidate_keys=keys), torch.tensor(0.0))
    # Hard-negative columns are never masked.
    hard = _unit(2)
    loss = info_nce_loss(_unit(4), _unit(4), hard_negative_embeddings=hard, candidate_keys=keys)
    torch.testing.assert_close(loss, torch.tensor(math.log(3)))


def test_duplicate_mask_with_label_offset_and_bad_keys():
    eye = torch.eye(4)
    keys = torch.tensor([5, 1, 5, 2])  # gathered from 2 ranks of 2; rank 1's query 0 has the positive of key 5
    candidates = eye[[0, 1, 0, 3]].clone()
    per_row = info_nce_loss(eye[[0, 3]], candidates, label_offset=2, candidate_keys=keys, reduction="none")
    assert per_row.max() < 1e-6  # column 0 (a copy at logit 50) is masked for the query whose label is column 2
    with pytest.raises(ValueError, match="candidate_keys"):
        info_nce_loss(eye[:2], eye[:2], candidate_keys=torch.tensor([1, 2, 3]))


def test_info_nce_bf16_inputs_give_float32_loss_and_finite_gradients():
    generator = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(4, 16, generator=generator), dim=-1).bfloat16().requires_grad_(True)
    candidates = F.normalize(torch.randn(4, 16, generator=generator), dim=-1).bfloat16().requires_grad_(True)
    negatives = F.normalize(torch.randn(4, 2, 16, generator=generator), dim=-1).bfloat16().requires_grad_(True)
    loss = info_nce_loss(queries, candidates, hard_negative_embeddings=negatives)
    assert loss.dtype == torch.float32
    loss.backward()
    for tensor in (queries, candidates, negatives):
        assert tensor.grad.dtype == torch.bfloat16
        assert torch.isfinite(tensor.grad.float()).all() and tensor.grad.abs().sum() > 0


def test_hard_negative_ce_hand_computed():
    # Logits [0.5, 0.0] at temperature 1: -0.5 + log(e^0.5 + 1).
    loss = hard_negative_ce_loss(torch.tensor([[0.5, 0.0]]), temperature=1.0)
    torch.testing.assert_close(loss, torch.tensor(-0.5 + math.log(math.exp(0.5) + 1.0)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hard_negative_ce_equals_cross_entropy_with_target_zero(reduction):
    similarities = torch.rand(5, 9, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = F.cross_entropy(similarities / 0.02, torch.zeros(5, dtype=torch.long), reduction=reduction)
    torch.testing.assert_close(hard_negative_ce_loss(similarities, reduction=reduction), expected)


def test_hard_negative_ce_extreme_bf16_gradients_are_finite():
    similarities = torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, -1.0]], dtype=torch.bfloat16, requires_grad=True)
    loss = hard_negative_ce_loss(similarities)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(similarities.grad.float()).all()


@pytest.mark.parametrize(
    ("queries", "candidates", "kwargs", "message"),
    [
        (torch.zeros(4), torch.zeros(4, 8), {}, "`query_embeddings` must be 2-D"),
        (torch.zeros(4, 8), torch.zeros(4, 2, 8), {}, "`candidate_embeddings` must be 2-D"),
        (torch.zeros(4, 8), torch.zeros(4, 6), {}, "same embedding size"),
        (torch.zeros(4, 8), torch.zeros(3, 8), {}, "number of candidates"),
        (torch.zeros(2, 8), torch.zeros(4, 8), {"label_offset": 3}, "label_offset=3"),
        (torch.zeros(2, 8), torch.zeros(4, 8), {"label_offset": -1}, "`label_offset` must be an int >= 0"),
        (torch.zeros(2, 8), torch.zeros(4, 8), {"label_offset": 1.0}, "`label_offset` must be an int >= 0"),
        (torch.zeros(2, 8), torch.zeros(2, 8), {"temperature": 0}, "temperature"),
        (torch.zeros(2, 8), torch.zeros(2, 8), {"reduction": "avg"}, "reduction"),
        (torch.full((2, 8), float("nan")), torch.zeros(2, 8), {}, "`query_embeddings` contains a non-finite"),
        (
            torch.zeros(2, 8),
            torch.zeros(2, 8),
            {"hard_negative_embeddings": torch.zeros(3, 1, 8)},
            r"\(batch_size, h, dim\) = \(2, h, 8\), got \(3, 1, 8\)",
        ),
        (torch.zeros(2, 8), torch.zeros(2, 8), {"hard_negative_embeddings": torch.zeros(2, 1, 4)}, r"got \(2, 1, 4\)"),
        (
            torch.zeros(2, 8),
            torch.zeros(2, 8),
            {"hard_negative_embeddings": torch.zeros(5, 4)},
            r"dim=8, got \(5, 4\)",
        ),
        (torch.zeros(2, 8), torch.zeros(2, 8), {"hard_negative_embeddings": torch.zeros(8)}, "3-D .* or 2-D"),
        (
            torch.zeros(2, 8),
            torch.zeros(2, 8),
            {"hard_negative_embeddings": torch.full((2, 1, 8), float("inf"))},
            "`hard_negative_embeddings` contains a non-finite",
        ),
    ],
)
def test_info_nce_invalid_inputs_raise(queries, candidates, kwargs, message):
    with pytest.raises(ValueError, match=message):
        info_nce_loss(queries, candidates, **kwargs)


@pytest.mark.parametrize(
    ("similarities", "kwargs", "message"),
    [
        (torch.zeros(4), {}, r"2-D .* got shape \(4,\)"),
        (torch.zeros(4, 1), {}, r"at least 2 columns.*\(4, 1\)"),
        (torch.zeros(4, 3), {"temperature": -1.0}, "temperature"),
        (torch.zeros(4, 3), {"reduction": "batchmean"}, "reduction"),
        (torch.tensor([[0.0, float("nan")]]), {}, "`similarities` contains a non-finite"),
    ],
)
def test_hard_negative_ce_invalid_inputs_raise(similarities, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hard_negative_ce_loss(similarities, **kwargs)


def test_gather_with_grad_without_distributed_returns_input():
    assert not dist.is_initialized()
    tensor = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(tensor) is tensor


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gather_worker(rank: int, world_size: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=30))
    try:
        local = torch.full((2, 3), float(rank + 1), requires_grad=True)
        gathered = gather_with_grad(local)
        expected = torch.cat([torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)])
        torch.testing.assert_close(gathered.detach(), expected)
        # Rank r's loss weights the gathered rows by (r + 1) * base, so the local shard's gradient is the sum over
        # both ranks' losses: (1 + 2) * base[own rows]. The own-slice-only trick would give (rank + 1) * base.
        base = torch.arange(12.0).view(4, 3)
        ((rank + 1) * base * gathered).sum().backward()
        torch.testing.assert_close(local.grad, 3 * base[2 * rank : 2 * rank + 2])

        # End to end: local queries against gathered candidates with label_offset = rank * local_batch.
        eye = torch.eye(4)
        queries = eye[2 * rank : 2 * rank + 2]
        candidates = gather_with_grad(queries.clone())
        assert info_nce_loss(queries, candidates, label_offset=rank * 2) < 1e-6
        dist.barrier()  # both ranks finish their collectives before either tears the group down
    finally:
        dist.destroy_process_group()
    # Every check above has passed (a failure raised, and mp.spawn reports it with its traceback). Leave without
    # the interpreter's normal finalisation: on this torch build a gloo worker thread left joinable after the
    # backward's collectives aborts the process at exit ("terminate called without an active exception", about
    # 1 run in 10 on a 2-core machine) after the group has been destroyed cleanly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_gather_with_grad_two_process_gloo():
    mp.spawn(_gather_worker, args=(2, _free_port()), nprocs=2, join=True)
