"""Reading an HTTP request's header block within a budget, before the parser sees it (blocking reads only),
and the framing checks of the parsed head (:func:`framing_problem`).

Python's header parser (gevent's) accepts 100 header lines of 64 KiB each: a client that never finishes its
head pins ~6.5 MB of one process's memory per socket, anonymously. :func:`read_header_block` reads the
lines itself, stops at the first line that breaks the budget, and hands the parser a block it has already
bounded (``http_max_header_bytes``, ``http_max_headers``).
"""

from __future__ import annotations

import email.errors
from typing import Any

# Canned answers written when a request is refused before the application runs: tiny, so writing one to a
# client that does not read cannot block.
REQUEST_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
HEAD_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
OVER_CAPACITY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
)


class HeadTooLarge(ValueError):
    """The header block is over its byte or line budget (answered with 431, RFC 6585 §5)."""


def read_header_block(rfile: Any, max_bytes: int, max_lines: int) -> bytes:
    """The header lines up to and including the blank line that ends them (or up to EOF), from a buffered
    binary reader. Raises :class:`HeadTooLarge` as soon as the block passes ``max_bytes`` or ``max_lines``:
    at most ``max_bytes + 1`` bytes are ever held."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = rfile.readline(max_bytes - size + 1)
        size += len(line)
        if size > max_bytes:
            raise HeadTooLarge(f"request headers over {max_bytes} bytes")
        if not line:
            break
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(lines) > max_lines:
            raise HeadTooLarge(f"more than {max_lines} header lines")
    return b"".join(lines)


# What Python's e-mail parser (gevent's header parser) says about a MIME *body* it was not given: a
# multipart/form-data request's head alone has no boundary yet. Not a framing problem.
_BODY_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.NoBoundaryInMultipartDefect,
)


def framing_problem(headers: Any) -> str | None:
    """Why a request head (gevent's parsed headers) leaves its body length open to more than one reading,
    or None. A front proxy that read it differently would take the rest of the body for a second request
    (request smuggling), so each of these is a 400 and a close (RFC 9112 §5, §6)."""
    if any(not isinstance(d, _BODY_DEFECTS) for d in headers.defects) or headers.get_payload():
        # A line that is not ``name: value`` ("Content-Length : 5" included, RFC 9112 §5.1 "MUST reject"):
        # the parser stopped there and dropped it and every header after it.
        return "malformed header line"
    for name, value in headers.items():
        if "\n" in value:
            return f"folded header line: {name}"  # obs-fold (RFC 9112 §5.2), "Transfer-Encoding:\r\n chunked"
    lengths = {value.strip(" \t") for value in headers.get_all("content-length") or ()}
    if any(not (value.isascii() and value.isdigit()) for value in lengths):
        return "Content-Length is not a number"
    if len(lengths) > 1:
        return "conflicting Content-Length headers"  # the same value repeated is allowed (RFC 9112 §6.3)
    encodings = headers.get_all("transfer-encoding")
    if encodings is not None:
        codings = [coding.strip(" \t").lower() for value in encodings for coding in value.split(",")]
        if [coding for coding in codings if coding] != ["chunked"]:
            # gevent decodes chunked only, and only when it is the whole header: anything else it would
            # read as a Content-Length body, or as none.
            return "unsupported Transfer-Encoding"
        if lengths:
            return "both Content-Length and Transfer-Encoding"  # RFC 9112 §6.1
    upgrade = {token.strip(" \t").lower() for token in (headers.get("upgrade") or "").split(",")}
    if "websocket" in upgrade and (encodings is not None or lengths - {"0"}):
        # The socket becomes the WebSocket's after the 101: a body would be read as frames.
        return "an upgrade request with a body"
    return None
