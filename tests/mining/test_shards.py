"""The generic shard runner: layout, atomic writes, resume, fingerprint checks, process split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unime_hf.mining.shards import ShardedRunner, pack_ragged, shard_ranges, unpack_ragged


class FakeState:
    """A stand-in for `accelerate.PartialState` as seen by one of several processes."""

    def __init__(self, process_index: int, num_processes: int) -> None:
        self.process_index = process_index
        self.num_processes = num_processes
        self.is_main_process = process_index == 0
        self.is_local_main_process = self.is_main_process
        self.barriers = 0

    def wait_for_everyone(self) -> None:
        self.barriers += 1


def fill(runner: ShardedRunner, shards: list[int] | None = None) -> None:
    for shard in runner.pending_shards() if shards is None else shards:
        start, stop = runner.shard_range(shard)
        rows = np.arange(start, stop)
        runner.write_shard(
            shard, {"row": rows, "vec": np.stack([rows, -rows], axis=1).astype(np.float32),
                    "scores": [[float(r)] * (r % 3) for r in rows]}
        )  # fmt: skip


def test_shard_ranges_and_ragged_round_trip():
    assert shard_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert shard_ranges(0, 3) == []
    with pytest.raises(ValueError):
        shard_ranges(3, 0)
    values, offsets = pack_ragged([[1.0, 2.0], [], [3.0]])
    assert values.tolist() == [1.0, 2.0, 3.0] and offsets.tolist() == [0, 2, 2, 3]
    assert [row.tolist() for row in unpack_ragged(values, offsets)] == [[1.0, 2.0], [], [3.0]]


@pytest.mark.parametrize("on_disk", [True, False])
def test_write_and_load_all(tmp_path, on_disk):
    runner = ShardedRunner(tmp_path if on_disk else None, "stage", {"a": 1}, num_rows=7, shard_size=3)
    assert runner.pending_shards() == [0, 1, 2]
    fill(runner)
    assert runner.pending_shards() == [] and runner.missing_shards() == []
    data = runner.load_all()
    assert data["row"].tolist() == list(range(7))
    assert data["vec"].shape == (7, 2) and data["vec"].dtype == np.float32
    assert [row.tolist() for row in data["scores"]] == [[float(r)] * (r % 3) for r in range(7)]
    if on_disk:
        names = sorted(p.name for p in (tmp_path / "stage").iterdir())
        assert names == ["manifest.json"] + [f"shard-{i:05d}-of-00003.safetensors" for i in range(3)]
        manifest = json.loads((tmp_path / "stage" / "manifest.json").read_text())
        assert manifest["fingerprint"] == {"a": 1} and manifest["num_rows"] == 7 and manifest["shard_size"] == 3


def test_resume_skips_finished_shards_and_cleans_partial_writes(tmp_path):
    runner = ShardedRunner(tmp_path, "stage", {"a": 1}, num_rows=7, shard_size=3)
    fill(runner, [0, 2])
    (tmp_path / "stage" / ".tmp-crashed").write_bytes(b"partial")
    resumed = ShardedRunner(tmp_path, "stage", {"a": 1}, num_rows=7, shard_size=3)
    assert resumed.pending_shards() == [1]
    assert not (tmp_path / "stage" / ".tmp-crashed").exists()
    with pytest.raises(RuntimeError, match=r"shards \[1\] are missing"):
        resumed.load_all()
    fill(resumed)
    assert resumed.load_all()["row"].tolist() == list(range(7))


def test_other_fingerprint_raises_unless_overwrite(tmp_path):
    fill(ShardedRunner(tmp_path, "stage", {"model": "a", "top_k": 50}, num_rows=7, shard_size=3))
    with pytest.raises(ValueError, match="top_k: 50 on disk vs 10 now.*overwrite=True"):
        ShardedRunner(tmp_path, "stage", {"model": "a", "top_k": 10}, num_rows=7, shard_size=3)
    with pytest.raises(ValueError, match="shard_size: 3 on disk vs 2 now"):
        ShardedRunner(tmp_path, "stage", {"model": "a", "top_k": 50}, num_rows=7, shard_size=2)
    fresh = ShardedRunner(tmp_path, "stage", {"model": "a", "top_k": 10}, num_rows=7, shard_size=3, overwrite=True)
    assert fresh.pending_shards() == [0, 1, 2]
    # same fingerprint with overwrite=True: finished shards are kept
    fill(fresh, [1])
    again = ShardedRunner(tmp_path, "stage", {"model": "a", "top_k": 10}, num_rows=7, shard_size=3, overwrite=True)
    assert again.pending_shards() == [0, 2]


def test_processes_take_interleaved_shards(tmp_path):
    states = [FakeState(i, 3) for i in range(3)]
    runners = [ShardedRunner(tmp_path, "stage", {}, num_rows=20, shard_size=2, state=s) for s in states]
    assert [r.pending_shards() for r in runners] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    for runner in runners:
        fill(runner)
    assert all(r.missing_shards() == [] for r in runners)
    assert runners[2].load_all()["row"].tolist() == list(range(20))
    assert all(state.barriers == 2 for state in states)


def test_bad_shard_data(tmp_path):
    runner = ShardedRunner(tmp_path, "stage", {}, num_rows=4, shard_size=2)
    with pytest.raises(ValueError, match="has 3 rows; expected 2"):
        runner.write_shard(0, {"x": np.zeros(3)})
    assert runner.pending_shards() == [0, 1]
    (tmp_path / "stage" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ShardedRunner(tmp_path, "stage", {}, num_rows=4, shard_size=2)
