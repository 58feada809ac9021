"""Subscription delivery without Redis: push ids, batching, and the history/live switch-over."""

from __future__ import annotations

import json

import gevent

from app import protocol
from app.positions import parse_position
from app.subscription import Subscription


class Collector:
    """The sink side of a subscription: what would be queued for the client."""

    def __init__(self):
        self.pushes = []

    def send_payload(self, payload):
        self.pushes.append(json.loads(payload))

    def send_push(self, counter, subscription_part, tail):
        self.send_payload(b"".join((protocol.PUSH_HEAD, b"%d" % counter, subscription_part, tail)))


def make(batch_size=1, flush=0.05):
    sink = Collector()
    return Subscription(sink, "sid", "ch", "app::ch", None, batch_size, flush), sink


def messages(sink):
    return [m for p in sink.pushes for m in p["body"]["messages"]]


def test_positions_parse_and_compare():
    assert parse_position("1700000000000-3") == (1700000000000, 3)
    assert parse_position("1-") is None and parse_position("x-1") is None and parse_position("12") is None


def test_pushes_count_from_zero():
    sub, sink = make()
    for i in range(3):
        sub.deliver(f"{i + 1}-0", str(i).encode(), 1)
    assert [p["id"] for p in sink.pushes] == [0, 1, 2]
    assert messages(sink) == [0, 1, 2]
    assert sub.position == "3-0"


def test_full_batches_are_sent_at_once():
    sub, sink = make(batch_size=2)
    for i in range(4):
        sub.deliver(f"{i + 1}-0", str(i).encode(), 1)
    assert [p["body"]["messages"] for p in sink.pushes] == [[0, 1], [2, 3]]
    assert [p["body"]["position"] for p in sink.pushes] == ["2-0", "4-0"]


def test_partial_batch_is_flushed_by_the_timer():
    sub, sink = make(batch_size=10, flush=0.01)
    sub.deliver("1-0", b"1", 1)
    assert sink.pushes == []
    gevent.sleep(0.1)
    assert messages(sink) == [1]


def test_cancel_stops_the_flush_timer():
    sub, sink = make(batch_size=10, flush=0.01)
    sub.deliver("1-0", b"1", 1)
    sub.cancel()
    gevent.sleep(0.05)
    assert sink.pushes == []


def test_live_messages_wait_during_sync_and_duplicates_are_dropped():
    sub, sink = make()
    sub.begin_sync()
    sub.deliver("3-0", b"3", 1)  # live, arrived during the replay
    sub.deliver("4-0", b"4", 1)
    sub.finish_sync([("2-0", b"2", 1), ("3-0", b"3", 1)])  # the replay also saw 3
    assert messages(sink) == [2, 3, 4]


def test_live_messages_already_replayed_are_skipped_after_the_switch():
    sub, sink = make()
    sub.begin_sync()
    sub.finish_sync([("1-0", b"1", 1), ("2-0", b"2", 1)])
    sub.deliver("2-0", b"2", 1)  # was still in the Pub/Sub socket when the replay was read
    sub.deliver("3-0", b"3", 1)
    sub.deliver("4-0", b"4", 1)
    assert messages(sink) == [1, 2, 3, 4]


def test_filtered_batches_count_each_message():
    sub, sink = make(batch_size=3)
    sub.deliver("1-0", b"1,2", 2)
    sub.deliver("2-0", b"3", 1)
    assert [p["body"]["messages"] for p in sink.pushes] == [[1, 2, 3]]


def test_a_subscription_error_carries_no_messages_and_a_position_even_when_the_caller_has_none():
    # PROTOCOL §7 MUST: the cobras client reads body["messages"] and asserts body["position"] of every
    # rtm/subscription/* PDU.
    sub, sink = make()
    sub.send_error("shard s1 is unavailable", "shard_unavailable", None)
    sub.position = "17-2"
    sub.send_error("shard s1 is unavailable", "shard_unavailable", None)
    sub.send_error("position 1-0 is no longer available", "expired_position", "20-0")
    assert [(p["body"]["messages"], p["body"]["position"]) for p in sink.pushes] == [
        ([], "0-0"),
        ([], "17-2"),
        ([], "20-0"),
    ]
    assert all(p["action"] == "rtm/subscription/error" and p["id"] is not None for p in sink.pushes)
