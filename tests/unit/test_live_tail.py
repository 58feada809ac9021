"""The broker-side live tail: a subscription whose sink queues what the engine delivers, read back as
(position, message) events; bounded, closed with its reader, named after the shard the ring picks."""

from __future__ import annotations

import gevent
import orjson
import pytest

from app import protocol
from app.engine.errors import EngineError, shard_unavailable
from app.live_tail import (
    CONFIG_REDIS,
    LiveTail,
    TailEnd,
    TailMessage,
    TailNotice,
    TailUnavailable,
)
from app.models import ConfigSnapshot, Shard
from app.protocol import ErrorCode
from app.shards import ShardRing
from app.stream_sql import compile_filter


class ChannelEngine:
    """An engine of subscriptions only: what :meth:`deliver` is given reaches every subscription of the
    key the way the Redis engine hands it over (``Subscription.deliver``)."""

    def __init__(self, fail: EngineError | None = None):
        self.subs = []
        self.fail = fail

    def subscribe(self, sub, replay):
        assert replay is False
        if self.fail is not None:
            raise self.fail
        self.subs.append(sub)
        return "0-0"

    def unsubscribe(self, sub):
        sub.cancel()
        self.subs.remove(sub)

    def deliver(self, key, position, *messages):
        joined = b",".join(orjson.dumps(m) for m in messages)
        for sub in [s for s in self.subs if s.key == key]:
            sub.deliver(position, joined, len(messages))


def tail_on(engine, shards=(), **options):
    return LiveTail(engine, lambda: ConfigSnapshot(shards=tuple(shards)), **options)


def test_a_tail_yields_each_message_with_its_position():
    engine = ChannelEngine()
    stream = tail_on(engine).open("app", "ch")
    assert [s.key for s in engine.subs] == ["app::ch"]
    engine.deliver("app::ch", "1-0", {"n": 1})
    engine.deliver("app::other", "1-1", {"n": 99})
    engine.deliver("app::ch", "2-0", {"n": 2})
    assert stream.receive(timeout=1) == [TailMessage("1-0", {"n": 1}), TailMessage("2-0", {"n": 2})]


def test_every_result_of_a_push_is_its_own_event():
    engine = ChannelEngine()
    stream = tail_on(engine).open("app", "ch")
    engine.deliver("app::ch", "3-0", {"a": 1}, {"a": 2})  # two filter results, joined
    assert stream.receive(timeout=1) == [TailMessage("3-0", {"a": 1}), TailMessage("3-0", {"a": 2})]


def test_the_filter_is_the_subscriptions_own():
    engine = ChannelEngine()
    stream_filter = compile_filter("select n from `ch` where n > 1")
    tail_on(engine).open("app", "ch", stream_filter)
    assert engine.subs[0].filter is stream_filter  # the engine applies it, once per distinct filter


def test_receive_waits_for_a_message_from_another_greenlet():
    engine = ChannelEngine()
    stream = tail_on(engine).open("app", "ch")
    gevent.spawn_later(0.05, engine.deliver, "app::ch", "5-0", "late")
    assert stream.receive(timeout=5) == [TailMessage("5-0", "late")]
    assert stream.receive(timeout=0.01) == []  # nothing more: the keepalive case


def test_an_interrupted_feed_is_a_notice_not_an_end():
    engine = ChannelEngine()
    stream = tail_on(engine).open("app", "ch")
    sub = engine.subs[0]
    sub.sink.send_payload(
        protocol.subscription_error(sub.subscription_id, "shard a is unavailable", "shard_unavailable", "4-0")
    )
    engine.deliver("app::ch", "6-0", 1)
    assert stream.receive(timeout=1) == [
        TailNotice("shard a is unavailable", ErrorCode.SHARD_UNAVAILABLE, "4-0"),
        TailMessage("6-0", 1),
    ]


def test_closing_unsubscribes_once():
    engine = ChannelEngine()
    live = tail_on(engine)
    with live.open("app", "ch") as stream:
        assert live.streams == {stream}
    assert engine.subs == [] and live.streams == set()
    stream.close()  # idempotent
    engine.deliver("app::ch", "7-0", 1)
    assert stream.receive(timeout=0.01) == [TailEnd("closed")]


def test_a_reader_that_falls_behind_ends_the_tail_instead_of_growing_it():
    engine = ChannelEngine()
    stream = tail_on(engine, queue_limit=3).open("app", "ch")
    for n in range(10):
        engine.deliver("app::ch", f"{n}-0", n)
    events = stream.receive(timeout=1)
    assert events[:3] == [TailMessage(f"{n}-0", n) for n in range(3)]
    assert isinstance(events[3], TailEnd) and "behind" in events[3].reason
    assert len(events) == 4 and stream.dropped == 7
    stream.close()
    assert engine.subs == []


def test_a_shard_that_cannot_be_subscribed_is_reported_with_its_name():
    shards = [Shard("a", "redis://h1:1/0"), Shard("b", "redis://h2:1/0")]
    live = tail_on(ChannelEngine(fail=shard_unavailable("b")), shards)
    with pytest.raises(TailUnavailable) as raised:
        live.open("app", "ch")
    assert raised.value.shard == live.shard_for("app", "ch")
    assert raised.value.message == "shard b is unavailable"
    assert live.streams == set()


def test_the_tail_is_named_after_the_shard_carrying_the_channel():
    shards = (Shard("a", "redis://h1:1/0"), Shard("b", "redis://h2:1/0"), Shard("c", "redis://h3:1/0"))
    live = tail_on(ChannelEngine(), shards)
    ring = ShardRing(["a", "b", "c"])
    for channel in ("x", "y", "z", "w"):
        assert live.shard_for("app", channel) == ring.node_for(f"app::{channel}")
        assert live.open("app", channel).shard == ring.node_for(f"app::{channel}")
    assert tail_on(ChannelEngine()).shard_for("app", "x") == CONFIG_REDIS


def test_closing_the_live_tail_ends_every_open_tail():
    engine = ChannelEngine()
    live = tail_on(engine)
    first, second = live.open("app", "a"), live.open("app", "b")
    waiting = gevent.spawn(second.receive, 10)
    gevent.sleep(0)
    live.close()
    assert waiting.get(timeout=5) == [TailEnd("the broker is shutting down")]
    assert first.receive(timeout=0) == [TailEnd("the broker is shutting down")]
