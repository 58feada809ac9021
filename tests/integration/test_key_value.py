"""PROTOCOL §5: rtm/write, rtm/read and rtm/delete."""

from __future__ import annotations

import pytest

from app.positions import parse_position


def test_write_then_read_returns_the_value(connect, channel):
    client = connect()
    reply = client.write(channel, {"score": 3})
    assert parse_position(reply["stream"]) is not None
    assert client.read(channel)["message"] == {"score": 3}


def test_read_returns_the_last_published_message_not_the_pdu(connect, channel):
    client = connect()
    client.publish(channel, {"last": "message"})
    assert client.read(channel)["message"] == {"last": "message"}


def test_read_of_an_empty_channel_is_null(connect, channel):
    assert connect().read(channel)["message"] is None


def test_read_at_a_position_returns_that_exact_entry(connect, channel):
    client = connect()
    first = client.publish(channel, "first")["position"]
    client.publish(channel, "second")
    body = client.read(channel, position=first)
    assert body["message"] == "first"
    assert body["position"] == first


def test_delete_removes_value_and_history(connect, channel):
    client = connect()
    client.write(channel, "v")
    assert client.delete(channel) == {}
    assert client.read(channel)["message"] is None
    client.subscribe(channel, position="0-0")
    client.publish(channel, "after")
    push = client.next_push()
    assert push["body"]["messages"] == ["after"]


def test_write_is_delivered_to_subscribers(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    connect().write(channel, {"v": 1})
    assert subscriber.next_push()["body"]["messages"] == [{"v": 1}]


@pytest.mark.parametrize(
    ("action", "body", "error", "code"),
    [
        ("rtm/write", {"message": 1}, "write: missing channel field", "missing_channel"),
        ("rtm/write", {"channel": "c"}, "write: empty message", "empty_message"),
        ("rtm/read", {}, "read: missing channel field", "missing_channel"),
        ("rtm/delete", {}, "delete: missing channel field", "missing_channel"),
        ("rtm/read", {"channel": "c", "position": "nope"}, "Invalid position: nope", "invalid_position"),
    ],
)
def test_key_value_errors(connect, action, body, error, code):
    reply = connect().request(action, body, check=False)
    assert reply["action"] == f"{action}/error"
    assert reply["body"] == {"error": error, "code": code}
