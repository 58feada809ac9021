"""PROTOCOL §2: PDUs that cannot be understood get bad_schema with a reason, then a 1000 close."""

from __future__ import annotations

import pytest

from bench.wsclient import RawWebSocket
from tests.conftest import TEST_APP


@pytest.mark.parametrize(
    ("payload", "reason_part"),
    [
        (b"this is not json", "invalid json"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"42", "JSON object"),
        (b'{"id": 1, "body": {}}', "missing action"),
        (b'{"action": 5}', "action must be a string"),
        (b'{"action": "rtm/teleport", "id": 1}', "unknown action"),
    ],
)
def test_unintelligible_pdu_gets_bad_schema_then_close_1000(broker, payload, reason_part):
    ws = RawWebSocket(broker.port, TEST_APP)
    ws.send_frame(1, payload)
    reply = ws.recv_json()
    assert reply["body"]["error"] == "bad_schema"
    assert reason_part in reply["body"]["reason"]
    assert reply["id"] is not None and reply["action"]
    assert ws.recv_close().close_code == 1000
    ws.close()


def test_other_connections_are_unaffected_by_a_bad_one(broker, connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    ws = RawWebSocket(broker.port, TEST_APP)
    ws.send_frame(1, b"{broken")
    assert ws.recv_json()["body"]["error"] == "bad_schema"
    connect().publish(channel, "still fine")
    push = subscriber.next_push()
    assert push["body"]["messages"] == ["still fine"]
