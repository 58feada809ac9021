"""A sharded deployment for the tests: a config Redis, three shard redis-servers, broker processes.

Each test module builds its own (module-scoped fixture), so shard changes and shard kills never disturb the
session-wide broker the other tests use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from app.channels import channel_key
from app.client import CobraClient, CobraError
from app.config_store import ConfigStore
from app.models import PERMISSIONS, App, AppSettings, Role, Shard
from app.shards import ShardRing
from tests.support.processes import ROOT, BrokerProcess, RedisProcess

APP = "shardapp"
SECRET = "secret-of-shardapp-0123456789abcdef"


def make_app(key: str = APP, **settings: Any) -> App:
    return App(
        key=key,
        roles={"pubsub": Role(name="pubsub", secret=SECRET, permissions=PERMISSIONS)},
        settings=AppSettings(**settings),
    )


class ShardedCluster:
    def __init__(self, tmp_path: Path, shard_count: int = 3) -> None:
        self.tmp_path = tmp_path
        self.config = RedisProcess(tmp_path / "config")
        self.shards = {f"s{i}": RedisProcess(tmp_path / f"shard{i}") for i in range(shard_count)}
        self.brokers: list[BrokerProcess] = []
        self.clients: list[CobraClient] = []
        self.store: ConfigStore | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, **app_settings: Any) -> ShardedCluster:
        self.config.start()
        for server in self.shards.values():
            server.start()
        self.store = ConfigStore.from_url(self.config.url)
        self.store.put_app(make_app(**app_settings))
        self.store.set_shards(self.shard_list())
        return self

    def stop(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except Exception:
                pass
        for broker in self.brokers:
            broker.stop()
        for server in [*self.shards.values(), self.config]:
            server.stop()

    def shard_list(self) -> list[Shard]:
        return [Shard(name, server.url) for name, server in self.shards.items()]

    def broker(self, env: dict[str, str] | None = None) -> BrokerProcess:
        process = BrokerProcess(self.config.url, self.tmp_path, env=env).start()
        self.brokers.append(process)
        return process

    def client(self, broker: BrokerProcess, app: str = APP, timeout: float = 10.0) -> CobraClient:
        client = CobraClient(broker.endpoint, app, "pubsub", SECRET, timeout=timeout)
        self.clients.append(client)
        return client

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """``python -m app ARGS`` against this deployment's config store."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        env["REDIS_URL"] = self.config.url
        env["COBRA_STATE_DIR"] = str(self.tmp_path / "cli-state")
        command = [sys.executable, "-m", "app", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    # ------------------------------------------------------------------ where channels live
    def shard_name_for(self, channel: str, app: str = APP) -> str:
        assert self.store is not None
        names = [s.name for s in self.store.shards()]
        return ShardRing(names).node_for(channel_key(app, channel))

    def redis_for(self, channel: str, app: str = APP) -> redis.Redis:
        return redis.Redis.from_url(self.shards[self.shard_name_for(channel, app)].url)

    def channels_on(self, shard: str, count: int, prefix: str = "ch") -> list[str]:
        """``count`` channel names that hash to ``shard`` under the current list."""
        found, i = [], 0
        while len(found) < count:
            name = f"{prefix}-{i}"
            if self.shard_name_for(name) == shard:
                found.append(name)
            i += 1
        return found


def data_messages(client: CobraClient, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` messages pushed to ``client`` (any subscription), as (sub id, position, message)
    dicts; other pushes (subscription errors) are skipped."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        push = client.next_push(max(0.05, deadline - time.monotonic()))
        if push["action"] == "rtm/subscription/data":
            body = push["body"]
            found.extend(
                {"sub": body["subscription_id"], "position": body["position"], "message": m}
                for m in body["messages"]
            )
    return found


def next_push_of(client: CobraClient, action: str, timeout: float = 30.0) -> dict[str, Any]:
    """Skip pushes until one with ``action`` arrives."""
    deadline = time.monotonic() + timeout
    while True:
        push = client.next_push(max(0.05, deadline - time.monotonic()))
        if push["action"] == action:
            return push


class Blaster(threading.Thread):
    """Publishes ``{"n": i}`` to each of ``channels`` in turn over one connection, recording the position
    of every acknowledged publish and every error, until stopped (or ``limit`` rounds)."""

    def __init__(
        self, client: CobraClient, channels: list[str], limit: int | None = None, pause: float = 0.0
    ) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.channels = channels
        self.limit = limit
        self.pause = pause
        self.acked: dict[str, list[tuple[int, str]]] = {c: [] for c in channels}
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.rounds = 0
        self.on_round: Callable[[int], None] | None = None

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set() and (self.limit is None or n < self.limit):
            n += 1
            for channel in self.channels:
                try:
                    body = self.client.publish(channel, {"n": n})
                    self.acked[channel].append((n, body["position"]))
                except CobraError as exc:
                    self.errors.append(f"{channel}#{n}: {exc.code}")
            self.rounds = n
            if self.pause:
                time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


class Collector(threading.Thread):
    """Reads every push of one client in the background (so the broker never sees a slow consumer), keeping
    data messages per subscription and the other pushes (subscription errors) apart."""

    def __init__(self, client: CobraClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.messages: dict[str, list[tuple[str, Any]]] = {}
        self.errors: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                push = self.client.next_push(0.2)
            except TimeoutError:
                continue
            except Exception:
                return  # connection closed
            body = push.get("body") or {}
            with self.lock:
                if push.get("action") == "rtm/subscription/data":
                    got = self.messages.setdefault(body["subscription_id"], [])
                    got.extend((body["position"], m) for m in body["messages"])
                else:
                    self.errors.append(push)

    def of(self, subscription_id: str) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.messages.get(subscription_id, []))

    def numbers(self, subscription_id: str) -> list[int]:
        return [m["n"] for _position, m in self.of(subscription_id)]

    def error_codes(self) -> list[str]:
        with self.lock:
            return [e["body"].get("code") for e in self.errors]

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
