"""Every phase before authentication has a deadline (SECURITY.md, "Before authentication"): a request head
that never completes (half-sent, or trickled a byte at a time), an idle keep-alive connection (under
``python -m app run`` and gunicorn alike), and an upgraded WebSocket that answers pings but never sends
``auth/authenticate``. Each test attacks a real broker process over real sockets."""

from __future__ import annotations

import socket
import time

import pytest

from bench.wsclient import OP_PING, OP_TEXT, RawWebSocket, authenticate, pdu
from tests.conftest import TEST_APP
from tests.support.gunicorn import GunicornProcess

FAST = {"COBRA_HTTP_HEAD_TIMEOUT": "1", "COBRA_HTTP_KEEPALIVE": "1", "COBRA_AUTH_TIMEOUT": "1"}


@pytest.fixture
def fast_broker(broker_factory):
    return broker_factory(env=FAST)


def closed_by_server(sock: socket.socket, within: float = 20.0) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds; None if it stayed open."""
    sock.settimeout(within)
    received = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return received
    return None


def test_half_sent_request_line_is_closed_at_the_head_deadline(fast_broker):
    with socket.create_connection(("127.0.0.1", fast_broker.port)) as sock:
        sock.sendall(b"GET /heal")
        answer = closed_by_server(sock)
    assert answer is not None, "a half-sent request line held its socket"
    assert answer.startswith(b"HTTP/1.1 408")


def test_half_sent_headers_are_closed_at_the_head_deadline(fast_broker):
    with socket.create_connection(("127.0.0.1", fast_broker.port)) as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = closed_by_server(sock)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")


def test_a_slowloris_trickle_meets_one_deadline_for_the_whole_head(broker_factory):
    """One byte every 0.3 s keeps every single read short: only a deadline for the whole head ends it."""
    broker = broker_factory(env={"COBRA_HTTP_HEAD_TIMEOUT": "2"})
    head = b"GET /health/ HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        sock.settimeout(0.01)
        closed = False
        for byte in head:  # ~70 s if the server let it run to the end
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.3)
    assert closed, "the trickled head was read to its end"


def test_a_head_sent_in_time_is_served(fast_broker):
    with socket.create_connection(("127.0.0.1", fast_broker.port), timeout=10) as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert closed_by_server(sock).startswith(b"HTTP/1.1 200")


def _keepalive_holds_then_closes(port: int) -> None:
    """Two requests on one connection are both answered; then, idle, the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"\r\n\r\nOK\n" not in answer:
                chunk = sock.recv(65536)
                assert chunk, "the keep-alive connection closed between two quick requests"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock) == b"", "an idle keep-alive connection was kept"


def test_idle_keepalive_connection_is_closed_under_app_run(fast_broker):
    _keepalive_holds_then_closes(fast_broker.port)


def test_gunicorn_keepalive_setting_holds(redis_server, test_apps, tmp_path):
    server = GunicornProcess(redis_server.url, tmp_path, workers=1, args=["--keep-alive", "1"]).start()
    try:
        _keepalive_holds_then_closes(server.port)
    finally:
        server.stop()


def test_websocket_that_answers_pings_but_never_authenticates_is_closed(fast_broker):
    ws = RawWebSocket(fast_broker.port, TEST_APP, timeout=20)
    try:
        ws.send_frame(OP_TEXT, pdu("auth/handshake", 1, {"method": "role_secret", "data": {"role": "x"}}))
        deadline = time.monotonic() + 20
        close = None
        while time.monotonic() < deadline and close is None:
            ws.send_frame(OP_PING, b"alive")  # as lively as a client can be, only it never authenticates
            try:
                while close is None:
                    frame = ws.recv_frame(timeout=0.3)
                    close = frame if frame.opcode == 0x8 else None
            except TimeoutError:
                continue
        assert close is not None, "an unauthenticated WebSocket was kept"
        assert close.close_code == 1008, close.payload
        assert close.payload[2:] == b"authentication timeout"
    finally:
        ws.close()


def test_authenticated_websocket_outlives_the_auth_timeout(fast_broker, test_apps):
    ws = RawWebSocket(fast_broker.port, TEST_APP, timeout=10)
    try:
        authenticate(ws, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        time.sleep(2.5)  # past the 1 s auth_timeout: nothing may happen to an authenticated connection
        ws.send_frame(OP_TEXT, pdu("rtm/publish", 7, {"channel": "c", "message": 1}))
        assert ws.recv_json(timeout=10)["action"] == "rtm/publish/ok"
    finally:
        ws.close()
