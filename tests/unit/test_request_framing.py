"""RFC 9112 §5 and §6 on one request head, without a socket: :func:`framing_problem` names what would let a
front proxy and the broker read a body's length differently (tests/integration/test_http_framing.py sends
the same heads to a live broker)."""

from __future__ import annotations

import io

import pytest
from gevent.pywsgi import headers_factory

from app.websocket.transport import framing_problem


def head(*lines: str) -> object:
    return headers_factory(io.BytesIO(("\r\n".join(["Host: x", *lines]) + "\r\n\r\n").encode("latin-1")))


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["Content-Length: 5"],
        ["Content-Length: 5", "Content-Length: 5"],
        ["Transfer-Encoding: chunked"],
        ["Transfer-Encoding: Chunked "],
        ["Upgrade: websocket", "Connection: Upgrade"],
        ["Upgrade: websocket", "Content-Length: 0"],
        ["Upgrade: h2c", "Content-Length: 5"],  # not ours to refuse: no WebSocket takes the socket over
        # a browser's form upload: the e-mail parser misses the multipart body it was not given
        ["Content-Type: multipart/form-data; boundary=----WebKitFormBoundaryE", "Content-Length: 542"],
        ["Content-Type: multipart/mixed", "Content-Length: 10"],
    ],
)
def test_unambiguous_heads_pass(lines):
    assert framing_problem(head(*lines)) is None


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (["Content-Length: 5", "Content-Length: 6"], "conflicting Content-Length headers"),
        (["Content-Length: +5"], "Content-Length is not a number"),
        (["Content-Length: 5, 5"], "Content-Length is not a number"),
        (["Content-Length: \xb2"], "Content-Length is not a number"),  # "²": str.isdigit() says yes
        (["Transfer-Encoding: gzip"], "unsupported Transfer-Encoding"),
        (["Transfer-Encoding: chunked, gzip"], "unsupported Transfer-Encoding"),
        (["Transfer-Encoding: gzip, chunked"], "unsupported Transfer-Encoding"),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "unsupported Transfer-Encoding"),
        (["Transfer-Encoding: chunked", "Content-Length: 3"], "both Content-Length and Transfer-Encoding"),
        (["Content-Length : 5"], "malformed header line"),
        (["X: 1", "Content-Length\t: 5", "Y: 2"], "malformed header line"),
        (["no colon here"], "malformed header line"),
        (["Transfer-Encoding:", " chunked"], "folded header line: Transfer-Encoding"),
        (["Upgrade: websocket", "Content-Length: 4"], "an upgrade request with a body"),
        (["Upgrade: WebSocket", "Transfer-Encoding: chunked"], "an upgrade request with a body"),
    ],
)
def test_ambiguous_heads_are_named(lines, problem):
    assert framing_problem(head(*lines)) == problem
