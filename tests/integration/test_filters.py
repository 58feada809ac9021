"""PROTOCOL §6 end to end: StreamSQL filters applied by the broker on rtm/subscribe."""

from __future__ import annotations


def messages_of(client, count, timeout=5.0):
    found = []
    while len(found) < count:
        push = client.next_push(timeout)
        if push["action"] == "rtm/subscription/data":
            found.extend(push["body"]["messages"])
    return found


def test_verbatim_http_errors_example(connect, channel):
    subscriber = connect()
    sql = f"SELECT data.url,data.status FROM `{channel}` WHERE data.status != 200 AND data.url LIKE 'why'"
    subscriber.subscribe(filter=sql)
    publisher = connect()
    publisher.publish(channel, {"data": {"url": "https://ok/this_request", "status": 404}})
    publisher.publish(channel, {"data": {"url": "https://why_ok/this_request", "status": 200}})
    publisher.publish(
        channel, {"data": {"url": "https://why_are_we_still_making/this_request", "status": 404}}
    )
    assert messages_of(subscriber, 1) == [
        {"data.url": "https://why_are_we_still_making/this_request", "data.status": 404}
    ]


def test_verbatim_fps_example(connect, channel):
    subscriber = connect()
    subscriber.subscribe(filter=f"select data.fps from `{channel}`")
    connect().publish(channel, {"data": {"fps": 25.0, "other": 1}})
    assert messages_of(subscriber, 1) == [{"data.fps": 25.0}]


def test_from_channel_decides_what_is_subscribed_and_the_default_subscription_id(connect, channel):
    subscriber = connect()
    reply = subscriber.subscribe("ignored-channel", filter=f"select * from `{channel}`")
    assert reply["subscription_id"] == "ignored-channel"
    connect().publish(channel, {"x": 1})
    push = subscriber.next_push()
    assert push["body"]["messages"] == [{"x": 1}]


def test_filter_without_channel_uses_from_channel_as_subscription_id(connect, channel):
    subscriber = connect()
    assert subscriber.subscribe(filter=f"select * from `{channel}`")["subscription_id"] == channel


def test_bad_filter_is_an_error_with_a_reason_and_the_connection_stays(connect, channel):
    client = connect()
    sql = "SELECT FROM WHERE"
    reply = client.request("rtm/subscribe", {"channel": channel, "filter": sql}, check=False)
    assert reply["action"] == "rtm/subscribe/error"
    assert reply["body"]["error"] == f"Invalid SQL expression {sql}"
    assert reply["body"]["code"] == "invalid_filter"
    assert "position" in reply["body"]["reason"]
    assert client.publish(channel, 1)["channels"] == [channel]


def test_too_long_filter_is_refused_the_same_way(connect, channel):
    sql = f"select * from `{channel}` where " + " or ".join(["a = 1"] * 2000)
    reply = connect().request("rtm/subscribe", {"filter": sql}, check=False)
    assert reply["body"]["code"] == "invalid_filter"


def test_type_mismatch_never_kills_the_subscription(connect, channel):
    subscriber = connect()
    subscriber.subscribe(filter=f"select * from `{channel}` where data.n > 10")
    publisher = connect()
    for message in ({"data": {"n": "text"}}, "not an object", {"data": None}, {"data": {"n": 11}}):
        publisher.publish(channel, message)
    assert messages_of(subscriber, 1) == [{"data": {"n": 11}}]


def test_filtered_and_unfiltered_subscribers_share_a_channel(connect, channel):
    everything, some = connect(), connect()
    everything.subscribe(channel)
    some.subscribe(filter=f"select n from `{channel}` where n >= 2")
    publisher = connect()
    for n in range(4):
        publisher.publish(channel, {"n": n})
    assert messages_of(everything, 4) == [{"n": n} for n in range(4)]
    assert messages_of(some, 2) == [{"n": 2}, {"n": 3}]


def test_filter_applies_to_history_replay(connect, channel):
    publisher = connect()
    for n in range(5):
        publisher.publish(channel, {"n": n})
    subscriber = connect()
    subscriber.subscribe(filter=f"select n from `{channel}` where n > 2", position="0-0")
    assert messages_of(subscriber, 2) == [{"n": 3}, {"n": 4}]


def test_messages_array_is_filtered_element_by_element(connect, channel):
    subscriber = connect()
    subscriber.subscribe(filter=f"select id from `{channel}` where ok = true")
    connect().publish(
        channel, {"messages": [{"id": 1, "ok": True}, {"id": 2, "ok": False}, {"id": 3, "ok": True}]}
    )
    assert messages_of(subscriber, 2) == [{"id": 1}, {"id": 3}]
