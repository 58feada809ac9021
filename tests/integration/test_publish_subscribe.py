"""PROTOCOL §2 and §5: envelopes, publish, subscribe, unsubscribe, pushes and positions."""

from __future__ import annotations

import pytest

from app.positions import parse_position


def data_pushes(client, count, timeout=5.0):
    pushes = []
    while len(pushes) < count:
        push = client.next_push(timeout)
        if push["action"] == "rtm/subscription/data":
            pushes.append(push)
    return pushes


def messages_of(client, count, timeout=5.0):
    found = []
    while len(found) < count:
        push = client.next_push(timeout)
        if push["action"] == "rtm/subscription/data":
            found.extend(push["body"]["messages"])
    return found


# --- envelope ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("pdu_id", [7, "abc", 0, {"nested": [1]}, [1, 2], 1.5, True])
def test_id_is_echoed_verbatim(connect, pdu_id):
    client = connect()
    client.send({"action": "rtm/publish", "id": pdu_id, "body": {"channel": "c", "message": 1}})
    reply = client.receive()
    assert reply["action"] == "rtm/publish/ok"
    assert reply["id"] == pdu_id


@pytest.mark.parametrize("pdu", [{"action": "rtm/publish"}, {"action": "rtm/publish", "id": None}])
def test_request_without_id_is_answered_with_id_1(connect, pdu):
    client = connect()
    client.send({**pdu, "body": {"channel": "c", "message": 1}})
    assert client.receive()["id"] == 1


def test_error_reply_echoes_id_and_has_error_and_code(connect):
    client = connect()
    client.send({"action": "rtm/publish", "id": "x-1", "body": {"channel": "c"}})
    reply = client.receive()
    assert reply == {
        "action": "rtm/publish/error",
        "id": "x-1",
        "body": {"error": "publish: empty message", "code": "empty_message"},
    }


def test_body_that_is_not_an_object_gets_an_error_and_the_connection_stays(connect):
    client = connect()
    reply = client.request("rtm/publish", None, check=False)  # body {} -> empty message
    assert reply["body"]["code"] == "empty_message"
    client.send({"action": "rtm/publish", "id": 3, "body": [1, 2]})
    reply = client.receive()
    assert reply["action"] == "rtm/publish/error" and reply["body"]["code"] == "bad_schema"
    assert client.publish("c", 1)["channels"] == ["c"]


# --- publish -----------------------------------------------------------------------------------------
def test_publish_to_one_channel_replies_channels_and_position(connect, channel):
    body = connect().publish(channel, {"a": 1})
    assert body["channels"] == [channel]
    assert parse_position(body["position"]) is not None


def test_publish_to_channels_list(connect, channel):
    body = connect().request("rtm/publish", {"channels": [channel, channel + "-2"], "message": 1})["body"]
    assert body["channels"] == [channel, channel + "-2"]


def test_channels_wins_over_channel(connect, channel):
    client = connect()
    body = client.request("rtm/publish", {"channel": "ignored", "channels": [channel], "message": 1})["body"]
    assert body["channels"] == [channel]


def test_channels_are_deduplicated(connect, channel):
    body = connect().request("rtm/publish", {"channels": [channel, channel], "message": 1})["body"]
    assert body["channels"] == [channel]


def test_publish_to_channels_reaches_each_channel(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel + "-a")
    subscriber.subscribe(channel + "-b")
    connect().request("rtm/publish", {"channels": [channel + "-a", channel + "-b"], "message": "both"})
    pushes = data_pushes(subscriber, 2)
    assert sorted(p["body"]["subscription_id"] for p in pushes) == [channel + "-a", channel + "-b"]


@pytest.mark.parametrize("message", ["text", 0, False, [1, "two"], 3.25, {"deep": {"x": [None]}}])
def test_any_json_value_is_a_message(connect, channel, message):
    subscriber = connect()
    subscriber.subscribe(channel)
    connect().publish(channel, message)
    assert messages_of(subscriber, 1) == [message]


@pytest.mark.parametrize("body", [{"channel": "c"}, {"channel": "c", "message": None}])
def test_publish_without_message_is_an_error(connect, body):
    reply = connect().request("rtm/publish", body, check=False)
    assert reply["body"] == {"error": "publish: empty message", "code": "empty_message"}


@pytest.mark.parametrize(
    "body", [{"message": 1}, {"channel": "", "message": 1}, {"channels": [], "message": 1}]
)
def test_publish_without_channel_is_an_error(connect, body):
    reply = connect().request("rtm/publish", body, check=False)
    assert reply["body"] == {"error": "publish: no channel or channels field", "code": "missing_channel"}


@pytest.mark.parametrize(
    "body",
    [{"channel": 5, "message": 1}, {"channels": "c", "message": 1}, {"channels": ["a", 3], "message": 1}],
)
def test_publish_with_wrong_channel_types_is_an_error(connect, body):
    reply = connect().request("rtm/publish", body, check=False)
    assert reply["action"] == "rtm/publish/error"
    assert reply["body"]["code"] == "bad_schema"


def test_publishes_of_one_connection_arrive_in_order(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    publisher = connect()
    for i in range(200):
        publisher.send({"action": "rtm/publish", "id": i, "body": {"channel": channel, "message": i}})
    assert messages_of(subscriber, 200) == list(range(200))
    # The publisher reads its acks as well (each publish was accepted): left unread, they fill the client
    # library's receive queue, which then stops reading and misses the server's close frame, so closing it
    # waited out the 10 s close timeout.
    acks = [publisher.receive() for _ in range(200)]
    assert {ack["action"] for ack in acks} == {"rtm/publish/ok"}
    assert sorted(ack["id"] for ack in acks) == list(range(200))


# --- subscribe ---------------------------------------------------------------------------------------
def test_subscribe_reply_has_subscription_id_and_position(connect, channel):
    body = connect().subscribe(channel)
    assert body["subscription_id"] == channel
    assert parse_position(body["position"]) is not None


def test_subscription_id_defaults_to_channel(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    connect().publish(channel, "m")
    assert data_pushes(subscriber, 1)[0]["body"]["subscription_id"] == channel


def test_channel_defaults_to_subscription_id(connect, channel):
    subscriber = connect()
    assert (
        subscriber.request("rtm/subscribe", {"subscription_id": channel})["body"]["subscription_id"]
        == channel
    )
    connect().publish(channel, "m")
    assert messages_of(subscriber, 1) == ["m"]


def test_explicit_subscription_id_is_used_in_pushes(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel, subscription_id="mine")
    connect().publish(channel, "m")
    push = data_pushes(subscriber, 1)[0]
    assert push["body"]["subscription_id"] == "mine"


def test_push_shape_and_ids_count_from_zero_per_subscription(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel, subscription_id="one")
    subscriber.subscribe(channel, subscription_id="two")
    publisher = connect()
    positions = [publisher.publish(channel, i)["position"] for i in range(3)]
    pushes = data_pushes(subscriber, 6)
    for sid in ("one", "two"):
        mine = [p for p in pushes if p["body"]["subscription_id"] == sid]
        assert [p["id"] for p in mine] == [0, 1, 2]
        assert [p["body"]["messages"] for p in mine] == [[0], [1], [2]]
        assert [p["body"]["position"] for p in mine] == positions
        assert all(p["action"] == "rtm/subscription/data" for p in mine)


def test_two_subscribers_on_one_channel_both_receive(connect, channel):
    first, second = connect(), connect()
    first.subscribe(channel)
    second.subscribe(channel)
    connect().publish(channel, {"n": 1})
    assert messages_of(first, 1) == [{"n": 1}]
    assert messages_of(second, 1) == [{"n": 1}]


def test_batch_size_groups_messages_per_push(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel, batch_size=3)
    publisher = connect()
    positions = [publisher.publish(channel, i)["position"] for i in range(6)]
    pushes = data_pushes(subscriber, 2)
    assert [p["body"]["messages"] for p in pushes] == [[0, 1, 2], [3, 4, 5]]
    assert [p["body"]["position"] for p in pushes] == [positions[2], positions[5]]
    assert [p["id"] for p in pushes] == [0, 1]


def test_partial_batch_is_flushed(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel, batch_size=50)
    connect().publish(channel, "lonely")
    assert data_pushes(subscriber, 1)[0]["body"]["messages"] == ["lonely"]


@pytest.mark.parametrize("batch_size", [0, -1, "3", 1.5, True, 10**9])
def test_invalid_batch_size_is_an_error(connect, channel, batch_size):
    reply = connect().request("rtm/subscribe", {"channel": channel, "batch_size": batch_size}, check=False)
    assert reply["body"]["code"] == "invalid_batch_size"


def test_missing_channel_and_subscription_id_is_an_error(connect):
    reply = connect().request("rtm/subscribe", {}, check=False)
    assert reply["body"] == {"error": "missing channel and subscription_id", "code": "missing_channel"}


@pytest.mark.parametrize("position", ["abc", "12", "1-x", 5, "-1-0"])
def test_invalid_position_is_an_error(connect, channel, position):
    reply = connect().request("rtm/subscribe", {"channel": channel, "position": position}, check=False)
    assert reply["body"] == {"error": f"Invalid position: {position}", "code": "invalid_position"}


def test_duplicate_subscription_id_is_refused(connect, channel):
    client = connect()
    client.subscribe(channel)
    reply = client.request("rtm/subscribe", {"channel": channel}, check=False)
    assert reply["body"]["code"] == "already_subscribed"


def test_force_replaces_an_existing_subscription(connect, channel):
    client = connect()
    client.subscribe(channel, subscription_id="s")
    client.request("rtm/subscribe", {"channel": channel + "-new", "subscription_id": "s", "force": True})
    publisher = connect()
    publisher.publish(channel, "old channel")
    publisher.publish(channel + "-new", "new channel")
    assert messages_of(client, 1) == ["new channel"]


def test_extra_fields_are_accepted(connect, channel):
    body = {"channel": channel, "fast_forward": True, "period": 1, "history": {"count": 1}}
    assert connect().request("rtm/subscribe", body)["body"]["subscription_id"] == channel


# --- history and positions ------------------------------------------------------------------------------
def test_health_check_publish_then_subscribe_from_0_0_finds_the_message(connect, channel):
    client = connect()
    client.publish(channel, {"health": "check"})
    client.subscribe(channel, position="0-0")
    assert messages_of(client, 1) == [{"health": "check"}]


def test_resume_after_a_position_delivers_exactly_what_follows(connect, channel):
    publisher = connect()
    positions = [publisher.publish(channel, i)["position"] for i in range(5)]
    subscriber = connect()
    subscriber.subscribe(channel, position=positions[1])
    assert messages_of(subscriber, 3) == [2, 3, 4]
    publisher.publish(channel, 5)
    assert messages_of(subscriber, 1) == [5]


def test_resume_from_the_subscribe_reply_position_misses_nothing(connect, channel):
    subscriber = connect()
    tail = subscriber.subscribe(channel)["position"]
    subscriber.unsubscribe(channel)
    publisher = connect()
    publisher.publish(channel, "while away")
    subscriber.subscribe(channel, position=tail)
    assert messages_of(subscriber, 1) == ["while away"]


def test_dollar_position_means_only_new_messages(connect, channel):
    publisher = connect()
    publisher.publish(channel, "old")
    subscriber = connect()
    subscriber.subscribe(channel, position="$")
    publisher.publish(channel, "new")
    assert messages_of(subscriber, 1) == ["new"]


# --- unsubscribe ------------------------------------------------------------------------------------------
def test_unsubscribe_replies_subscription_id_and_position(connect, channel):
    client = connect()
    client.subscribe(channel)
    body = client.unsubscribe(channel)
    assert body["subscription_id"] == channel
    assert parse_position(body["position"]) is not None


def test_unsubscribe_stops_delivery_and_frees_the_id(connect, channel):
    client = connect()
    client.subscribe(channel)
    client.unsubscribe(channel)
    publisher = connect()
    publisher.publish(channel, "not for you")
    client.subscribe(channel + "-2", subscription_id=channel)
    publisher.publish(channel + "-2", "for you")
    assert messages_of(client, 1) == ["for you"]


def test_unsubscribe_unknown_is_an_error(connect):
    reply = connect().request("rtm/unsubscribe", {"subscription_id": "nope"}, check=False)
    assert reply["body"] == {"error": "Invalid subscriptionId: nope", "code": "not_subscribed"}


def test_subscription_limit_is_enforced(broker_factory, test_apps):
    from app.client import CobraClient
    from tests.conftest import TEST_APP

    broker = broker_factory(env={"COBRA_MAX_SUBSCRIPTIONS": "2"})
    role = test_apps[TEST_APP].roles["pubsub"]
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", role.secret) as client:
        client.subscribe("a")
        client.subscribe("b")
        reply = client.request("rtm/subscribe", {"channel": "c"}, check=False)
        assert reply["body"]["code"] == "subscription_limit"
        client.unsubscribe("a")
        assert client.subscribe("c")["subscription_id"] == "c"
