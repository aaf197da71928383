"""Resumable, process-parallel work split into fixed row shards.

A mining stage (retrieve, judge, ...) processes `num_rows` rows in shards of `shard_size` rows. With an output
directory, each finished shard is written atomically as one safetensors file next to a `manifest.json` that records
the stage's configuration fingerprint, so that:

- a rerun with the same configuration skips the shards already on disk (resume after an interruption);
- a rerun with another configuration in the same directory raises, or discards the old shards with `overwrite=True`;
- under `accelerate launch` with n processes, process i takes shards i, i + n, i + 2n, ... and every process can load
  the full result after `wait_for_everyone()`.

Layout of one stage: `<output_dir>/<name>/manifest.json` and `<output_dir>/<name>/shard-00003-of-00010.safetensors`.
Without an output directory the runner keeps shards in memory and runs every shard in the current process.

A shard holds named numpy arrays (concatenated along the first axis by [`ShardedRunner.load_all`]) and ragged
columns (a list with one sequence of numbers per row, stored flat with offsets) such as the per-candidate scores of
the judge stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_OFFSETS_SUFFIX = ".__offsets__"

ShardValue = np.ndarray | Sequence[Sequence[float] | np.ndarray]


def shard_ranges(num_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """The `[start, stop)` row range of every shard, in order.

    Example:

    ```python
    >>> shard_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    ```
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}.")
    return [(start, min(start + shard_size, num_rows)) for start in range(0, num_rows, shard_size)]


def pack_ragged(
    rows: Sequence[Sequence[float] | np.ndarray], dtype: np.dtype | type | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten one variable-length sequence per row into `(values, offsets)`.

    Row `i` is `values[offsets[i] : offsets[i + 1]]`; [`unpack_ragged`] is the inverse.
    """
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    parts = [np.asarray(row, dtype=dtype).reshape(-1) for row in rows]
    if parts:
        values = np.concatenate(parts)
    else:
        values = np.zeros(0, dtype=dtype or np.float32)
    if dtype is not None:
        values = values.astype(dtype, copy=False)
    return values, offsets


def unpack_ragged(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of [`pack_ragged`]: one array per row."""
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _canonical(obj: Any) -> Any:
    """JSON round trip, so that tuples/lists and int/float keys compare as they will after reading the manifest."""
    return json.loads(json.dumps(obj, sort_keys=True))


class ShardedRunner:
    """Bookkeeping for one resumable, shardable stage of work.

    Args:
        output_dir (`str` or `os.PathLike`, *optional*):
            Root directory of the run. The stage writes under `output_dir/name`. `None` keeps shards in memory
            (nothing is resumable, and every process runs every shard).
        name (`str`):
            Name of the stage, e.g. `"corpus_embeddings"`; also the sub-directory name.
        fingerprint (`dict`):
            JSON-serialisable description of everything that determines the shards' content (model, top-k,
            threshold, a hash of the input data, ...). A different fingerprint in the same directory is an error.
        num_rows (`int`):
            Number of rows the stage processes.
        shard_size (`int`):
            Rows per shard (the last shard may be smaller).
        overwrite (`bool`, *optional*, defaults to `False`):
            If `True`, shards written under another fingerprint are deleted instead of raising. Shards written under
            the same fingerprint are always reused.
        state (`accelerate.PartialState`, *optional*):
            The distributed state. Defaults to `accelerate.PartialState()` when accelerate is installed, else a
            single process.

    Example:

    ```python
    >>> runner = ShardedRunner("out", "judge", {"model": "judge-7b", "beta": 0.01}, num_rows=1000, shard_size=100)
    >>> for shard in runner.pending_shards():
    ...     start, stop = runner.shard_range(shard)
    ...     runner.write_shard(shard, {"scores": [[0.1, 0.9]] * (stop - start)})
    >>> runner.wait_for_everyone()
    >>> scores = runner.load_all()["scores"]  # list of 1000 arrays
    ```
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None,
        name: str,
        fingerprint: Mapping[str, Any],
        num_rows: int,
        shard_size: int,
        overwrite: bool = False,
        state: Any = None,
    ) -> None:
        self.name = name
        self.num_rows = num_rows
        self.shard_size = shard_size
        self.ranges = shard_ranges(num_rows, shard_size)
        self.fingerprint = _canonical(dict(fingerprint))
        self.overwrite = overwrite
        self.state = state if state is not None else default_state()
        self.directory = Path(output_dir) / name if output_dir is not None else None
        self._memory: dict[int, dict[str, Any]] = {}
        if self.directory is not None:
            self._prepare_directory()

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def num_shards(self) -> int:
        return len(self.ranges)

    @property
    def num_processes(self) -> int:
        return self.state.num_processes if self.directory is not None else 1

    @property
    def process_index(self) -> int:
        return self.state.process_index if self.directory is not None else 0

    @property
    def is_main_process(self) -> bool:
        return self.state.is_main_process

    @property
    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "num_rows": self.num_rows,
            "shard_size": self.shard_size,
            "num_shards": self.num_shards,
            "fingerprint": self.fingerprint,
        }

    def shard_range(self, shard: int) -> tuple[int, int]:
        """The `[start, stop)` rows of `shard`."""
        return self.ranges[shard]

    def shard_path(self, shard: int) -> Path:
        if self.directory is None:
            raise ValueError("This runner has no output_dir; its shards live in memory.")
        return self.directory / f"shard-{shard:05d}-of-{self.num_shards:05d}.safetensors"

    # ------------------------------------------------------------------------------------------------- manifest
    def _prepare_directory(self) -> None:
        if self.directory is None:
            return
        manifest_path = self.directory / MANIFEST_NAME
        stale = False
        if manifest_path.exists():
            try:
                existing = json.loads(manifest_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{manifest_path} is not valid JSON ({err}). Delete the directory or pass overwrite=True."
                ) from err
            differences = _manifest_differences(existing, self.manifest)
            if differences:
                if not self.overwrite:
                    raise ValueError(
                        f"{self.directory} holds results of stage {self.name!r} computed with another configuration "
                        f"({'; '.join(differences)}). Use another output_dir, delete it, or pass overwrite=True to "
                        "recompute."
                    )
                stale = True
        elif self.directory.exists() and any(self.directory.glob("shard-*.safetensors")):
            if not self.overwrite:
                raise ValueError(
                    f"{self.directory} holds shards but no {MANIFEST_NAME}; they cannot be trusted. Delete the "
                    "directory or pass overwrite=True."
                )
            stale = True
        # Every process has decided the same way from the same files before anyone writes.
        self.state.wait_for_everyone()
        if self.is_main_process:
            if stale:
                logger.warning(
                    "Discarding results of stage %r in %s (configuration changed).", self.name, self.directory
                )
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob(".tmp-*"):  # partial writes of an interrupted run
                leftover.unlink(missing_ok=True)
            if stale or not manifest_path.exists():
                _atomic_write_bytes(manifest_path, json.dumps(self.manifest, indent=2, sort_keys=True).encode())
        self.state.wait_for_everyone()

    # ---------------------------------------------------------------------------------------------------- shards
    def is_done(self, shard: int) -> bool:
        if self.directory is None:
            return shard in self._memory
        return self.shard_path(shard).exists()

    def missing_shards(self) -> list[int]:
        """All shards (of every process) not finished yet."""
        return [shard for shard in range(self.num_shards) if not self.is_done(shard)]

    def assigned_shards(self) -> list[int]:
        """The shards of this process: `process_index, process_index + num_processes, ...`."""
        return list(range(self.process_index, self.num_shards, self.num_processes))

    def pending_shards(self) -> list[int]:
        """The shards of this process that are not finished yet."""
        return [shard for shard in self.assigned_shards() if not self.is_done(shard)]

    def num_pending_rows(self) -> int:
        return sum(stop - start for start, stop in (self.ranges[s] for s in self.pending_shards()))

    def write_shard(self, shard: int, data: Mapping[str, ShardValue]) -> None:
        """Store the result of `shard` (atomically when on disk).

        Args:
            shard (`int`): Shard index.
            data (`dict`): Column name -> numpy array with one entry per row along axis 0, or a list with one
                sequence of numbers per row (a ragged column). Every column must have `stop - start` rows.
        """
        start, stop = self.shard_range(shard)
        tensors: dict[str, np.ndarray] = {}
        kinds: dict[str, str] = {}
        for key, value in data.items():
            if key.endswith(_OFFSETS_SUFFIX):
                raise ValueError(f"Column names may not end with {_OFFSETS_SUFFIX!r}: {key!r}.")
            if isinstance(value, np.ndarray):
                array = np.ascontiguousarray(value)
                rows = array.shape[0] if array.ndim else -1
                tensors[key] = array
                kinds[key] = "array"
            else:
                rows = len(value)
                tensors[key], tensors[key + _OFFSETS_SUFFIX] = pack_ragged(value)
                kinds[key] = "ragged"
            if rows != stop - start:
                raise ValueError(
                    f"Column {key!r} of shard {shard} of stage {self.name!r} has {rows} rows; expected {stop - start} "
                    f"(rows {start}..{stop - 1})."
                )
        if self.directory is None:
            self._memory[shard] = {
                key: value if kinds[key] == "array" else [np.asarray(row) for row in value]
                for key, value in data.items()
            }
            return
        from safetensors.numpy import save_file

        metadata = {"kinds": json.dumps(kinds), "start": str(start), "stop": str(stop)}
        path = self.shard_path(shard)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_shard(self, shard: int) -> dict[str, np.ndarray | list[np.ndarray]]:
        """The data written for `shard`; ragged columns come back as one array per row."""
        if self.directory is None:
            if shard not in self._memory:
                raise KeyError(f"Shard {shard} of stage {self.name!r} has not been written.")
            return dict(self._memory[shard])
        from safetensors import safe_open
        from safetensors.numpy import load_file

        path = self.shard_path(shard)
        if not path.exists():
            raise FileNotFoundError(f"Shard {shard} of stage {self.name!r} is missing: {path}.")
        with safe_open(str(path), framework="numpy") as handle:
            kinds = json.loads((handle.metadata() or {}).get("kinds", "{}"))
        tensors = load_file(str(path))
        out: dict[str, np.ndarray | list[np.ndarray]] = {}
        for key, kind in kinds.items():
            out[key] = (
                unpack_ragged(tensors[key], tensors[key + _OFFSETS_SUFFIX]) if kind == "ragged" else tensors[key]
            )
        return out

    def load_all(self) -> dict[str, np.ndarray | list[np.ndarray]]:
        """Every shard concatenated in row order (arrays along axis 0, ragged columns as one list)."""
        missing = self.missing_shards()
        if missing:
            raise RuntimeError(
                f"Stage {self.name!r} is incomplete: shards {missing[:10]}{'...' if len(missing) > 10 else ''} "
                "are missing. Did every process finish?"
            )
        out: dict[str, np.ndarray | list[np.ndarray]] = {}
        # Arrays are filled into one preallocated array shard by shard, so loading needs no second full copy.
        for shard, (start, stop) in enumerate(self.ranges):
            for key, value in self.load_shard(shard).items():
                if isinstance(value, np.ndarray):
                    if key not in out:
                        out[key] = np.empty((self.num_rows, *value.shape[1:]), dtype=value.dtype)
                    out[key][start:stop] = value
                else:
                    out.setdefault(key, []).extend(value)
        return out

    def wait_for_everyone(self) -> None:
        """Barrier across processes (a no-op with one process or in memory)."""
        if self.directory is not None:
            self.state.wait_for_everyone()


class _SingleProcessState:
    num_processes = 1
    process_index = 0
    is_main_process = True
    is_local_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def default_state() -> Any:
    """`accelerate.PartialState()`; on a machine without accelerator it is created with `cpu=True`.

    Without `cpu=True`, `PartialState` ignores the ranks of a multi-process launch (`accelerate launch --multi_gpu
    --num_processes n` or `torchrun`) on a CPU-only machine and every process believes it is alone. An already
    initialised state (e.g. from an `Accelerator`) is returned as it is.
    """
    try:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env
    except ImportError:
        return _SingleProcessState()
    import torch

    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not has_accelerator)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, desc: str, show: bool = True, unit: str = "row") -> Any:
    """A tqdm bar usable as a context manager, or a silent stand-in when `show` is `False`."""
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)




def _manifest_differences(existing: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    differences = []
    for key in ("format_version", "num_rows", "shard_size"):
        if existing.get(key) != expected[key]:
            differences.append(f"{key}: {existing.get(key)!r} on disk vs {expected[key]!r} now")
    old, new = existing.get("fingerprint", {}) or {}, expected["fingerprint"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            differences.append(f"{key}: {old.get(key)!r} on disk vs {new.get(key)!r} now")
    return differences


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hash_dataset(dataset: Any, columns: Sequence[str], batch_size: int = 10_000) -> str:
    """Content hash of a `datasets.Dataset`'s `columns` (those present), independent of how its table is chunked.

    Stages put it in their shard fingerprints, so a rerun on changed data is detected.
    """
    present = [column for column in columns if column in dataset.column_names]
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(json.dumps([present, len(dataset)]).encode())
    for batch in dataset.select_columns(present).with_format("arrow").iter(batch_size=batch_size):
        for column in present:
            hasher.update(json.dumps(batch.column(column).to_pylist(), default=repr).encode())
    return hasher.hexdigest()
