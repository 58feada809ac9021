"""The consistent-hash ring (no I/O)."""

from __future__ import annotations

from collections import Counter

import pytest

from app.shards import ShardRing, predicted_move_fraction


def keys(n=20000):
    return [f"app{i % 13}::channel-{i}" for i in range(n)]


def test_single_shard_takes_everything():
    ring = ShardRing(["only"])
    assert {ring.node_for(k) for k in keys(100)} == {"only"}


def test_the_same_key_always_maps_to_the_same_shard():
    ring = ShardRing(["a", "b", "c"])
    assert all(ring.node_for(k) == ShardRing(["a", "b", "c"]).node_for(k) for k in keys(500))


def test_keys_spread_over_all_shards():
    ring = ShardRing(["a", "b", "c"])
    counts = Counter(ring.node_for(k) for k in keys())
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > len(keys()) / 3 * 0.7


def test_adding_a_shard_moves_about_a_quarter_when_going_from_3_to_4():
    fraction = predicted_move_fraction(["a", "b", "c"], ["a", "b", "c", "d"])
    assert 0.15 < fraction < 0.35


def test_moved_keys_only_go_to_the_new_shard():
    before, after = ShardRing(["a", "b", "c"]), ShardRing(["a", "b", "c", "d"])
    assert {after.node_for(k) for k in before.moved_keys(after, keys(5000))} == {"d"}


def test_removing_a_shard_moves_only_its_keys():
    before, after = ShardRing(["a", "b", "c"]), ShardRing(["a", "b"])
    moved = before.moved_keys(after, keys(5000))
    assert {before.node_for(k) for k in moved} == {"c"}


def test_same_list_moves_nothing():
    assert predicted_move_fraction(["a", "b"], ["a", "b"]) == 0.0


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError):
        ShardRing(["a", "a"])
