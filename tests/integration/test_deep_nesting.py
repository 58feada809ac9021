"""Deeply nested JSON against a live broker (issue 14): a PDU whose ``id``, body or message nests 300 levels
gets the action's own error reply and the connection stays usable; nothing escapes into the log."""

from __future__ import annotations

import pytest

from bench.wsclient import RawWebSocket, authenticate
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess

DEEP = b"[" * 300 + b"]" * 300


@pytest.fixture(scope="module")
def deep_broker(redis_server, test_apps, tmp_path_factory):
    process = BrokerProcess(redis_server.url, tmp_path_factory.mktemp("deep")).start()
    yield process
    process.stop()


def deep_pdus(action: str, body: bytes) -> list[tuple[bytes, object]]:
    """(PDU, the id its reply must carry): deep in the id, the body, the message."""
    head = b'{"action":"' + action.encode() + b'",'
    return [
        (head + b'"id":' + DEEP + b',"body":' + body + b"}", 1),
        (head + b'"id":41,"body":' + DEEP + b"}", 41),
        (head + b'"id":42,"body":{"channel":"deep","message":' + DEEP + b"}}", 42),
        (head + b'"id":43,"body":' + body[:-1] + b',"extra":{"a":' + DEEP + b"}}}", 43),
    ]


@pytest.mark.parametrize("authenticated", [False, True])
def test_deep_pdus_get_an_error_reply_and_the_connection_stays_usable(deep_broker, test_apps, authenticated):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    ws = RawWebSocket(deep_broker.port, TEST_APP)
    try:
        if authenticated:
            authenticate(ws, "pubsub", secret)
            action, body = "rtm/publish", b'{"channel":"deep","message":1}'
        else:
            action, body = "auth/handshake", b'{"method":"role_secret","data":{"role":"pubsub"}}'
        for data, expected_id in deep_pdus(action, body):
            ws.send_frame(1, data)
            reply = ws.recv_json()
            assert reply["action"] == action + "/error", reply
            assert reply["id"] == expected_id
            assert reply["body"]["code"] == "invalid_message"
            assert "nested deeper than 250 levels" in reply["body"]["error"]
        if not authenticated:
            authenticate(ws, "pubsub", secret)
        ws.send_json(
            {"action": "rtm/subscribe", "id": 5, "body": {"channel": "deep", "subscription_id": "d"}}
        )
        assert ws.recv_json()["action"] == "rtm/subscribe/ok"
        ws.send_json({"action": "rtm/publish", "id": 6, "body": {"channel": "deep", "message": [[["ok"]]]}})
        replies = [ws.recv_json(), ws.recv_json()]
        actions = sorted(reply["action"] for reply in replies)
        assert actions == ["rtm/publish/ok", "rtm/subscription/data"], replies
        push = next(reply for reply in replies if reply["action"] == "rtm/subscription/data")
        assert push["body"]["messages"] == [[[["ok"]]]]
    finally:
        ws.close()


def test_no_traceback_was_logged(deep_broker, test_apps):
    ws = RawWebSocket(deep_broker.port, TEST_APP)
    try:
        authenticate(ws, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        for data, _ in deep_pdus("rtm/publish", b'{"channel":"deep","message":1}'):
            ws.send_frame(1, data)
            assert ws.recv_json()["body"]["code"] == "invalid_message"
    finally:
        ws.close()
    output = deep_broker.output()
    assert "Traceback" not in output and "Recursion limit" not in output, output[-3000:]
