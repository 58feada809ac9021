"""Ring statistics of the admin panel (channel shares, move fractions): computed once per shard list and
off the event loop, so a preview never stalls the WebSocket clients of the process that serves it."""

from __future__ import annotations

import gevent
import pytest

import app.shards as shards
from app.models import Shard
from app.shards import (
    SAMPLES,
    ShardRing,
    channel_shares,
    off_the_event_loop,
    predicted_shard_move_fraction,
)

CONFIG = "redis://config:6379/0"


def node(name: str, port: int) -> Shard:
    return Shard(name, f"redis://node{port}:6379/0")


def test_channel_shares_add_up_to_one_and_follow_the_ring():
    listed = [node("a", 1), node("b", 2), node("c", 3)]
    shares = channel_shares(listed)
    assert list(shares) == ["a", "b", "c"]
    assert sum(shares.values()) == pytest.approx(1.0)
    ring = ShardRing(["a", "b", "c"])
    keys = [f"app{i % 97}::channel-{i}" for i in range(SAMPLES)]
    on_b = sum(1 for key in keys if ring.node_for(key) == "b")
    assert shares["b"] == on_b / SAMPLES
    assert all(0.2 < share < 0.5 for share in shares.values())  # ketama: near even, not exact


def test_a_single_shard_carries_every_channel_and_no_list_has_no_shares():
    assert channel_shares([node("only", 1)]) == {"only": 1.0}
    assert channel_shares([]) == {}


def test_shares_depend_on_names_not_addresses():
    assert channel_shares([node("a", 1), node("b", 2)]) == channel_shares([node("a", 7), node("b", 8)])


def test_ring_statistics_are_computed_once_per_shard_list():
    shards._shard_move_fraction.cache_clear()
    shards._channel_shares.cache_clear()
    before, after = [node("a", 1), node("b", 2)], [node("a", 1), node("b", 2), node("c", 3)]
    first = predicted_shard_move_fraction(before, after, CONFIG)
    assert predicted_shard_move_fraction(list(before), list(after), CONFIG) == first
    channel_shares(after)
    channel_shares(list(after))
    assert shards._shard_move_fraction.cache_info().hits == 1
    assert shards._channel_shares.cache_info().hits == 1
    # Another address under a kept name is another list: not answered from the cache.
    moved = predicted_shard_move_fraction(before, [node("a", 1), node("b", 9)], CONFIG)
    assert moved != first and shards._shard_move_fraction.cache_info().misses == 2


def count_ticks_during(work):
    """Run ``work`` in this greenlet while another greenlet ticks every 10 ms; the ticks seen meanwhile."""
    ticks = []

    def ticker():
        while True:
            gevent.sleep(0.01)
            ticks.append(1)

    background = gevent.spawn(ticker)
    gevent.sleep(0)  # the ticker is running
    try:
        started = len(ticks)
        work()
        return len(ticks) - started
    finally:
        background.kill()


def cold_preview():
    shards._shard_move_fraction.cache_clear()
    shards._channel_shares.cache_clear()
    current = [node(f"s{i}", i) for i in range(4)]
    proposed = [*current, node("s4", 4), node("s5", 5)]
    return current, proposed


def test_a_cold_preview_in_the_thread_pool_keeps_the_event_loop_running():
    current, proposed = cold_preview()

    def preview():
        off_the_event_loop(predicted_shard_move_fraction, current, proposed, CONFIG)
        off_the_event_loop(channel_shares, proposed)

    assert count_ticks_during(preview) >= 2


def test_the_same_preview_on_the_event_loop_would_stall_it():
    # The control of the test above: computed inline, not one tick gets through meanwhile.
    current, proposed = cold_preview()

    def preview():
        predicted_shard_move_fraction(current, proposed, CONFIG)
        channel_shares(proposed)

    assert count_ticks_during(preview) == 0


def test_the_thread_pool_returns_the_same_answer():
    current, proposed = cold_preview()
    in_pool = off_the_event_loop(predicted_shard_move_fraction, current, proposed, CONFIG)
    shards._shard_move_fraction.cache_clear()
    assert in_pool == predicted_shard_move_fraction(current, proposed, CONFIG)
