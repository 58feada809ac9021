"""``rtm/subscribe`` with ``history: {count, age}`` (PROTOCOL §5) against the in-memory engine."""

from __future__ import annotations

from app.protocol import ErrorCode

from .support import Clock, Harness, make_app, messages


def pair(harness: Harness):
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    return publisher, subscriber


def test_history_count_replays_the_last_n_then_live():
    publisher, subscriber = pair(Harness())
    for n in range(5):
        publisher.publish("ch", n)
    received = subscriber.subscribe("ch", history={"count": 2})
    assert received[0]["action"] == "rtm/subscribe/ok"
    publisher.publish("ch", 5)
    assert messages(received + subscriber.transport.take()) == [3, 4, 5]


def test_history_age_replays_the_last_seconds_then_live():
    clock = Clock()
    harness = Harness(clock=clock)
    publisher, subscriber = pair(harness)
    for n in range(4):
        publisher.publish("ch", n)
        clock.advance(10)
    # 0 is 40 s old, 1 is 30 s, 2 is 20 s, 3 is 10 s
    received = subscriber.subscribe("ch", history={"age": 25})
    publisher.publish("ch", 4)
    assert messages(received + subscriber.transport.take()) == [2, 3, 4]


def test_history_count_and_age_replay_what_both_admit():
    clock = Clock()
    publisher, subscriber = pair(Harness(clock=clock))
    for n in range(4):
        publisher.publish("ch", n)
        clock.advance(10)
    assert messages(subscriber.subscribe("ch", history={"count": 3, "age": 25})) == [2, 3]


def test_history_goes_through_the_filter_of_the_subscription():
    publisher, subscriber = pair(Harness())
    for n in range(6):
        publisher.publish("ch", {"n": n})
    received = subscriber.send("rtm/subscribe", filter="select n from `ch` where n > 2", history={"count": 4})
    assert messages(received) == [{"n": 3}, {"n": 4}, {"n": 5}]


def test_history_count_zero_or_empty_replays_nothing_and_new_messages_still_arrive():
    publisher, subscriber = pair(Harness())
    publisher.publish("ch", 0)
    assert messages(subscriber.subscribe("ch", history={"count": 0})) == []
    assert messages(subscriber.subscribe("other", history={})) == []
    publisher.publish("ch", 1)
    publisher.publish("other", 2)
    assert messages(subscriber.transport.take()) == [1, 2]


def test_position_wins_over_history():
    publisher, subscriber = pair(Harness())
    positions = [publisher.publish("ch", n)["body"]["position"] for n in range(5)]
    received = subscriber.subscribe("ch", position=positions[1], history={"count": 1})
    assert messages(received) == [2, 3, 4]


def test_history_on_a_channel_without_history_replays_nothing():
    publisher, subscriber = pair(Harness(make_app(history_max_length=0)))
    publisher.publish("ch", 0)
    assert messages(subscriber.subscribe("ch", history={"count": 5})) == []


def test_bad_history_values_are_invalid_history():
    _publisher, subscriber = pair(Harness())
    for bad in ([], 3, "last", {"count": -1}, {"count": 1.5}, {"count": True}, {"age": "10"}, {"age": -2}):
        (reply,) = subscriber.subscribe("ch", history=bad)
        assert (reply["action"], reply["body"]["code"]) == (
            "rtm/subscribe/error",
            ErrorCode.INVALID_HISTORY,
        ), bad
    assert subscriber.session.subscriptions == {}
