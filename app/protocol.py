"""The PDU envelope of PROTOCOL §2: parsing requests and shaping replies. No I/O.

Requests are JSON objects ``{"action", "id"?, "body"?}``. Parsing either yields a :class:`Request` or a
:class:`FatalError`, after which the connection sends ``bad_schema`` and closes with 1000. Replies are built
here as bytes so every other module speaks in values, not in JSON fragments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Actions the broker understands; anything else is a fatal ``bad_schema`` (PROTOCOL §2).
ACTIONS = frozenset(
    {
        "auth/handshake",
        "auth/authenticate",
        "rtm/publish",
        "rtm/subscribe",
        "rtm/unsubscribe",
        "rtm/read",
        "rtm/write",
        "rtm/delete",
        "admin/get_connections",
        "admin/close_connection",
    }
)

# A request without an id (or with a null one) is answered with id 1: every message the server sends must
# carry a non-null id because the Python client dies on anything else (PROTOCOL §2).
DEFAULT_ID = 1

# The deepest nesting of arrays and objects a PDU may hold, the PDU object itself counted: orjson refuses to
# serialise past 254, so a deeper ``id`` could not be echoed nor a deeper message stored or pushed (each reply
# wraps what it echoes one or two levels down). The CBOR side refuses past the same depth (app/codec.py).
MAX_DEPTH = 250
# (orjson.dumps raises at 255 nested containers whatever they hold: :func:`nested_deeper_than` relies on it.)


class ErrorCode:
    """The stable ``code`` values of PROTOCOL §9."""

    BAD_SCHEMA = "bad_schema"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    AUTHENTICATION_FAILED = "authentication_failed"
    INVALID_AUTH_METHOD = "invalid_auth_method"
    EMPTY_MESSAGE = "empty_message"
    MISSING_CHANNEL = "missing_channel"
    INVALID_FILTER = "invalid_filter"
    INVALID_POSITION = "invalid_position"
    INVALID_BATCH_SIZE = "invalid_batch_size"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    SUBSCRIPTION_LIMIT = "subscription_limit"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    SHARD_UNAVAILABLE = "shard_unavailable"
    NOT_REPLICATED = "not_replicated"  # durability replicated: WAIT saw too few replicas in time
    EXPIRED_POSITION = "expired_position"
    UNKNOWN_CONNECTION = "unknown_connection"
    INVALID_HISTORY = "invalid_history"
    INVALID_PERIOD = "invalid_period"
    INVALID_MESSAGE = "invalid_message"  # a CBOR value JSON cannot carry (PROTOCOL §10)
    OUT_OF_SYNC = "out_of_sync"  # a slow subscription without fast_forward was removed (PROTOCOL §7)
    INTERNAL_ERROR = "internal_error"  # a bug on our side cost this one request (logged with a traceback)


@dataclass(slots=True)
class Request:
    action: str
    id: Any
    body: dict[str, Any]
    # Set when the request cannot be served as sent ("body" present but not an object, a CBOR value JSON
    # cannot carry): it is answered with <action>/error, code ``error_code``.
    body_error: str | None = None
    error_code: str = ErrorCode.BAD_SCHEMA


@dataclass(slots=True)
class FatalError:
    """The request cannot be understood at all; the reason goes to the client before the close."""

    reason: str


@dataclass(slots=True)
class ActionError(Exception):
    """A non-fatal error reply for the current request: ``<action>/error``."""

    message: str
    code: str
    extra: dict[str, Any] | None = None


def parse_request(data: bytes | str) -> Request | FatalError:
    """Decode one incoming WebSocket message into a request (PROTOCOL §2)."""
    try:
        pdu = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return FatalError(f"invalid json: {exc}")
    if not isinstance(pdu, dict):
        return FatalError(f"a PDU must be a JSON object, not {_json_type(pdu)}")
    action = pdu.get("action")
    if not isinstance(action, str):
        return FatalError("missing action" if action is None else "action must be a string")
    if action not in ACTIONS:
        return FatalError(f"unknown action: {action[:100]}")
    if _may_nest_deeply(data) and nested_deeper_than(pdu, MAX_DEPTH):
        # Answered like CBOR's values JSON cannot carry: the action's own error, echoing the id if it can.
        pdu_id = pdu.get("id")
        if pdu_id is None or nested_deeper_than(pdu_id, MAX_DEPTH - 1):
            pdu_id = DEFAULT_ID
        return Request(
            action,
            pdu_id,
            {},
            body_error=f"invalid message: nested deeper than {MAX_DEPTH} levels",
            error_code=ErrorCode.INVALID_MESSAGE,
        )
    return request_from_pdu(pdu)


def _may_nest_deeply(data: bytes | str) -> bool:
    """A cheap (C-speed) necessary condition: so many levels need at least as many opening brackets (and
    as many bytes: most PDUs are answered by their length alone, without a scan)."""
    if len(data) <= MAX_DEPTH:
        return False
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH
    return data.count(b"[") + data.count(b"{") > MAX_DEPTH


def nested_deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` (as decoded from JSON) nests more than ``levels`` arrays/objects inside one another.

    Serialising in C costs ~3 ms per MB where walking the value in Python costs ~60, and is only done for
    PDUs that :func:`_may_nest_deeply`."""
    if not isinstance(value, (list, dict)):
        return False
    probe: Any = value
    for _ in range(254 - levels):
        probe = [probe]
    try:
        orjson.dumps(probe)
    except TypeError:  # "Recursion limit reached": the only error a value decoded from JSON can raise
        return True
    return False


def request_from_pdu(pdu: dict[str, Any]) -> Request:
    """A decoded PDU whose ``action`` is known (JSON or CBOR alike) as a request."""
    action = pdu["action"]
    pdu_id = pdu.get("id")
    if pdu_id is None:
        pdu_id = DEFAULT_ID
    body = pdu.get("body")
    if body is None:
        body = {}
    elif not isinstance(body, dict):
        # Still a Request, so the caller can answer with a proper <action>/error carrying the id.
        return Request(action, pdu_id, {}, body_error=f"body must be a JSON object, not {_json_type(body)}")
    return Request(action, pdu_id, body)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "an object"


def ok(action: str, pdu_id: Any, body: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"action": action + "/ok", "id": pdu_id, "body": body or {}})


def publish_ok(pdu_id: Any, channels: list[str], position: str | None) -> bytes:
    """``rtm/publish/ok`` (PROTOCOL §5), byte for byte what :func:`ok` makes of it, without building two
    dicts per acknowledged publish: the fixed parts are constants, the three values encoded by orjson."""
    dumps = orjson.dumps
    return b"".join(
        (
            _PUBLISH_OK_HEAD,
            dumps(pdu_id),
            _PUBLISH_OK_CHANNELS,
            dumps(channels),
            _PUBLISH_OK_POSITION,
            dumps(position),
            b"}}",
        )
    )


_PUBLISH_OK_HEAD = b'{"action":"rtm/publish/ok","id":'
_PUBLISH_OK_CHANNELS = b',"body":{"channels":'
_PUBLISH_OK_POSITION = b',"position":'


def error(action: str, pdu_id: Any, message: str, code: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {"error": message, "code": code}
    body.update(extra)
    return orjson.dumps({"action": action + "/error", "id": pdu_id, "body": body})


def action_error(action: str, pdu_id: Any, exc: ActionError) -> bytes:
    return error(action, pdu_id, exc.message, exc.code, **(exc.extra or {}))


def fatal(reason: str) -> bytes:
    """The last message before a 1000 close (PROTOCOL §2): the reference closes silently, we explain."""
    return orjson.dumps(
        {"action": "error", "id": DEFAULT_ID, "body": {"error": ErrorCode.BAD_SCHEMA, "reason": reason}}
    )


def subscription_error(
    subscription_id: Any, message: str, code: str, position: str, missed_message_count: int | None = None
) -> bytes:
    """``rtm/subscription/error``: a subscription can no longer be served as asked (PROTOCOL §5).

    Carries ``messages: []`` and a non-null ``position`` (PROTOCOL §7 MUST): the ``cobras`` client hands
    every ``rtm/subscription/*`` PDU to the subscription's data handler, reads ``body["messages"]`` and
    asserts ``body["position"]``, and dies on anything less. ``missed_message_count`` when messages were
    dropped (``out_of_sync``, PROTOCOL §7)."""
    body: dict[str, Any] = {
        "subscription_id": subscription_id,
        "error": message,
        "code": code,
        "position": position,
        "messages": [],
    }
    if missed_message_count is not None:
        body["missed_message_count"] = missed_message_count
    return orjson.dumps({"action": "rtm/subscription/error", "id": DEFAULT_ID, "body": body})


def subscription_info(
    subscription_id: Any,
    counter: int,
    info: str,
    reason: str,
    position: str,
    missed_message_count: int | None = None,
) -> bytes:
    """``rtm/subscription/info`` (PROTOCOL §7): the subscription was fast-forwarded and carries on. Its id is
    the subscription's push counter; like the error it carries ``messages: []`` and a non-null position
    (the ``cobras`` MUST), and ``missed_message_count`` whenever it is known."""
    body: dict[str, Any] = {
        "info": info,
        "reason": reason,
        "subscription_id": subscription_id,
        "position": position,
        "messages": [],
    }
    if missed_message_count is not None:
        body["missed_message_count"] = missed_message_count
    return orjson.dumps({"action": "rtm/subscription/info", "id": counter, "body": body})


# --- subscription pushes -------------------------------------------------------------------------------
# A push is assembled from byte pieces so the message itself is serialised once per publish, never once per
# subscriber (PROTOCOL §2): only the per-subscription counter and id differ between subscribers.
PUSH_HEAD = b'{"action":"rtm/subscription/data","id":'


def push_subscription_part(subscription_id: Any) -> bytes:
    """The per-subscription middle of a push, computed once per subscribe."""
    return b',"body":{"subscription_id":' + orjson.dumps(subscription_id) + b","


def push_tail(position: str, messages_json: bytes) -> bytes:
    """The shared end of a push: ``messages_json`` is the comma-joined JSON of the batch's messages."""
    return b'"position":"' + position.encode() + b'","messages":[' + messages_json + b"]}}"
