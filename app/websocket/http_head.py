"""Reading an HTTP request's header block within a budget, before the parser sees it. Blocking reads only.

Python's header parser (gevent's) accepts 100 header lines of 64 KiB each: a client that never finishes its
head pins ~6.5 MB of one process's memory per socket, anonymously. :func:`read_header_block` reads the
lines itself, stops at the first line that breaks the budget, and hands the parser a block it has already
bounded (``http_max_header_bytes``, ``http_max_headers``).
"""

from __future__ import annotations

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
