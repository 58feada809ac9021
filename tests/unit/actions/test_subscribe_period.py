"""``period`` on ``rtm/subscribe`` (PROTOCOL §5, §11) through the real handlers and the in-memory engine, the
process's window scheduler replaced by one on a test clock."""

from __future__ import annotations

import cbor2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import codec, metrics, windows
from app.stats_publisher import StatsPublisher
from app.windows import WindowScheduler

from .support import Clock, Harness, make_app, messages

START = 1_699_999_200.25  # a quarter second into a window of every period dividing 3600


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(START)
    monkeypatch.setattr(windows, "_process_scheduler", WindowScheduler(clock, run_greenlet=False))
    return clock


def end_windows(clock: Clock, seconds: float) -> None:
    clock.advance(seconds)
    windows.process_scheduler().run_due(clock.now)


def setup(*apps):
    harness = Harness(*apps)
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    return harness, publisher, subscriber


def data(pdus):
    return [p for p in pdus if p["action"] == "rtm/subscription/data"]


@pytest.mark.parametrize("period", [0, 3601, -1, "1", 1.5, 1.0, True, False, [1], {"s": 1}])
def test_a_period_that_is_not_an_integer_from_1_to_3600_is_invalid_period(clock, period):
    _harness, _publisher, subscriber = setup()
    (reply,) = subscriber.subscribe("ch", period=period)
    assert reply["action"] == "rtm/subscribe/error"
    assert reply["body"]["code"] == "invalid_period"
    assert subscriber.session.subscriptions == {}
    assert subscriber.subscribe("ch")[0]["action"] == "rtm/subscribe/ok"  # the connection carries on


@pytest.mark.parametrize("period", [1, 3600, None])
def test_periods_in_range_and_null_are_accepted(clock, period):
    _harness, _publisher, subscriber = setup()
    assert subscriber.subscribe("ch", period=period)[0]["action"] == "rtm/subscribe/ok"


def test_a_windows_matching_messages_arrive_in_one_push_at_its_end(clock):
    _harness, publisher, subscriber = setup()
    (reply,) = subscriber.subscribe("ch", period=1, filter="select n from `ch` where even = true")
    positions = [publisher.publish("ch", {"n": n, "even": n % 2 == 0})["body"]["position"] for n in range(5)]
    assert reply["action"] == "rtm/subscribe/ok"
    assert data(subscriber.transport.take()) == []
    end_windows(clock, 1)
    (push,) = data(subscriber.transport.take())
    assert push["id"] == 0 and push["body"]["subscription_id"] == "ch"
    assert push["body"]["messages"] == [{"n": 0}, {"n": 2}, {"n": 4}]
    assert push["body"]["position"] == positions[4]  # the last message in the push
    end_windows(clock, 1)
    assert subscriber.transport.take() == []  # an empty window sends nothing
    publisher.publish("ch", {"n": 5, "even": False})  # filtered out: still nothing
    end_windows(clock, 1)
    assert subscriber.transport.take() == []
    publisher.publish("ch", {"n": 6, "even": True})
    end_windows(clock, 1)
    assert [p["id"] for p in data(subscriber.transport.take())] == [1]


def test_period_wins_over_batch_size(clock):
    _harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", period=1, batch_size=2)
    for n in range(5):
        publisher.publish("ch", n)
    end_windows(clock, 1)
    assert [p["body"]["messages"] for p in data(subscriber.transport.take())] == [[0, 1, 2, 3, 4]]


def test_nothing_is_pushed_after_an_unsubscribe(clock):
    _harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", period=1)
    first = publisher.publish("ch", 1)["body"]["position"]
    end_windows(clock, 1)
    assert messages(subscriber.transport.take()) == [1]
    publisher.publish("ch", 2)
    (reply,) = subscriber.send("rtm/unsubscribe", subscription_id="ch")
    assert reply["action"] == "rtm/unsubscribe/ok"
    assert reply["body"]["position"] == first  # the last push: a resume from it gets message 2 again
    end_windows(clock, 5)
    assert subscriber.transport.take() == []


def test_force_replaces_the_period_in_place_without_a_gap(clock):
    _harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", subscription_id="s", period=5)
    publisher.publish("ch", 1)
    publisher.publish("ch", 2)
    received = subscriber.send("rtm/subscribe", subscription_id="s", channel="ch", period=1, force=True)
    assert [p["action"] for p in received] == ["rtm/subscription/data", "rtm/subscribe/ok"]
    assert messages(received) == [1, 2]  # the old window so far, pushed under the old counter
    publisher.publish("ch", 3)
    end_windows(clock, 1)  # the new period's window, long before the old one would have ended
    pushes = data(subscriber.transport.take())
    assert [p["body"]["messages"] for p in pushes] == [[3]]
    assert [p["id"] for p in data(received) + pushes] == [0, 1]
    subscriber.send("rtm/subscribe", subscription_id="s", channel="ch", force=True)  # period removed
    assert messages(publisher.send("rtm/publish", channel="ch", message=4)) == []
    assert messages(subscriber.transport.take()) == [4]  # live again, one push per message


def test_a_connections_windows_are_pushed_early_at_half_its_send_queue_limit(clock):
    harness, publisher, subscriber = setup(make_app(send_queue_max_bytes=200))
    subscriber.subscribe("ch", period=60)
    message = "x" * 30  # 32 bytes of JSON: the fourth goes past the budget of 100
    for _ in range(4):
        publisher.publish("ch", message)
    (push,) = data(subscriber.transport.take())
    assert push["body"]["messages"] == [message] * 4
    assert windows.process_scheduler().early_flushes == 1
    # ... and counted where the other totals are: the stats document (/stats) and /metrics.
    document = StatsPublisher(harness.services, None, lambda: {}, {}).collect()  # type: ignore[arg-type]
    assert document["data"]["totals"]["window_early_flushes"] == 1
    found = {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render({"n": document}).decode())
        for sample in family.samples
    }
    assert found[("cobra_window_early_flushes_total", ("node", "n"))] == 1
    publisher.publish("ch", "rest")
    end_windows(clock, 60)
    assert messages(subscriber.transport.take()) == ["rest"]


def test_the_budget_is_one_per_connection(clock):
    _harness, publisher, subscriber = setup(make_app(send_queue_max_bytes=200))
    subscriber.subscribe("a", period=60)
    subscriber.subscribe("b", period=60)
    assert (
        subscriber.session.subscriptions["a"].window_budget
        is subscriber.session.subscriptions["b"].window_budget
    )
    for channel in ("a", "b", "a", "b"):
        publisher.publish(channel, "x" * 30)
    pushed = data(subscriber.transport.take())
    assert sorted(p["body"]["subscription_id"] for p in pushed) == ["a", "b"]  # both, at once


def test_a_cbor_subscription_gets_its_window_as_cbor(clock):
    harness, publisher, _subscriber = setup()
    cbor = harness.open()
    cbor.transport.encoding = "cbor"
    frames: list[bytes] = []
    cbor.transport.send_push = lambda counter, part, tail: frames.append(
        b"".join((codec.PUSH_HEAD, codec.push_counter(counter), part, tail))
    )
    cbor.authenticate()
    cbor.subscribe("ch", period=1)
    publisher.publish("ch", {"a": 1})
    publisher.publish("ch", [2])
    end_windows(clock, 1)
    (frame,) = frames
    push = cbor2.loads(frame)
    assert push["action"] == "rtm/subscription/data" and push["id"] == 0
    assert push["body"]["messages"] == [{"a": 1}, [2]]


def test_the_budget_is_half_the_send_queue_limit_and_at_most_1_mib(clock):
    _harness, _publisher, subscriber = setup(make_app(send_queue_max_bytes=1000))
    subscriber.subscribe("small", period=1)
    assert subscriber.session.subscriptions["small"].window_budget.limit == 500
    _harness, _publisher, subscriber = setup()  # the default send queue: 8 MiB
    subscriber.subscribe("default", period=1)
    assert subscriber.session.subscriptions["default"].window_budget.limit == windows.WINDOW_BUDGET_MAX
