"""HTTP framing a front proxy could read differently (RFC 9112 §6, request smuggling): every request whose
body length is ambiguous is refused with 400 and the connection closed, against a live broker."""

from __future__ import annotations

import socket

import pytest

from bench.wsclient import http_request, upgrade_request
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess


@pytest.fixture(scope="module")
def framing_broker(redis_server, test_apps, tmp_path_factory):
    process = BrokerProcess(redis_server.url, tmp_path_factory.mktemp("framing")).start()
    yield process
    process.stop()


def exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``request``; return everything the broker wrote and whether it then closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            pass
        return data, True


def assert_refused(broker: BrokerProcess, request: bytes) -> None:
    data, closed = exchange(broker.port, request)
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400 "), data[:300]
    # Exactly one response: nothing the broker could have read as a second request was answered.
    assert data.count(b"HTTP/1.1 ") == 1, data[:600]
    assert closed, "the connection stayed open after the 400"
    assert http_request(broker.port, b"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


# A body that is itself a complete request: what a proxy and the broker disagreeing on lengths smuggles in.
SMUGGLED = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"


def post(*headers: str, body: bytes = SMUGGLED) -> bytes:
    head = "\r\n".join(["POST /health/ HTTP/1.1", "Host: x", *headers]) + "\r\n\r\n"
    return head.encode() + body


def chunked(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"


def test_conflicting_content_lengths_are_400(framing_broker):
    assert_refused(framing_broker, post("Content-Length: 0", f"Content-Length: {len(SMUGGLED)}"))
    assert_refused(framing_broker, post(f"Content-Length: {len(SMUGGLED)}", "Content-Length: 0"))


@pytest.mark.parametrize("length", ["+34", "0x22", "34, 0", " "])
def test_a_content_length_that_is_not_digits_is_400(framing_broker, length):
    assert_refused(framing_broker, post(f"Content-Length: {length}"))


@pytest.mark.parametrize(
    "codings",
    [["gzip"], ["identity"], ["chunked, gzip"], ["gzip, chunked"], ["chunked", "gzip"], ["xchunked"]],
)
def test_a_transfer_encoding_other_than_chunked_alone_is_400(framing_broker, codings):
    headers = [f"Transfer-Encoding: {coding}" for coding in codings]
    assert_refused(framing_broker, post(*headers, body=chunked(SMUGGLED)))


def test_content_length_with_transfer_encoding_is_400(framing_broker):
    # RFC 9112 §6.1: a proxy that honours the Content-Length would read the rest as a second request.
    request = post("Content-Length: 4", "Transfer-Encoding: chunked", body=chunked(SMUGGLED))
    assert_refused(framing_broker, request)


@pytest.mark.parametrize("name", ["Content-Length ", "Transfer-Encoding ", "Content-Length\t", "Host "])
def test_whitespace_before_the_colon_is_400(framing_broker, name):
    # RFC 9112 §5.1: "MUST reject"; gevent used to drop this line and every header after it.
    value = "chunked" if name.startswith("Transfer") else str(len(SMUGGLED))
    assert_refused(framing_broker, post(f"{name}: {value}"))


def test_an_upgrade_with_a_content_length_body_is_400(framing_broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Content-Length": str(len(SMUGGLED))})
    assert_refused(framing_broker, request + SMUGGLED)


def test_an_upgrade_with_a_chunked_body_is_400(framing_broker):
    request = upgrade_request(f"/v2?appkey={TEST_APP}", {"Transfer-Encoding": "chunked"})
    assert_refused(framing_broker, request + chunked(SMUGGLED))


def test_ordinary_requests_still_work(framing_broker):
    # One Content-Length, repeated with the same value (RFC 9112 §6.3 allows it), or a chunked body.
    for request in (
        post(f"Content-Length: {len(SMUGGLED)}"),
        post(f"Content-Length: {len(SMUGGLED)}", f"Content-Length: {len(SMUGGLED)}"),
        post("Transfer-Encoding: chunked", body=chunked(SMUGGLED)),
        upgrade_request(f"/v2?appkey={TEST_APP}", {"Content-Length": "0"}),
    ):
        status, _, _ = http_request(framing_broker.port, request)
        assert status in (101, 200, 405), (status, request)


def test_no_traceback_was_logged(framing_broker):
    output = framing_broker.output()
    assert "Traceback" not in output, output[-3000:]
