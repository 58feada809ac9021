"""PROTOCOL §1 and ARCHITECTURE: on SIGTERM the broker closes its clients with 1001, and no publish that got
``rtm/publish/ok`` is lost — under gunicorn (each worker) and under ``python -m app run``.

Publishers blast with thousands of publishes in flight when the signal arrives; afterwards every
acknowledged message must be in the channel's Redis stream (XRANGE on ``<app>::<channel>``)."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import orjson
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import App, AppSettings, Role
from tests.support.gunicorn import GunicornProcess, open_client
from tests.support.processes import BrokerProcess, RedisProcess, wait_until

APP = "durable"
SECRET = "d" * 32
IN_FLIGHT = 3000  # publishes a blaster lets run ahead of their acknowledgements


class Blaster:
    """One connection publishing as fast as it can (one thread sends, one reads the acks)."""

    def __init__(self, endpoint: str, channel: str, index: int) -> None:
        self.client, self.node = open_client(endpoint, APP, "r", SECRET)
        self.channel = channel
        self.index = index
        self.sent = 0
        self.acked: set[int] = set()
        self.close_code: int | None = None
        self._threads = [threading.Thread(target=self._send), threading.Thread(target=self._receive)]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        try:
            while self.close_code is None:
                if self.sent - len(self.acked) > IN_FLIGHT:
                    time.sleep(0.001)
                    continue
                body = {"channel": self.channel, "message": {"b": self.index, "n": self.sent}}
                self.client.ws.send(orjson.dumps({"action": "rtm/publish", "id": self.sent, "body": body}))
                self.sent += 1
        except (ConnectionClosed, OSError):
            pass

    def _receive(self) -> None:
        try:
            while True:
                reply = orjson.loads(self.client.ws.recv(timeout=30))
                if reply["action"] == "rtm/publish/ok":
                    self.acked.add(reply["id"])
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else -1
        except TimeoutError:
            self.close_code = -2

    def join(self) -> None:
        for thread in self._threads:
            thread.join(60)


def wait_closed(client: CobraClient) -> int | None:
    try:
        while True:
            client.receive(timeout=30)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


def stored_messages(redis_url: str, channel: str) -> set[tuple[int, int]]:
    """(blaster, number) of every message in the channel's stream."""
    client = redis.Redis.from_url(redis_url)
    messages = [orjson.loads(fields[b"m"]) for _, fields in client.xrange(f"{APP}::{channel}")]
    return {(message["b"], message["n"]) for message in messages}


@pytest.fixture
def config_redis(tmp_path):
    server = RedisProcess(tmp_path / "redis")
    server.start()
    store = ConfigStore.from_url(server.url)
    store.ensure_well_known_apps()
    # history long enough to keep every message of the test: the stream is the proof of what Redis holds
    store.put_app(
        App(
            key=APP,
            roles={"r": Role(name="r", secret=SECRET)},
            settings=AppSettings(history_max_length=10**7),
        ),
    )
    yield server
    server.stop()


def blast_then_terminate(endpoint: str, redis_url: str, terminate) -> list[Blaster]:
    channel = f"blast-{uuid.uuid4().hex[:8]}"
    subscriber, _ = open_client(endpoint, APP, "r", SECRET)
    subscriber.subscribe(f"quiet-{channel}")
    blasters = [Blaster(endpoint, channel, index) for index in range(3)]
    wait_until(lambda: all(len(b.acked) >= 1000 for b in blasters), timeout=60, message="blasting")
    terminate()
    assert wait_closed(subscriber) == 1001
    for blaster in blasters:
        blaster.join()
    stored = stored_messages(redis_url, channel)
    for blaster in blasters:
        assert blaster.close_code == 1001
        acknowledged = {(blaster.index, n) for n in blaster.acked}
        lost = acknowledged - stored
        assert not lost, f"{len(lost)} acknowledged publish(es) missing from Redis"
    # ...and the converse: requests stop being taken before the last flush, so nothing was stored without
    # its ok reaching the client (a client that retries unacknowledged publishes makes no duplicates).
    acknowledged_all = {(b.index, n) for b in blasters for n in b.acked}
    unacknowledged = stored - acknowledged_all
    assert not unacknowledged, f"{len(unacknowledged)} stored publish(es) were never acknowledged"
    return blasters


def test_gunicorn_workers_close_clients_with_1001_and_lose_no_acknowledged_publish(config_redis, tmp_path):
    server = GunicornProcess(config_redis.url, tmp_path, workers=2).start()
    try:
        blasters = blast_then_terminate(
            server.endpoint, config_redis.url, lambda: server.process.send_signal(signal.SIGTERM)
        )
        assert server.wait(60) == 0
    finally:
        server.stop()
    output = server.output()
    assert output.count("shutting down:") >= 1 and "stopped" in output
    assert sum(len(b.acked) for b in blasters) > 0


def test_run_command_closes_clients_with_1001_and_loses_no_acknowledged_publish(config_redis, tmp_path):
    broker = BrokerProcess(config_redis.url, tmp_path).start()
    try:
        blast_then_terminate(broker.endpoint, config_redis.url, lambda: broker.signal(signal.SIGTERM))
        assert broker.process.wait(60) == 0
    finally:
        broker.stop()
    assert "shutting down:" in broker.output()
