"""Bursts: a reconnect storm of subscribes, and thousands of connections opened and dropped at once."""

from __future__ import annotations

import base64
import os
import selectors
import socket
import struct
import threading
import uuid

from app.client import CobraClient
from app.models import App, Role
from tests.conftest import TEST_APP
from tests.support.processes import wait_until

SECRET = "storm-secret-0123456789abcdefghijk"


def test_a_storm_of_concurrent_subscribes_all_succeed(broker, test_apps, channel):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    clients = [CobraClient(broker.endpoint, TEST_APP, "pubsub", secret, compression=None) for _ in range(300)]
    errors: list[str] = []

    def subscribe(client: CobraClient, i: int) -> None:
        try:
            client.subscribe(channel if i % 2 else f"{channel}-{i % 7}")
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=subscribe, args=(c, i)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        publisher = clients[0]
        publisher.publish(channel, "to all")
        for client in clients[1::2]:  # every odd client follows `channel`
            push = client.next_push(timeout=10)
            assert push["body"]["messages"] == ["to all"]
    finally:
        for client in clients:
            client.close()


def upgrade(appkey: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /v2?appkey={appkey} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def open_many(port: int, appkey: str, count: int) -> list[socket.socket]:
    """``count`` upgraded connections, opened concurrently from one thread."""
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, b"")
        sockets.append(sock)
    pending = len(sockets)
    while pending:
        for key, events in selector.select(timeout=30):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                sock.send(upgrade(appkey))
                selector.modify(sock, selectors.EVENT_READ, b"")
            else:
                data = key.data + sock.recv(4096)
                if b"\r\n\r\n" in data:
                    assert data.startswith(b"HTTP/1.1 101"), data[:60]
                    selector.unregister(sock)
                    pending -= 1
                else:
                    selector.modify(sock, selectors.EVENT_READ, data)
    selector.close()
    return sockets


def test_5000_connections_opened_and_dropped_at_once(broker_factory, store):
    # An app of its own, so that the counts below are this test's connections only.
    app = App(key=f"storm-{uuid.uuid4().hex[:8]}", roles={"admin": Role(name="admin", secret=SECRET)})
    store.put_app(app)
    # 5,000 unauthenticated sockets from one address are a storm on purpose here: the caps and the deadline
    # of anonymous sockets (SECURITY.md, tested in test_preauth_limits.py) are lifted for it.
    anonymous_unbounded = {
        "COBRA_PREAUTH_MAX_PER_IP": "0",
        "COBRA_PREAUTH_MAX_TOTAL": "0",
        "COBRA_AUTH_TIMEOUT": "0",
    }
    broker = broker_factory(env=anonymous_unbounded)
    try:
        with CobraClient(broker.endpoint, app.key, "admin", SECRET) as admin:

            def connections() -> int:
                return len(admin.request("admin/get_connections")["body"]["connections"])

            sockets = open_many(broker.port, app.key, 5000)
            wait_until(lambda: connections() == 5001, timeout=60, message="5000 connections registered")
            for sock in sockets:  # drop them all at once, without a closing handshake (RST)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            wait_until(lambda: connections() == 1, timeout=60, message="every dropped connection cleaned up")
            assert admin.publish("after-the-storm", 1)["channels"] == ["after-the-storm"]
    finally:
        store.delete_app(app.key)
    assert broker.process.poll() is None
    assert "Traceback" not in broker.output()
