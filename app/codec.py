"""CBOR at the edge (PROTOCOL §10): CBOR PDUs in, CBOR PDUs out, JSON's data model inside. No I/O.

Everything behind a connection speaks JSON: handlers read decoded dicts, the engine stores and routes JSON
bytes, replies are built as JSON bytes (:mod:`app.protocol`). A CBOR connection decodes each request here
into the same dict a JSON one would get, refusing what JSON cannot carry (so a message published over CBOR
reaches JSON subscribers unchanged and the other way round), and turns what it sends back into CBOR.

Pushes are assembled from pieces like their JSON twins: a CBOR map is its header followed by its key/value
pairs, so the shared end of a push (position and messages) is encoded once per message, and each subscriber
only adds its push counter and subscription id. :func:`push_tail` remembers its last answer, so the N CBOR
subscribers a message is fanned out to one after the other cost one encode.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Any

import cbor2
import orjson

from .protocol import ACTIONS, DEFAULT_ID, MAX_DEPTH, ErrorCode, FatalError, Request, request_from_pdu

log = logging.getLogger(__name__)

SUBPROTOCOL = "cbor"

# The deepest nesting accepted is protocol.MAX_DEPTH, as for JSON PDUs; deeper is ``invalid_message``.
# What cbor2 itself recurses into before it gives up (a fatal ``bad_schema``: nothing was decoded).
DECODE_MAX_DEPTH = 400
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson (and so the JSON side) can carry


class _Refused:
    """What a CBOR tag JSON has no form for decodes to: refused by :func:`json_problem`."""

    __slots__ = ("tag",)

    def __init__(self, tag: int) -> None:
        self.tag = tag


def _refuse(tag: int) -> Any:
    return lambda value, immutable: _Refused(tag)


def _date_string(value: Any, immutable: bool) -> Any:
    # Tag 0 (RFC 8949 §3.4.1): a date/time string; JSON carries it as that string.
    return value if isinstance(value, str) else _Refused(0)


def _epoch(value: Any, immutable: bool) -> Any:
    # Tag 1 (RFC 8949 §3.4.2): seconds since the epoch; JSON carries it as that number.
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else _Refused(1)


# cbor2 decodes these tags to Python objects of its own (bignums, decimals, UUIDs, sets, shared or
# referenced values...): each is replaced by a refusal, and any tag cbor2 does not know stays a CBORTag,
# refused too. Only the two standard date tags become their string/number form (PROTOCOL §10).
_SEMANTIC_DECODERS: dict[int, Any] = {
    tag: _refuse(tag)
    for tag in (2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 262, 263, 1004)
}
_SEMANTIC_DECODERS[0] = _date_string
_SEMANTIC_DECODERS[1] = _epoch

# Types orjson would serialise although JSON's data model has no such value are sent to the checker instead.
_STRICT_JSON = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
)


def decode(data: bytes) -> Any:
    """One CBOR data item and nothing after it; raises ValueError when ``data`` is not that."""
    decoder = cbor2.CBORDecoder(
        io.BytesIO(data), semantic_decoders=_SEMANTIC_DECODERS, max_depth=DECODE_MAX_DEPTH
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeError as exc:
        raise ValueError(f"invalid cbor: {exc}") from None
    except (RecursionError, OverflowError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid cbor: {exc}") from None
    try:
        decoder.decode()
    except cbor2.CBORDecodeEOF:
        return value  # nothing follows the item: the one accepted outcome
    except Exception:
        pass  # what follows is not even CBOR: refused below all the same
    raise ValueError("invalid cbor: bytes after the first data item")


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` (as decoded from CBOR) has no JSON form, or None when it has one."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if value is None or value is True or value is False or type(value) is str:
        return None
    kind = type(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else f"the integer {value} is outside the 64-bit range"
    if kind is float:
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return "a map key that is not a text string"
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if kind is list or kind is tuple:
        for item in value:
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if kind is bytes or kind is bytearray:
        return "a byte string"
    if value is cbor2.undefined:
        return "undefined"
    if kind is cbor2.CBORSimpleValue:
        return f"the simple value {value.value}"
    if kind is cbor2.CBORTag:
        return f"the CBOR tag {value.tag}"
    if kind is _Refused:
        return f"the CBOR tag {value.tag}"
    return f"a value of type {kind.__name__}"


def is_json(value: Any) -> str | None:
    """:func:`json_problem`, with orjson (C) answering the common case: a PDU it serialises without a
    ``null`` in sight holds nothing JSON lacks (NaN and the infinities are the only values it turns into
    ``null`` instead of refusing)."""
    try:
        as_json = orjson.dumps(value, option=_STRICT_JSON)
    except (orjson.JSONEncodeError, TypeError) as exc:
        return json_problem(value) or f"not representable as JSON: {exc}"
    return json_problem(value) if b"null" in as_json else None


def parse_request(data: bytes | str) -> Request | FatalError:
    """Decode one incoming message of a CBOR connection into a request (PROTOCOL §2, §10).

    Not CBOR at all, not a map, no known action: fatal, as on a JSON connection. A PDU holding a value
    JSON cannot carry: the action's own error reply, code ``invalid_message``, echoing the id."""
    if isinstance(data, str):
        data = data.encode()
    try:
        pdu = decode(data)
    except ValueError as exc:
        return FatalError(str(exc))
    if type(pdu) is not dict:
        return FatalError("a PDU must be a CBOR map")
    action = pdu.get("action")
    if type(action) is not str:
        return FatalError("missing action" if action is None else "action must be a string")
    if action not in ACTIONS:
        return FatalError(f"unknown action: {action[:100]}")
    problem = is_json(pdu)
    if problem is not None:
        pdu_id = pdu.get("id")
        if pdu_id is None or json_problem(pdu_id) is not None:
            pdu_id = DEFAULT_ID
        return Request(
            action, pdu_id, {}, body_error=f"invalid message: {problem}", error_code=ErrorCode.INVALID_MESSAGE
        )
    return request_from_pdu(pdu)


def from_json(payload: bytes) -> bytes:
    """A PDU built as JSON bytes (a reply, an error, a notice), as CBOR."""
    return cbor2.dumps(orjson.loads(payload))


# --- subscription pushes -------------------------------------------------------------------------------
# {"action": "rtm/subscription/data", "id": <counter>, "body": {"subscription_id": S, "position": P,
#  "messages": [...]}}: a map of 3, then the body, a map of 3 whose last two pairs are the shared tail.
PUSH_HEAD = b"\xa3" + cbor2.dumps("action") + cbor2.dumps("rtm/subscription/data") + cbor2.dumps("id")


def push_subscription_part(subscription_id: Any) -> bytes:
    """The per-subscription middle of a CBOR push, computed once per subscribe."""
    return cbor2.dumps("body") + b"\xa3" + cbor2.dumps("subscription_id") + cbor2.dumps(subscription_id)


def push_counter(counter: int) -> bytes:
    return cbor2.dumps(counter)


class _LastTail:
    """The last CBOR tail built, keyed by the very bytes object of the messages' JSON and the position: the
    engine hands every subscriber of one filter group the same object, one subscriber after the other."""

    __slots__ = ("messages_json", "position", "tail")

    def __init__(self) -> None:
        self.messages_json: bytes | None = None
        self.position = ""
        self.tail = b""


_last = _LastTail()


def push_tail(position: str, messages_json: bytes) -> bytes:
    """The shared end of a CBOR push: ``messages_json`` is the comma-joined JSON of the batch's messages."""
    last = _last
    if messages_json is last.messages_json and position == last.position:
        return last.tail
    try:
        messages = orjson.loads(b"[" + messages_json + b"]")
    except orjson.JSONDecodeError as exc:
        # Only a message written into Redis behind the broker's back can be unparseable here.
        log.warning("a message at %s is not JSON and cannot be sent over CBOR: %s", position, exc)
        messages = []
    # A map of two entries has a one-byte header (0xa2): what follows it is exactly the two pairs.
    tail = cbor2.dumps({"position": position, "messages": messages})[1:]
    last.messages_json, last.position, last.tail = messages_json, position, tail
    return tail
