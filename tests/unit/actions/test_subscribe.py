"""``rtm/subscribe`` and ``rtm/unsubscribe`` (PROTOCOL §5, §6, §7) against the in-memory engine."""

from __future__ import annotations

import gevent

from app.actions import MAX_BATCH_SIZE
from app.protocol import ErrorCode

from .support import NODE, Harness, make_app, messages, role


def pair(harness: Harness | None = None):
    harness = harness or Harness()
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    return harness, publisher, subscriber


def test_subscribe_answers_the_tail_position_then_pushes_live_messages():
    _harness, publisher, subscriber = pair()
    position = publisher.publish("ch", 0)["body"]["position"]
    (reply,) = subscriber.subscribe("ch")
    assert reply["action"] == "rtm/subscribe/ok"
    assert reply["body"] == {"subscription_id": "ch", "position": position, "channel": "ch", "node": NODE}
    publisher.publish("ch", 1)
    (push,) = subscriber.transport.take()
    assert push["action"] == "rtm/subscription/data" and push["id"] == 0  # push ids count from 0
    assert push["body"]["subscription_id"] == "ch" and push["body"]["messages"] == [1]


def test_a_filter_selects_reshapes_and_names_the_channel_followed():
    _harness, publisher, subscriber = pair()
    (reply,) = subscriber.send("rtm/subscribe", filter="select n as v from `ch` where n > 1")
    assert reply["body"]["channel"] == "ch" and reply["body"]["subscription_id"] == "ch"
    for n in (1, 2):
        publisher.publish("ch", {"n": n})
    assert messages(subscriber.transport.take()) == [{"v": 2}]


def test_the_subscription_id_defaults_to_the_channel_the_client_named():
    _, _, subscriber = pair()
    (reply,) = subscriber.subscribe("named", filter="select * from `ch`")
    assert reply["body"]["subscription_id"] == "named" and reply["body"]["channel"] == "ch"


def test_an_invalid_filter_is_refused_with_the_reason():
    _, _, subscriber = pair()
    (reply,) = subscriber.send("rtm/subscribe", filter="select from where")
    assert reply["body"]["code"] == ErrorCode.INVALID_FILTER and reply["body"]["reason"]
    (reply,) = subscriber.send("rtm/subscribe", filter=3)
    assert reply["body"]["code"] == ErrorCode.INVALID_FILTER


def test_subscribe_needs_a_channel_or_a_subscription_id():
    _, _, subscriber = pair()
    assert subscriber.send("rtm/subscribe")[0]["body"]["code"] == ErrorCode.MISSING_CHANNEL


def test_a_position_replays_what_followed_it_then_live():
    _harness, publisher, subscriber = pair()
    positions = [publisher.publish("ch", n)["body"]["position"] for n in range(3)]
    received = subscriber.subscribe("ch", position=positions[0])
    assert received[0]["action"] == "rtm/subscribe/ok"
    publisher.publish("ch", 3)
    assert messages(received + subscriber.transport.take()) == [1, 2, 3]


def test_position_dollar_means_from_now_and_a_malformed_position_is_refused():
    _, publisher, subscriber = pair()
    publisher.publish("ch", 0)
    assert messages(subscriber.subscribe("ch", position="$")) == []
    (reply,) = subscriber.subscribe("other", position="yesterday")
    assert reply["body"]["code"] == ErrorCode.INVALID_POSITION


def test_a_position_no_longer_retained_is_reported_expired():
    _harness, publisher, subscriber = pair(Harness(make_app(history_max_length=2)))
    for n in range(4):
        publisher.publish("ch", n)
    received = subscriber.subscribe("ch", position="1-0")  # long gone
    assert [pdu["action"] for pdu in received][:2] == ["rtm/subscribe/ok", "rtm/subscription/error"]
    assert received[1]["body"]["code"] == ErrorCode.EXPIRED_POSITION
    assert messages(received) == [2, 3]


def test_batch_size_must_be_an_integer_within_bounds():
    _, _, subscriber = pair()
    for bad in (0, True, 1.5, "2", MAX_BATCH_SIZE + 1):
        (reply,) = subscriber.subscribe("ch", batch_size=bad)
        assert reply["body"]["code"] == ErrorCode.INVALID_BATCH_SIZE, bad


def test_batch_size_groups_messages_into_one_push():
    _harness, publisher, subscriber = pair(Harness(batch_flush_interval=0.01))
    subscriber.subscribe("ch", batch_size=2)
    for n in range(3):
        publisher.publish("ch", n)
    pushes = subscriber.transport.take()
    assert [p["body"]["messages"] for p in pushes] == [[0, 1]]
    gevent.sleep(0.05)  # a partial batch waits at most batch_flush_interval
    assert [p["body"]["messages"] for p in subscriber.transport.take()] == [[2]]


def test_a_subscription_id_in_use_is_refused_unless_forced():
    _harness, publisher, subscriber = pair()
    subscriber.subscribe("ch")
    (reply,) = subscriber.subscribe("ch")
    assert reply["body"]["code"] == ErrorCode.ALREADY_SUBSCRIBED
    (reply,) = subscriber.subscribe("ch", filter="select n from `ch`", force=True)
    assert reply["action"] == "rtm/subscribe/ok"
    publisher.publish("ch", {"n": 1, "x": 2})
    assert messages(subscriber.transport.take()) == [{"n": 1}]  # the old subscription ended: one push


def test_subscriptions_per_connection_are_limited():
    _, _, subscriber = pair(Harness(max_subscriptions=2))
    subscriber.subscribe("a")
    subscriber.subscribe("b")
    assert subscriber.subscribe("c")[0]["body"]["code"] == ErrorCode.SUBSCRIPTION_LIMIT
    (reply,) = subscriber.subscribe("a", force=True)  # replacing one is not one more
    assert reply["action"] == "rtm/subscribe/ok"


def test_subscribe_needs_the_channel_allowed_by_the_role():
    _, _, subscriber = pair(Harness(make_app(roles=(role(channels=("public.*",)),))))
    assert subscriber.subscribe("private")[0]["body"]["code"] == ErrorCode.PERMISSION_DENIED
    (reply,) = subscriber.send("rtm/subscribe", filter="select * from `private`")
    assert reply["body"]["code"] == ErrorCode.PERMISSION_DENIED  # the FROM channel is checked


def test_a_subscribe_the_engine_cannot_serve_leaves_no_subscription():
    harness, _, subscriber = pair()
    harness.engine.available = False
    assert subscriber.subscribe("ch")[0]["body"]["code"] == ErrorCode.SHARD_UNAVAILABLE
    assert subscriber.session.subscriptions == {}


def test_a_connection_closing_meanwhile_gets_no_reply_and_no_live_subscription():
    harness, _, subscriber = pair()
    subscriber.transport.close()
    assert subscriber.subscribe("ch") == [] and harness.engine.subscribers == {}


def test_unsubscribe_answers_the_last_position_and_stops_delivery():
    harness, publisher, subscriber = pair()
    subscriber.subscribe("ch")
    position = publisher.publish("ch", 1)["body"]["position"]
    subscriber.transport.take()
    reply = subscriber.reply("rtm/unsubscribe", subscription_id="ch")
    assert reply["body"] == {"subscription_id": "ch", "position": position}
    publisher.publish("ch", 2)
    assert subscriber.transport.take() == [] and harness.engine.subscribers == {}


def test_unsubscribe_flushes_a_partial_batch_first():
    _, publisher, subscriber = pair()
    subscriber.subscribe("ch", batch_size=10)
    publisher.publish("ch", 1)
    received = subscriber.send("rtm/unsubscribe", subscription_id="ch")
    assert [p["action"] for p in received] == ["rtm/subscription/data", "rtm/unsubscribe/ok"]


def test_unsubscribe_of_an_unknown_id_is_refused():
    _, _, subscriber = pair()
    reply = subscriber.reply("rtm/unsubscribe", subscription_id="nope")
    assert reply["body"]["code"] == ErrorCode.NOT_SUBSCRIBED


def test_the_registry_entry_follows_the_subscriptions():
    harness, _, subscriber = pair()
    registry = harness.cluster.registry
    subscriber.subscribe("a")
    subscriber.subscribe("b")
    assert registry[subscriber.session.id]["subscriptions"] == 2
    subscriber.subscribe("b", force=True)
    assert registry[subscriber.session.id]["subscriptions"] == 2
    subscriber.send("rtm/unsubscribe", subscription_id="a")
    assert registry[subscriber.session.id]["subscriptions"] == 1
    subscriber.handshake()  # a new handshake resets the connection: no role, no subscription
    assert registry[subscriber.session.id]["subscriptions"] == 0
    assert registry[subscriber.session.id]["role"] is None
