"""What an anonymous client can hold before it authenticates is capped (SECURITY.md, "Before
authentication"): unauthenticated sockets per address and per process, the header block of a request, the
messages of an upgraded socket; an app's ``max_connections`` counts authenticated connections only; and a
process out of file descriptors backs off and says so on ``/ready/``. Real broker processes, real sockets."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.error
import urllib.request
import uuid

import psutil
import pytest

from app.client import CobraClient
from app.models import App, AppSettings, Role
from bench.wsclient import OP_TEXT, RawWebSocket, authenticate, authenticate_pdu, handshake_pdu
from tests.conftest import TEST_APP
from tests.support.gunicorn import GunicornProcess
from tests.support.processes import wait_until

SECRET = "preauth-secret-0123456789abcdefgh"
ATTACKERS = [f"127.0.0.{n}" for n in range(2, 7)]  # loopback 127/8: each is its own source address


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def half_open(port: int, source: str, data: bytes = b"GET /health/ HTTP/1.1\r\nHost: x\r\n") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    with contextlib.suppress(OSError):
        sock.sendall(data)  # a request head that never ends
    return sock


def http_status(url: str, timeout: float = 10.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def authenticated_publish_works(endpoint: str, secret: str) -> bool:
    with CobraClient(endpoint, TEST_APP, "pubsub", secret, timeout=10) as client:
        return client.publish("flood", "still here")["channels"] == ["flood"]


@pytest.fixture(params=["app run", "gunicorn"])
def server(request, broker_factory, redis_server, test_apps, tmp_path):
    """The broker under ``python -m app run`` and under gunicorn (one worker, 1,000 worker_connections)."""
    if request.param == "app run":
        yield broker_factory()
        return
    process = GunicornProcess(redis_server.url, tmp_path, workers=1).start()
    try:
        yield process
    finally:
        process.stop()


def test_thousands_of_half_open_sockets_do_not_deny_service(server, test_apps):
    """2,000 half-sent requests from 5 addresses: /health/ and an authenticated client still work."""
    _raise_nofile(8192)
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    held: list[socket.socket] = []
    try:
        for i in range(2000):
            held.append(half_open(server.port, ATTACKERS[i % len(ATTACKERS)]))
        assert http_status(server.http + "/health/") == 200
        assert authenticated_publish_works(server.endpoint, secret)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.slow
def test_ten_thousand_half_open_sockets_from_fifty_addresses_do_not_deny_service(broker_factory, test_apps):
    """SECURITY.md's figure: 10,000 half-sent requests from 50 addresses (more than the per-address and
    per-process caps admit: the rest are refused at once); /health/ and authenticated clients still work,
    and a legitimate client from yet another address gets its WebSocket."""
    _raise_nofile(16384)
    server = broker_factory()
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    attackers = [f"127.0.1.{n}" for n in range(1, 51)]
    held: list[socket.socket] = []
    try:
        for i in range(10_000):
            with contextlib.suppress(OSError):  # a refused socket may be reset while we connect
                held.append(half_open(server.port, attackers[i % len(attackers)]))
        assert http_status(server.http + "/health/") == 200
        assert authenticated_publish_works(server.endpoint, secret)
    finally:
        for sock in held:
            sock.close()


def test_sockets_over_the_per_address_cap_are_closed_at_once(broker_factory):
    broker = broker_factory(env={"COBRA_PREAUTH_MAX_PER_IP": "3"})
    held = [half_open(broker.port, "127.0.0.9") for _ in range(3)]
    try:
        extra = half_open(broker.port, "127.0.0.9")
        extra.settimeout(10)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := extra.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503")  # refused without being read, and closed
        extra.close()
        assert http_status(broker.http + "/health/") == 200  # another address is not affected
    finally:
        for sock in held:
            sock.close()


def test_sockets_over_the_process_cap_are_refused(broker_factory):
    broker = broker_factory(env={"COBRA_PREAUTH_MAX_TOTAL": "4", "COBRA_PREAUTH_MAX_PER_IP": "0"})
    held = [half_open(broker.port, ATTACKERS[i]) for i in range(4)]
    try:
        wait_until(lambda: http_status_or_none(broker.http + "/health/") is None, message="process cap full")
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: http_status_or_none(broker.http + "/health/") == 200, message="served again")


def http_status_or_none(url: str) -> int | None:
    """The status, or None when the server refused the connection before answering an HTTP status."""
    try:
        status = http_status(url, timeout=5)
    except (OSError, urllib.error.URLError):
        return None
    return None if status == 503 else status


# --- memory before authentication ---------------------------------------------------------------------
def test_header_block_over_its_byte_budget_is_refused_with_431(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


def test_header_block_over_its_line_budget_is_refused_with_431(broker):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(80))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


def test_fragments_before_authentication_are_not_assembled_past_the_small_limit(broker):
    ws = RawWebSocket(broker.port, TEST_APP, timeout=10)
    try:
        ws.send_frame(OP_TEXT, b" " * (20 << 10), fin=False)  # over 16 KiB, before any authentication
        assert ws.recv_close(timeout=10).close_code == 1009
    finally:
        ws.close()


def test_after_authentication_the_broker_limit_applies(broker, test_apps):
    ws = RawWebSocket(broker.port, TEST_APP, timeout=10)
    try:
        authenticate(ws, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        body = b'{"action":"rtm/publish","id":3,"body":{"channel":"c","message":"' + b"x" * (200 << 10)
        ws.send_frame(OP_TEXT, body[: 100 << 10], fin=False)
        ws.send_frame(0, body[100 << 10 :] + b'"}}', fin=True)
        assert ws.recv_json(timeout=10)["action"] == "rtm/publish/ok"
    finally:
        ws.close()


# --- max_connections counts authenticated connections ---------------------------------------------------
@pytest.fixture
def capped_app(store, broker):
    key = f"capped-{uuid.uuid4().hex[:8]}"
    store.put_app(
        App(key=key, roles={"r": Role(name="r", secret=SECRET)}, settings=AppSettings(max_connections=2))
    )

    def visible() -> bool:
        try:
            CobraClient(broker.endpoint, key, "r", SECRET, timeout=3).close()
            return True
        except Exception:
            return False

    wait_until(visible, message="app visible to the broker")
    yield key
    store.delete_app(key)


def test_sockets_that_only_know_the_app_key_do_not_fill_max_connections(broker, capped_app):
    squatters = [RawWebSocket(broker.port, capped_app, timeout=10) for _ in range(5)]
    try:
        assert all(ws.status == 101 for ws in squatters)
        clients = []
        for _ in range(2):  # the app's two real clients get in past the five anonymous sockets

            def connect() -> CobraClient | None:
                try:
                    return CobraClient(broker.endpoint, capped_app, "r", SECRET, timeout=5)
                except Exception:
                    return None

            clients.append(wait_until(connect, timeout=20, message="a real client connects"))
        for client in clients:
            client.close()
    finally:
        for ws in squatters:
            ws.close()


def test_authenticating_past_max_connections_is_refused(broker, capped_app):
    waiting = [RawWebSocket(broker.port, capped_app, timeout=10) for _ in range(3)]
    try:
        nonces = []
        for ws in waiting:
            ws.send_frame(OP_TEXT, handshake_pdu("r"))
            nonces.append(ws.recv_json()["body"]["data"]["nonce"])
        replies = []
        for ws, nonce in zip(waiting, nonces, strict=True):
            ws.send_frame(OP_TEXT, authenticate_pdu(SECRET, nonce))
            replies.append(ws.recv_json())
        assert [r["action"] for r in replies[:2]] == ["auth/authenticate/ok"] * 2
        assert replies[2]["body"]["reason"] == "connection_limit"
        assert waiting[2].recv_close().close_code == 1008
    finally:
        for ws in waiting:
            ws.close()


# --- file descriptors -------------------------------------------------------------------------------------
def test_out_of_file_descriptors_backs_off_and_readiness_says_so(broker_factory):
    broker = broker_factory(env={"COBRA_PREAUTH_MAX_PER_IP": "0", "COBRA_PREAUTH_MAX_TOTAL": "0"})
    process = psutil.Process(broker_pid(broker))
    in_use = process.num_fds()
    process.rlimit(psutil.RLIMIT_NOFILE, (in_use + 40, in_use + 40))
    held = []
    try:
        for i in range(120):  # more than the broker has descriptors for
            held.append(half_open(broker.port, ATTACKERS[i % len(ATTACKERS)], b"GET / HTTP/1.1\r\n"))
        wait_until(lambda: "pausing accepts" in broker.output(), timeout=20, message="accept backs off")
        cpu_before = sum(process.cpu_times()[:2])
        time.sleep(3)
        busy = sum(process.cpu_times()[:2]) - cpu_before
        assert busy < 2.0, f"accept spun: {busy:.2f} s of CPU in 3 s"  # a busy loop takes the whole 3 s
        for sock in held[:60]:
            sock.close()

        def not_ready_for_descriptors() -> bool:
            try:
                urllib.request.urlopen(broker.http + "/ready/", timeout=5)
            except urllib.error.HTTPError as exc:
                return b"out of file descriptors" in exc.read()
            except OSError:
                return False
            return False

        wait_until(not_ready_for_descriptors, timeout=20, message="/ready/ reports descriptor exhaustion")
    finally:
        for sock in held:
            sock.close()


def broker_pid(broker) -> int:
    assert broker.process is not None
    return broker.process.pid
