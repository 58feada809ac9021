"""The opening handshake of RFC 6455 §4.2 and the permessage-deflate negotiation of RFC 7692 §7. No I/O.

:func:`check_upgrade` looks at a WSGI environ and either returns the accepted :class:`Upgrade` (with the
response headers to send in the 101) or raises :class:`HandshakeError` carrying the 400 to send instead:
a malformed upgrade is a client error, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
SUPPORTED_VERSION = "13"
SUBPROTOCOL = "json"  # the C++ SDK offers it and requires it to be selected (PROTOCOL §1)
CBOR_SUBPROTOCOL = "cbor"  # the Satori RTM SDKs' CBOR mode, selected only when json is not offered (§10)

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class HandshakeError(Exception):
    def __init__(self, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = "400 Bad Request"
        self.headers = headers or []


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed for permessage-deflate on one connection.

    The server always announces ``server_no_context_takeover``: each outgoing message is compressed on its
    own, so no connection keeps a ~256 KiB zlib compressor alive, and idle connections stay small.
    """

    server_max_window_bits: int = 15
    client_no_context_takeover: bool = False
    response: str = "permessage-deflate; server_no_context_takeover"


@dataclass(frozen=True, slots=True)
class Upgrade:
    accept: str
    subprotocol: str | None = None
    deflate: DeflateParams | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)

    def response_headers(self) -> list[tuple[str, str]]:
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", self.accept)]
        if self.subprotocol:
            headers.append(("Sec-WebSocket-Protocol", self.subprotocol))
        if self.deflate:
            headers.append(("Sec-WebSocket-Extensions", self.deflate.response))
        return headers + self.extra_headers


def _tokens(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def is_websocket_request(environ: Mapping[str, Any]) -> bool:
    """A request that asks to become a WebSocket (``Upgrade: websocket``), well-formed or not."""
    return "websocket" in _tokens(environ.get("HTTP_UPGRADE", ""))


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def check_upgrade(environ: Mapping[str, Any], *, deflate_enabled: bool) -> Upgrade:
    """Validate an upgrade request (RFC 6455 §4.2.1) and negotiate its options."""
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeError("a WebSocket upgrade must use GET")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        raise HandshakeError("a WebSocket upgrade needs HTTP/1.1")
    if "upgrade" not in _tokens(environ.get("HTTP_CONNECTION", "")):
        raise HandshakeError("missing 'Connection: Upgrade'")
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
    if version != SUPPORTED_VERSION:
        # §4.4: tell the client which version we speak.
        raise HandshakeError(
            f"unsupported Sec-WebSocket-Version {version!r}", [("Sec-WebSocket-Version", SUPPORTED_VERSION)]
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        if len(base64.b64decode(key.encode("ascii"), validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64") from None

    offered = _tokens(environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", ""))
    if SUBPROTOCOL in offered:
        subprotocol: str | None = SUBPROTOCOL
    else:
        subprotocol = CBOR_SUBPROTOCOL if CBOR_SUBPROTOCOL in offered else None
    deflate = None
    if deflate_enabled:
        deflate = negotiate_deflate(environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", ""))
    return Upgrade(accept=accept_key(key), subprotocol=subprotocol, deflate=deflate)


# --- RFC 7692 -------------------------------------------------------------------------------------------


def parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """``name; param; param=value, name2`` → ``[(name, [(param, value)])]``; values may be quoted.
    Malformed parts make the whole offer they belong to unusable, so they are kept as invalid names."""
    offers = []
    for raw_offer in header.split(","):
        parts = [p.strip() for p in raw_offer.split(";")]
        if not parts[0]:
            continue
        params: list[tuple[str, str | None]] = []
        for part in parts[1:]:
            name, has_value, value = part.partition("=")
            name = name.strip()
            param_value: str | None = None
            if has_value:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                param_value = value
            params.append((name, param_value))
        offers.append((parts[0].lower(), params))
    return offers


def _window_bits(value: str | None) -> int | None:
    if value is None or not value.isdigit() or not 8 <= int(value) <= 15 or value != str(int(value)):
        return None
    return int(value)


def negotiate_deflate(header: str) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer (§7.1), or none."""
    for name, params in parse_extensions(header):
        if name != "permessage-deflate":
            continue
        accepted = _accept_deflate_offer(params)
        if accepted is not None:
            return accepted
    return None


def _accept_deflate_offer(params: list[tuple[str, str | None]]) -> DeflateParams | None:
    seen: set[str] = set()
    response = ["permessage-deflate", "server_no_context_takeover"]
    server_bits = 15
    client_no_takeover = False
    for name, value in params:
        if name in seen or not _TOKEN.match(name):
            return None  # §7.1: a duplicate or malformed parameter makes the offer invalid
        seen.add(name)
        if name == "server_no_context_takeover":
            if value is not None:
                return None
        elif name == "client_no_context_takeover":
            if value is not None:
                return None
            client_no_takeover = True
            response.append("client_no_context_takeover")
        elif name == "server_max_window_bits":
            bits = _window_bits(value)
            # zlib cannot produce raw deflate with an 8-bit window (it silently uses 9), so an offer that
            # demands 8 is declined rather than answered with data the client could not inflate.
            if bits is None or bits == 8:
                return None
            server_bits = bits
            response.append(f"server_max_window_bits={bits}")
        elif name == "client_max_window_bits":
            if value is not None:
                bits = _window_bits(value)
                if bits is None:
                    return None
                # We inflate with a 15-bit window, which reads any smaller window; echo the client's value.
                response.append(f"client_max_window_bits={bits}")
        else:
            return None  # §7.1: unknown parameters make the offer invalid
    return DeflateParams(
        server_max_window_bits=server_bits,
        client_no_context_takeover=client_no_takeover,
        response="; ".join(response),
    )
