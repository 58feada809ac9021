"""PROTOCOL §2 on nesting: a JSON PDU nesting deeper than ``MAX_DEPTH`` arrays/objects is answered with the
action's own error, code ``invalid_message``, like its CBOR twin (app/codec.py), and never reaches a handler
that would fail to serialise it."""

from __future__ import annotations

import json

import orjson
import pytest

from app import protocol
from app.protocol import MAX_DEPTH, ErrorCode, Request


def nested(levels: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def pdu(**fields: object) -> bytes:
    # The stdlib encoder, as orjson itself refuses to write what these tests send.
    return json.dumps({"action": "rtm/publish", **fields}).encode()


def test_a_pdu_nesting_max_depth_levels_is_accepted():
    # The PDU object is one level, the body a second: the message may nest MAX_DEPTH - 2 more.
    request = protocol.parse_request(pdu(id=7, body={"channel": "c", "message": nested(MAX_DEPTH - 2)}))
    assert isinstance(request, Request) and request.body_error is None
    assert orjson.dumps(request.body["message"])  # and what was accepted can be stored


@pytest.mark.parametrize("where", ["message", "body", "id"])
def test_one_level_more_is_invalid_message(where):
    # MAX_DEPTH + 1 levels in all, counting the PDU object (and the body object around a message).
    fields = {
        "message": {"id": 7, "body": {"channel": "c", "message": nested(MAX_DEPTH - 1)}},
        "body": {"id": 7, "body": {"channel": "c", "message": 1, "x": nested(MAX_DEPTH - 1)}},
        "id": {"id": nested(MAX_DEPTH), "body": {"channel": "c", "message": 1}},
    }[where]
    request = protocol.parse_request(pdu(**fields))
    assert isinstance(request, Request)
    assert request.error_code == ErrorCode.INVALID_MESSAGE
    assert f"nested deeper than {MAX_DEPTH} levels" in request.body_error
    assert request.id == (protocol.DEFAULT_ID if where == "id" else 7)
    # The reply itself can always be serialised, whatever the PDU held.
    reply = orjson.loads(protocol.error(request.action, request.id, request.body_error, request.error_code))
    assert reply["action"] == "rtm/publish/error"


def test_an_id_that_can_be_echoed_is_echoed_even_when_the_body_is_too_deep():
    request = protocol.parse_request(pdu(id=nested(5), body=nested(300)))
    assert isinstance(request, Request) and request.id == nested(5)


@pytest.mark.parametrize("levels", [300, 1000])
def test_far_deeper_is_refused_the_same_way_as_text_or_bytes(levels):
    data = b'{"action":"rtm/publish","id":3,"body":{"message":' + b"[" * levels + b"]" * levels + b"}}"
    for form in (data, data.decode()):
        request = protocol.parse_request(form)
        assert isinstance(request, Request) and request.error_code == ErrorCode.INVALID_MESSAGE


def test_many_brackets_that_do_not_nest_are_fine():
    message = [[] for _ in range(5000)] + ["[[[[{{{{" * 100]
    request = protocol.parse_request(pdu(id=1, body={"channel": "c", "message": message}))
    assert isinstance(request, Request) and request.body_error is None
