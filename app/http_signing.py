"""HTTP publishing's request format and signature (PROTOCOL §13), shared by the endpoint and the client.

A backend proves it knows a role's secret without sending it: ``X-Cobra-Signature`` is
``base64(HMAC-SHA256(key = UTF-8(secret), msg = "<timestamp>\\n" + raw body))``, with ``X-Cobra-Timestamp``
the Unix time it signed at. The timestamp bounds how long a captured request can be replayed (±300 s);
SHA-256 rather than the WebSocket challenge's MD5, since no deployed client constrains this new path.
No I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from .models import Role
from .protocol import MAX_DEPTH, nested_deeper_than

ROLE_HEADER = "X-Cobra-Role"
TIMESTAMP_HEADER = "X-Cobra-Timestamp"
SIGNATURE_HEADER = "X-Cobra-Signature"
MAX_CLOCK_SKEW = 300.0  # seconds a signed request stays acceptable, either side of the server clock
MAX_BATCH = 1000  # publishes one "messages" request may carry


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Cobra-Signature`` of ``body`` signed at ``timestamp`` (decimal Unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"\n" + body, hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def signature_valid(role: Role, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` under one of the role's valid secrets (the
    previous one too while a rotation's grace lasts), and ``timestamp`` is within the allowed skew. Every
    valid secret is compared, in constant time, so timing does not tell which one matched."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(int(timestamp) - now) > MAX_CLOCK_SKEW:
        return False
    candidate = signature.encode("utf-8", "replace")
    matched = False
    for secret in role.secrets_valid_at(now):
        matched |= hmac.compare_digest(candidate, sign(secret, timestamp, body).encode("ascii"))
    return matched


class BadRequest(ValueError):
    """A body that does not follow PROTOCOL §13: answered 400 with this message and ``code``."""

    def __init__(self, message: str, code: str = "bad_schema") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PublishItem:
    """One publish of a request: a message to one or more channels (deduplicated, in order)."""

    channels: tuple[str, ...]
    message: Any


def _item(entry: Any, where: str) -> PublishItem:
    if not isinstance(entry, dict):
        raise BadRequest(f"{where} must be an object")
    if entry.get("message") is None:
        raise BadRequest(f"{where}: empty message", "empty_message")
    channels = entry.get("channels")
    if channels is not None:
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            raise BadRequest(f"{where}: channels must be a list of non-empty strings")
        names = tuple(dict.fromkeys(channels))
    else:
        channel = entry.get("channel")
        if channel is not None and (not isinstance(channel, str)):
            raise BadRequest(f"{where}: channel must be a string")
        names = (channel,) if channel else ()
    if not names:
        raise BadRequest(f"{where}: no channel or channels field", "missing_channel")
    return PublishItem(names, entry["message"])


def parse_publish_body(body: bytes) -> tuple[list[PublishItem], bool]:
    """The publishes of a request body, and whether it was the batched ``messages`` form (whose reply
    lists one result per publish). Raises :class:`BadRequest`."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and nested_deeper_than(document, MAX_DEPTH):
        raise BadRequest(f"body nested deeper than {MAX_DEPTH} levels", "invalid_message")
    if "messages" in document:
        entries = document["messages"]
        if not isinstance(entries, list) or not entries:
            raise BadRequest("messages must be a non-empty list")
        if len(entries) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} messages per request", "message_too_large")
        return [_item(entry, f"messages[{i}]") for i, entry in enumerate(entries)], True
    return [_item(document, "body")], False
