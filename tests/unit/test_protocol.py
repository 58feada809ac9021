"""PROTOCOL §2 without a socket: request parsing and reply shapes."""

from __future__ import annotations

import json

import pytest

from app import protocol
from app.protocol import FatalError, Request


def test_request_is_parsed():
    request = protocol.parse_request(b'{"action": "rtm/publish", "id": 3, "body": {"channel": "c"}}')
    assert request == Request("rtm/publish", 3, {"channel": "c"})


@pytest.mark.parametrize("text", ['{"action": "rtm/read"}', '{"action": "rtm/read", "id": null}'])
def test_missing_or_null_id_becomes_1(text):
    assert protocol.parse_request(text).id == 1


def test_missing_body_is_an_empty_object():
    assert protocol.parse_request('{"action": "rtm/read", "id": 1}').body == {}


def test_non_object_body_is_flagged_not_fatal():
    request = protocol.parse_request('{"action": "rtm/read", "id": 1, "body": [1]}')
    assert isinstance(request, Request)
    assert request.body_error == "body must be a JSON object, not an array"


@pytest.mark.parametrize(
    "data",
    [b"nope", b"[]", b"1", b'"s"', b"null", b'{"id": 1}', b'{"action": 1}', b'{"action": "x/y"}', b"\xff"],
)
def test_unintelligible_input_is_fatal(data):
    assert isinstance(protocol.parse_request(data), FatalError)


def test_every_known_action_parses():
    for action in protocol.ACTIONS:
        assert isinstance(protocol.parse_request(json.dumps({"action": action})), Request)


def test_ok_reply_shape():
    assert json.loads(protocol.ok("rtm/read", "x", {"message": 1})) == {
        "action": "rtm/read/ok",
        "id": "x",
        "body": {"message": 1},
    }


def test_error_reply_shape():
    assert json.loads(protocol.error("rtm/read", 0, "bad", "code_x", reason="r")) == {
        "action": "rtm/read/error",
        "id": 0,
        "body": {"error": "bad", "code": "code_x", "reason": "r"},
    }


def test_fatal_reply_has_action_and_non_null_id():
    pdu = json.loads(protocol.fatal("why"))
    assert pdu["body"] == {"error": "bad_schema", "reason": "why"}
    assert pdu["action"] and pdu["id"] is not None


def test_push_is_assembled_from_shared_pieces():
    part = protocol.push_subscription_part("sub-1")
    tail = protocol.push_tail("12-3", b'{"a":1},2')
    # framed as Connection.send_push does: head, counter, the subscription's part, the shared tail
    assert json.loads(b"".join((protocol.PUSH_HEAD, b"7", part, tail))) == {
        "action": "rtm/subscription/data",
        "id": 7,
        "body": {"subscription_id": "sub-1", "position": "12-3", "messages": [{"a": 1}, 2]},
    }


def test_subscription_error_shape():
    pdu = json.loads(protocol.subscription_error("s", "gone", "expired_position", "1-0"))
    assert pdu["action"] == "rtm/subscription/error"
    assert pdu["body"] == {
        "subscription_id": "s",
        "error": "gone",
        "code": "expired_position",
        "position": "1-0",
        "messages": [],
    }


@pytest.mark.parametrize("pdu_id", [7, 'a"b\u2028é', None, 1.5, {"k": [1, 2]}, True, -(2**63)])
@pytest.mark.parametrize("channels", [["c"], ["a", 'b\n"x'], []])
@pytest.mark.parametrize("position", ["1733100000000-12", None])
def test_publish_ok_is_byte_for_byte_the_generic_ok(pdu_id, channels, position):
    expected = protocol.ok("rtm/publish", pdu_id, {"channels": channels, "position": position})
    assert protocol.publish_ok(pdu_id, channels, position) == expected
