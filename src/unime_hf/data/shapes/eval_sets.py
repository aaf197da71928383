"""MMEB-eval sets: each query with its gold first and distractors dense in one-attribute-off items, all false."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence

from unime_hf.data.shapes.pairs import _pair
from unime_hf.data.shapes.sampling import (
    _spec_allowed,
    _spec_key,
    exact_spec,
    is_one_off,
    one_off_variants,
    spec_perturbations,
)
from unime_hf.data.shapes.scene import QuerySpec, Scene, largest, satisfies
from unime_hf.data.shapes.truth import world_truth
from unime_hf.data.shapes.world import Candidate, _Row, _World


def _fill(
    rng: random.Random,
    gold: Candidate,
    hard: Sequence[Candidate],
    pool: Sequence[Candidate],
    is_false: Callable[[Candidate], bool],
    wanted: int,
    fraction: float,
) -> list[Candidate]:
    """Gold first, then up to ``fraction`` of the distractors from `hard`, the rest from `pool`, in random order;
    every distractor unique and `is_false`."""
    seen = {gold[:2]}
    hard = [c for c in _unique(hard) if c[:2] not in seen]
    rng.shuffle(hard)
    chosen = hard[: int(round(fraction * (wanted - 1)))]
    seen |= {c[:2] for c in chosen}
    rest = list(pool)
    rng.shuffle(rest)
    for candidate in rest:
        if len(chosen) >= wanted - 1:
            break
        if candidate[:2] not in seen and is_false(candidate):
            chosen.append(candidate)
            seen.add(candidate[:2])
    rng.shuffle(chosen)
    return [gold, *chosen]


def _unique(items: Iterable[Candidate]) -> Iterator[Candidate]:
    seen: set[tuple[str, str]] = set()
    for item in items:
        if item[:2] not in seen:
            seen.add(item[:2])
            yield item


def _eval_scene_filter(world: _World, task: str, heldout: bool) -> Callable[[Scene], bool] | None:
    """Classification needs a single largest object (held out: of a held-out combination)."""
    if task != "classification":
        return None

    def accept(scene: Scene) -> bool:
        big = largest(scene)
        return big is not None and (not heldout or (big.colour, big.shape) in world.heldout)

    return accept


def _eval_set(world: _World, rng: random.Random, task: str, heldout: bool, n_queries: int) -> list[_Row]:
    """`n_queries` rows of `task`, each with its gold at index 0 and distractors all false for the query."""
    cfg = world.config
    combos = world.all_combos if heldout else world.seen
    allowed, folder = set(combos), ("heldout" if heldout else "eval")
    accept = _eval_scene_filter(world, task, heldout)
    pending: list[tuple[_Row, Scene, list[Candidate]]] = []
    for _ in range(n_queries):
        scene = world.new_scene(rng, combos, world.heldout if heldout else (), accept)
        row = _pair(world, rng, task, world.add_scene(scene, folder), evaluation=True, heldout=heldout)
        pending.append((row, scene, _hard_candidates(world, rng, task, row, scene, allowed, folder)))
    pool = _shared_pool(world, task, pending, allowed)
    rows = []
    for row, scene, hard in pending:
        gold = row.candidates[0]
        is_false = _falsifier(world, task, row, scene)
        row.candidates = _fill(rng, gold, hard, pool, is_false, cfg.candidates, cfg.hard_negative_fraction)
        _check_eval_row(world, row)
        row.meta["hard_negatives"] = [i for i, c in enumerate(row.candidates) if i and is_one_off(gold[2], c[2])]
        rows.append(row)
    return rows


def _falsifier(world: _World, task: str, row: _Row, scene: Scene) -> Callable[[Candidate], bool]:
    """A fast test that a candidate is false for the row's query (every eval row is re-checked by the truth)."""
    if task == "t2i":
        spec = QuerySpec.from_json(row.meta["spec"])
        return lambda candidate: not satisfies(world.scenes[candidate[1]], spec)
    if task == "i2t":
        return lambda candidate: not satisfies(scene, world.spec(candidate[0]))
    gold = row.candidates[0]
    return lambda candidate: candidate[:2] != gold[:2]  # one answer, label or crop is right


def _hard_candidates(
    world: _World, rng: random.Random, task: str, row: _Row, scene: Scene, allowed: set, folder: str
) -> list[Candidate]:
    """The gold's one-attribute-off neighbours that are false for the query."""
    gold = row.candidates[0]
    if task == "t2i":
        spec = QuerySpec.from_json(row.meta["spec"])
        variants = [v for v in one_off_variants(scene, world.vocab, allowed) if not satisfies(v, spec)]
        # eval images stay apart from training images (a variant may already be another eval image)
        variants = [
            v for v in variants if world.is_new(v) or world.signatures[v.signature].startswith(f"images/{folder}")
        ]
        rng.shuffle(variants)
        budget = int(round(world.config.hard_negative_fraction * (world.config.candidates - 1)))
        return [
            (world.image_candidate(), world.add_scene(v, folder), ("scene", v.signature)) for v in variants[:budget]
        ]
    if task == "i2t":
        spec = QuerySpec.from_json(row.meta["spec"])
        if spec.exact:
            others = [exact_spec(v) for v in one_off_variants(scene, world.vocab, allowed)]
        else:
            others = [s for s in spec_perturbations(spec, world.vocab) if _spec_allowed(s, allowed)]
        return [(world.caption(s), "", _spec_key(s)) for s in others if not satisfies(scene, s)]
    return [c for c in world.pool(task, allowed) if is_one_off(gold[2], c[2])]


def _shared_pool(world: _World, task: str, pending: list, allowed: set) -> list[Candidate]:
    """Distractors any query of the set may use: the set's images (t2i), its captions (i2t), or the task's pool."""
    if task == "t2i":
        return list(_unique(c for row, _, hard in pending for c in (row.candidates[0], *hard)))
    if task == "i2t":
        items = []
        for row, scene, hard in pending:
            items.append((world.caption(exact_spec(scene)), "", _spec_key(exact_spec(scene))))
            items += [row.candidates[0], *hard]
        return list(_unique(items))
    return world.pool(task, allowed)


def _check_eval_row(world: _World, row: _Row) -> None:
    query = (row.query_text, row.query_image)
    verdicts = [world_truth(world.scenes, world.crops, world.texts, query, c[:2]) for c in row.candidates]
    if not verdicts[0] or any(verdicts[1:]):
        raise RuntimeError(f"eval row {row.query_text!r}: truth of candidates {verdicts}")  # a generator bug
