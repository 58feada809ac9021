"""The in-memory engine keeps the engine contract the Redis engine keeps (PROTOCOL §5, §7): positions,
retention, live fan-out through filters, exact resume, key/value reads."""

from __future__ import annotations

import inspect

import orjson
import pytest

from app.engine import EngineError, HistoryPolicy
from app.engine.core import Engine
from app.engine.interface import EngineAPI
from app.engine.memory import MemoryEngine
from app.positions import START, parse_position
from app.protocol import ErrorCode
from app.stream_sql import compile_filter
from app.subscription import Subscription
from tests.unit.actions.support import Clock, RecordingClient, messages

KEEP = HistoryPolicy(100, 0)


def publish(engine: MemoryEngine, key: str, message, policy: HistoryPolicy = KEEP, deliver: bool = True):
    results = []
    engine.publish(key, orjson.dumps(message), policy, results.append, deliver)
    assert len(results) == 1  # answered before publish() returns
    return results[0]


def attach(engine: MemoryEngine, key: str = "app::ch", text: str | None = None, replay: bool = False):
    client = RecordingClient()
    stream_filter = compile_filter(text) if text else None
    sub = Subscription(client, "sid", key.partition("::")[2], key, stream_filter)
    tail = engine.subscribe(sub, replay=replay)
    return sub, client, tail


@pytest.mark.parametrize("implementation", [MemoryEngine, Engine])
def test_both_engines_offer_every_method_of_the_interface_with_its_parameters(implementation):
    for name, method in inspect.getmembers(EngineAPI, inspect.isfunction):
        if name.startswith("_"):
            continue
        offered = getattr(implementation, name, None)
        assert offered is not None, f"{implementation.__name__} lacks {name}"
        assert list(inspect.signature(offered).parameters) == list(inspect.signature(method).parameters), name


def test_positions_increase_within_one_millisecond_and_across_them():
    clock = Clock(1000.0)
    engine = MemoryEngine(clock)
    first, second = publish(engine, "app::ch", 1), publish(engine, "app::ch", 2)
    clock.advance(0.001)
    third = publish(engine, "app::ch", 3)
    assert (first, second, third) == ("1000000-0", "1000000-1", "1000001-0")
    clock.advance(-10)  # a clock stepping back never makes a position go back
    assert parse_position(publish(engine, "app::ch", 4)) > parse_position(third)


def test_history_keeps_the_newest_max_length_entries():
    engine = MemoryEngine(Clock())
    for n in range(5):
        publish(engine, "app::ch", n, HistoryPolicy(3, 0))
    assert [orjson.loads(m) for _, m in engine.channels["app::ch"].entries] == [2, 3, 4]


def test_without_replay_the_newest_entry_is_still_kept_for_reads():
    engine = MemoryEngine(Clock())
    publish(engine, "app::ch", 1, HistoryPolicy(0, 0))
    position = publish(engine, "app::ch", 2, HistoryPolicy(0, 0))
    assert engine.read("app::ch") == (b"2", position)


def test_entries_older_than_max_age_are_trimmed_and_an_idle_channel_expires():
    clock = Clock()
    engine = MemoryEngine(clock)
    policy = HistoryPolicy(100, 10)
    publish(engine, "app::ch", "old", policy)
    clock.advance(6)
    publish(engine, "app::ch", "mid", policy)
    clock.advance(6)
    publish(engine, "app::ch", "new", policy)
    assert [orjson.loads(m) for _, m in engine.channels["app::ch"].entries] == ["mid", "new"]
    clock.advance(10)
    assert engine.read("app::ch") == (None, None)


def test_live_messages_reach_subscribers_through_their_filter():
    engine = MemoryEngine(Clock())
    _, plain, _ = attach(engine)
    _, filtered, _ = attach(engine, text="select n from `ch` where n > 1")
    publish(engine, "app::ch", {"n": 1})
    publish(engine, "app::ch", {"n": 2, "x": 0})
    publish(engine, "app::other", {"n": 5})
    assert messages(plain.take()) == [{"n": 1}, {"n": 2, "x": 0}]
    assert messages(filtered.take()) == [{"n": 2}]


def test_a_message_stored_without_delivery_reaches_no_subscriber():
    engine = MemoryEngine(Clock())
    _, client, _ = attach(engine)
    position = publish(engine, "app::ch", 1, deliver=False)
    assert client.take() == [] and engine.read("app::ch") == (b"1", position)


def test_subscribe_returns_the_tail_and_unsubscribe_stops_delivery():
    engine = MemoryEngine(Clock())
    first, _, tail = attach(engine)
    assert tail == START
    position = publish(engine, "app::ch", 1)
    sub, client, tail = attach(engine)
    assert tail == position
    engine.unsubscribe(sub)
    engine.unsubscribe(first)
    publish(engine, "app::ch", 2)
    assert client.take() == [] and engine.subscribers == {}


def test_replay_sends_what_follows_the_position_then_live_without_duplicate():
    engine = MemoryEngine(Clock())
    positions = [publish(engine, "app::ch", n) for n in range(4)]
    sub, client, _ = attach(engine, replay=True)
    publish(engine, "app::ch", 4)  # live while the replay is pending: held, then delivered once
    engine.replay(sub, positions[1], KEEP)
    publish(engine, "app::ch", 5)
    assert messages(client.take()) == [2, 3, 4, 5]


def test_replay_from_an_expired_position_says_so_and_restarts_from_the_oldest():
    engine = MemoryEngine(Clock())
    positions = [publish(engine, "app::ch", n, HistoryPolicy(2, 0)) for n in range(4)]
    sub, client, _ = attach(engine, replay=True)
    engine.replay(sub, "1-0", HistoryPolicy(2, 0))
    notice, *pushes = client.take()
    assert notice["action"] == "rtm/subscription/error"
    assert notice["body"]["code"] == ErrorCode.EXPIRED_POSITION and notice["body"]["position"] == positions[2]
    assert messages(pushes) == [2, 3]


def test_replay_from_the_start_sends_the_whole_retained_history_through_the_filter():
    engine = MemoryEngine(Clock())
    for n in range(4):
        publish(engine, "app::ch", {"n": n})
    sub, client, _ = attach(engine, text="select n from `ch` where n >= 2", replay=True)
    engine.replay(sub, START, KEEP)
    assert messages(client.take()) == [{"n": 2}, {"n": 3}]


def test_read_at_a_position_the_newest_or_nothing_and_delete():
    engine = MemoryEngine(Clock())
    first = publish(engine, "app::ch", "a")
    second = publish(engine, "app::ch", "b")
    assert engine.read("app::ch", first) == (b'"a"', first)
    assert engine.read("app::ch") == (b'"b"', second)
    assert engine.read("app::ch", "1-0") == (None, None)
    engine.delete("app::ch")
    assert engine.read("app::ch") == (None, None)


def test_an_unavailable_engine_fails_like_a_shard_that_is_down():
    engine = MemoryEngine(Clock())
    engine.available = False
    result = publish(engine, "app::ch", 1)
    assert isinstance(result, EngineError) and result.code == ErrorCode.SHARD_UNAVAILABLE
    with pytest.raises(EngineError):
        attach(engine)
    with pytest.raises(EngineError):
        engine.publish_and_wait("app::ch", b"1", KEEP)
    assert engine.ping_shards(1.0)["memory"] is not None and not engine.shard_statuses()[0].available
