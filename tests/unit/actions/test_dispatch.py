"""The dispatcher: a malformed PDU is fatal, a bad body is an error reply, a bug costs one request."""

from __future__ import annotations

from app import actions
from app.protocol import ErrorCode
from app.websocket import CLOSE_NORMAL

from .support import Harness


def test_invalid_json_gets_bad_schema_and_a_normal_close():
    client = Harness().open()
    received = client.send_raw(b"{not json")
    assert [pdu["action"] for pdu in received] == ["error"]
    assert received[0]["body"]["error"] == ErrorCode.BAD_SCHEMA
    assert client.transport.close_code == CLOSE_NORMAL


def test_a_body_that_is_not_an_object_is_an_error_reply_with_the_request_id():
    client = Harness().open()
    (reply,) = client.send_raw(b'{"action": "rtm/publish", "id": 7, "body": [1]}')
    assert reply["action"] == "rtm/publish/error" and reply["id"] == 7
    assert reply["body"]["code"] == ErrorCode.BAD_SCHEMA and client.transport.close_code is None


def test_a_bug_in_a_handler_costs_one_request_not_the_connection(monkeypatch):
    def broken(session, request, services, client):
        raise RuntimeError("bug")

    monkeypatch.setitem(actions.HANDLERS, "auth/handshake", broken)
    client = Harness().open()
    reply = client.handshake()
    assert reply["body"]["code"] == ErrorCode.INTERNAL_ERROR and client.transport.close_code is None
    monkeypatch.undo()
    assert client.handshake()["action"] == "auth/handshake/ok"
