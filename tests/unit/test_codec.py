"""CBOR at the edge (PROTOCOL §10): decoding requests, refusing what JSON cannot carry, encoding replies and
pushes. One test per rule, no socket."""

from __future__ import annotations

import cbor2
import orjson
import pytest

from app import codec, protocol
from app.protocol import ErrorCode, FatalError, Request
from app.subscription import CborSubscription, Subscription


def pdu(body, action="rtm/publish", pdu_id=7) -> bytes:
    return cbor2.dumps({"action": action, "id": pdu_id, "body": body})


def test_a_cbor_request_decodes_to_the_same_request_as_its_json_twin():
    body = {"channel": "c", "message": {"n": 1, "f": 2.5, "ok": True, "none": None, "list": ["a", -3]}}
    from_cbor = codec.parse_request(pdu(body))
    from_json = protocol.parse_request(orjson.dumps({"action": "rtm/publish", "id": 7, "body": body}))
    assert from_cbor == from_json
    assert isinstance(from_cbor, Request) and from_cbor.body_error is None


def test_a_request_without_id_is_answered_with_id_1():
    request = codec.parse_request(cbor2.dumps({"action": "rtm/read", "body": {"channel": "c"}}))
    assert request.id == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b'{"action": "rtm/read"}',
        cbor2.dumps([1, 2]),
        cbor2.dumps({"id": 1}),
        cbor2.dumps({"action": "rtm/nope"}),
        cbor2.dumps({"action": 3}),
        cbor2.dumps({"action": "rtm/read"}) + b"\x01",
    ],
    ids=[
        "empty",
        "break",
        "json",
        "array",
        "no-action",
        "unknown-action",
        "action-not-text",
        "trailing-bytes",
    ],
)
def test_what_is_not_a_cbor_pdu_is_fatal(data):
    assert isinstance(codec.parse_request(data), FatalError)


NOT_JSON = {
    "byte string": b"\x00\x01",
    "undefined": cbor2.undefined,
    "simple value": cbor2.CBORSimpleValue(16),
    "unknown tag": cbor2.CBORTag(4000, 1),
    "bignum tag": 2**70,
    "negative bignum tag": -(2**70),
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": float("-inf"),
    "non-string map key": {1: "one"},
}
# Encoded by hand: cbor2 cannot build these from Python values.
RAW_NOT_JSON = {"array map key": b"\xa1\x81\x01\x02"}  # {[1]: 2}


def _encoded_message(name: str) -> bytes:
    head = b"\xa3" + cbor2.dumps("action") + cbor2.dumps("rtm/publish") + cbor2.dumps("id") + cbor2.dumps(9)
    body_head = (
        cbor2.dumps("body") + b"\xa2" + cbor2.dumps("channel") + cbor2.dumps("c") + cbor2.dumps("message")
    )
    value = RAW_NOT_JSON[name] if name in RAW_NOT_JSON else cbor2.dumps(NOT_JSON[name])
    return head + body_head + value


@pytest.mark.parametrize("name", [*NOT_JSON, *RAW_NOT_JSON])
def test_a_value_json_cannot_carry_is_refused_with_invalid_message_echoing_the_id(name):
    request = codec.parse_request(_encoded_message(name))
    assert isinstance(request, Request)
    assert (request.action, request.id, request.error_code) == ("rtm/publish", 9, ErrorCode.INVALID_MESSAGE)
    assert request.body_error and request.body == {}


@pytest.mark.parametrize(
    "tagged",
    [
        cbor2.CBORTag(37, b"0123456789abcdef"),
        cbor2.CBORTag(4, [-2, 27315]),
        cbor2.CBORTag(258, [1, 2]),
        cbor2.CBORTag(100, 200),
        cbor2.CBORTag(1004, "2020-01-01"),
        cbor2.CBORTag(0, 5),
    ],
    ids=["uuid", "decimal", "set", "days", "date-string", "date-tag-on-a-number"],
)
def test_tags_cbor2_knows_are_refused_too(tagged):
    request = codec.parse_request(pdu({"channel": "c", "message": tagged}))
    assert request.error_code == ErrorCode.INVALID_MESSAGE


def test_the_standard_date_tags_become_their_string_and_number():
    body = {
        "channel": "c",
        "message": [cbor2.CBORTag(0, "2013-03-21T20:04:00Z"), cbor2.CBORTag(1, 1363896240)],
    }
    request = codec.parse_request(pdu(body))
    assert request.body_error is None
    assert request.body["message"] == ["2013-03-21T20:04:00Z", 1363896240]


def test_a_bad_id_is_not_echoed():
    request = codec.parse_request(pdu({"channel": "c"}, pdu_id=b"\x01"))
    assert (request.id, request.error_code) == (1, ErrorCode.INVALID_MESSAGE)


def test_integers_at_the_edges_of_the_64_bit_range_are_carried():
    request = codec.parse_request(pdu({"channel": "c", "message": [2**64 - 1, -(2**63)]}))
    assert request.body_error is None
    assert orjson.loads(orjson.dumps(request.body["message"])) == [2**64 - 1, -(2**63)]


def test_null_and_the_text_null_are_not_mistaken_for_nan():
    request = codec.parse_request(pdu({"channel": "null", "message": {"null": None}}))
    assert request.body_error is None


def test_nesting_deeper_than_json_storage_allows_is_refused():
    deep: object = 1
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    request = codec.parse_request(pdu({"channel": "c", "message": deep}))
    assert request.error_code == ErrorCode.INVALID_MESSAGE


def test_a_reply_built_as_json_is_sent_as_the_same_cbor_map():
    reply = protocol.ok("rtm/publish", 3, {"channels": ["c"], "position": "1-0"})
    assert cbor2.loads(codec.from_json(reply)) == orjson.loads(reply)


def test_a_subscription_error_as_cbor_keeps_messages_and_position():
    notice = cbor2.loads(
        codec.from_json(protocol.subscription_error("s", "gone", "shard_unavailable", "4-0"))
    )
    assert notice["body"]["messages"] == [] and notice["body"]["position"] == "4-0"


def test_a_cbor_push_is_assembled_from_shared_pieces():
    part = codec.push_subscription_part("sub-1")
    tail = codec.push_tail("12-3", b'{"a":1},2')
    assert cbor2.loads(b"".join((codec.PUSH_HEAD, codec.push_counter(300), part, tail))) == {
        "action": "rtm/subscription/data",
        "id": 300,
        "body": {"subscription_id": "sub-1", "position": "12-3", "messages": [{"a": 1}, 2]},
    }


def test_a_push_tail_is_encoded_once_for_every_subscriber_handed_the_same_message(monkeypatch):
    calls = []
    real = cbor2.dumps
    monkeypatch.setattr(codec.cbor2, "dumps", lambda value, **kw: calls.append(value) or real(value, **kw))
    message = b'{"n":1}'
    tails = {codec.push_tail("5-0", message) for _ in range(100)}
    assert len(tails) == 1 and len(calls) == 1
    codec.push_tail("6-0", b'{"n":2}')
    assert len(calls) == 2


class CborSink:
    encoding = "cbor"

    def __init__(self):
        self.pushes = []

    def send_payload(self, payload):
        self.pushes.append(cbor2.loads(codec.from_json(payload)))

    def send_push(self, counter, subscription_part, tail):
        self.pushes.append(
            cbor2.loads(codec.PUSH_HEAD + codec.push_counter(counter) + subscription_part + tail)
        )


def test_a_cbor_subscription_pushes_cbor_live_replayed_and_batched():
    sink = CborSink()
    sub = CborSubscription(sink, "sid", "ch", "app::ch", None)
    json_tail = protocol.push_tail("1-0", b'{"n":1}')
    sub.deliver("1-0", b'{"n":1}', 1, json_tail)  # the JSON tail the engine built is not used
    sub.begin_sync()
    sub.finish_sync([("2-0", b'{"n":2}', 1)])
    batched = CborSubscription(sink, "b", "ch", "app::ch", None, batch_size=2)
    batched.deliver("3-0", b"3", 1)
    batched.deliver("4-0", b"4", 1)
    assert [(p["id"], p["body"]["subscription_id"], p["body"]["messages"]) for p in sink.pushes] == [
        (0, "sid", [{"n": 1}]),
        (1, "sid", [{"n": 2}]),
        (0, "b", [3, 4]),
    ]
    assert isinstance(sub, Subscription)
