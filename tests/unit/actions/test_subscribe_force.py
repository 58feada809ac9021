"""``force: true`` on ``rtm/subscribe`` (PROTOCOL §5): the replacement is atomic with respect to delivery."""

from __future__ import annotations

from app.engine.memory import MemoryEngine

from .support import Harness, messages


def setup():
    harness = Harness()
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    return harness, publisher, subscriber


def publishing_during_subscribe(harness: Harness, publisher, values: list) -> None:
    """Make the engine's next subscribe publish ``values`` while it runs: the moment the Redis engine
    waits for its SUBSCRIBE to be confirmed, with both the old and the new subscription attached."""
    engine = harness.engine
    original = engine.subscribe

    def subscribe(sub, replay):
        tail = MemoryEngine.subscribe(engine, sub, replay)
        engine.subscribe = original  # type: ignore[method-assign]
        for value in values:
            publisher.publish("ch", value)
        return tail

    engine.subscribe = subscribe  # type: ignore[method-assign]


def test_messages_published_while_the_new_subscription_attaches_arrive_exactly_once():
    harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", subscription_id="s", filter="select * from `ch` where n >= 0")
    publisher.publish("ch", {"n": 0})
    publishing_during_subscribe(harness, publisher, [{"n": 1}, {"n": 2}])
    received = subscriber.send(
        "rtm/subscribe", subscription_id="s", filter="select * from `ch` where n >= 1", force=True
    )
    publisher.publish("ch", {"n": 3})
    received += subscriber.transport.take()
    assert [m["n"] for m in messages(received)] == [0, 1, 2, 3]


def test_the_push_counter_goes_on_across_a_forced_replacement():
    _harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", subscription_id="s")
    publisher.publish("ch", 1)
    publisher.publish("ch", 2)
    received = subscriber.subscribe("ch", subscription_id="s", filter="select * from `ch`", force=True)
    publisher.publish("ch", 3)
    received += subscriber.transport.take()
    pushes = [p for p in received if p["action"] == "rtm/subscription/data"]
    assert [p["id"] for p in pushes] == [0, 1, 2]


def test_the_old_filter_stops_at_the_swap_and_the_new_one_takes_over():
    harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", subscription_id="s", filter="select * from `ch` where n < 10")
    publishing_during_subscribe(harness, publisher, [{"n": 1}, {"n": 11}])
    received = subscriber.send(
        "rtm/subscribe", subscription_id="s", filter="select * from `ch` where n > 0", force=True
    )
    publisher.publish("ch", {"n": 2})
    publisher.publish("ch", {"n": 12})
    received += subscriber.transport.take()
    # Before the swap the old filter decides (11 is not its), after it the new one; nothing twice.
    assert [m["n"] for m in messages(received)] == [1, 2, 12]
    assert len(harness.engine.subscribers[next(iter(harness.engine.subscribers))]) == 1


def test_a_failed_replacement_leaves_the_old_subscription_running():
    harness, publisher, subscriber = setup()
    subscriber.subscribe("ch", subscription_id="s")
    harness.engine.available = False
    (reply,) = subscriber.subscribe("ch", subscription_id="s", filter="select * from `ch`", force=True)
    assert reply["action"] == "rtm/subscribe/error"
    harness.engine.available = True
    publisher.publish("ch", 5)
    assert messages(subscriber.transport.take()) == [5]
