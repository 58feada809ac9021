"""A real gunicorn master with gevent workers serving ``wsgi:application``, for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.auth import compute_hash
from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import App
from tests.support.processes import ROOT, RedisProcess, free_port, wait_http_ok

STOCK_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
COBRA_WORKER = "app.gunicorn_worker.CobraWorker"


class GunicornProcess:
    """``gunicorn -c <config> -w N -b 127.0.0.1:<port> wsgi:application`` with its output in a file.

    ``config`` is ``gunicorn.conf.py`` by default (its worker class is ours); pass an empty file and a
    ``worker_class`` (``-k``) to run a bare command, e.g. the stock gevent-websocket worker."""

    def __init__(
        self,
        redis_url: str | None,
        tmp_path: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        config: Path | None = None,
        worker_class: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.workers = workers
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.extra_env = env or {}
        self.args = args or []
        self.config = config or ROOT / "gunicorn.conf.py"
        self.worker_class = worker_class
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self) -> GunicornProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("WEB_CONCURRENCY", None)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            *(sys.executable, "-m", "gunicorn", "-c", str(self.config)),
            *(("-k", self.worker_class) if self.worker_class else ()),
            *("-w", str(self.workers), "--worker-connections", "1000"),
            *("-b", f"127.0.0.1:{self.port}", "--no-control-socket", *self.args, "wsgi:application"),
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def start(self, timeout: float = 60.0, brokers_ready: bool = True) -> GunicornProcess:
        """Launch and wait until gunicorn answers and (``brokers_ready``) every worker's broker logged that
        it is ready. Under the stock worker a broker starts on its worker's first request: pass False."""
        self.launch()
        try:
            wait_http_ok(self.http + "/health/", timeout, self.process)
            deadline = time.monotonic() + timeout
            while brokers_ready and self.output().count("ready (config version") < self.workers:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("workers not ready")
                time.sleep(0.05)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.output()}") from None
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.pid).children()]

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 40.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._log.close()
        return process.returncode


def open_client(endpoint: str, app: str, role: str, secret: str, **options: Any) -> tuple[CobraClient, str]:
    """An authenticated client and the name of the broker node that holds it (from the handshake)."""
    client = CobraClient(endpoint, app, **options)
    reply = client.request("auth/handshake", {"method": "role_secret", "data": {"role": role}})
    data = reply["body"]["data"]
    client.connection_id = data["connection_id"]
    client.request(
        "auth/authenticate",
        {"method": "role_secret", "credentials": {"hash": compute_hash(secret, data["nonce"])}},
    )
    return client, data["node"]


def clients_on_every_worker(
    endpoint: str, app: str, role: str, secret: str, workers: int, attempts: int = 200
) -> tuple[dict[str, CobraClient], list[CobraClient]]:
    """Connect until every worker holds at least one client: (node → one of its clients, every client).

    The kernel decides which worker accepts a connection; keep connecting until each node was seen."""
    by_node: dict[str, CobraClient] = {}
    every: list[CobraClient] = []
    for _ in range(attempts):
        client, node = open_client(endpoint, app, role, secret)
        every.append(client)
        by_node.setdefault(node, client)
        if len(by_node) == workers:
            return by_node, every
    for client in every:
        client.close()
    raise AssertionError(f"only {sorted(by_node)} accepted connections in {attempts} attempts")


@dataclass
class Cluster:
    """A gunicorn master and its workers on their own Redis, with the test apps loaded."""

    redis: RedisProcess
    store: ConfigStore
    apps: dict[str, App]
    server: GunicornProcess

    def secret(self, role: str, app: str) -> str:
        return self.apps[app].roles[role].secret


@contextmanager
def gunicorn_cluster(tmp_path: Path, workers: int = 2) -> Iterator[Cluster]:
    from tests.conftest import make_test_apps

    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        store = ConfigStore.from_url(redis.url)
        apps = make_test_apps()
        store.put_apps(apps)
        store.ensure_well_known_apps()
        every = {app.key: app for app in apps} | {key: app for key, app in store.list_apps().items()}
        server = GunicornProcess(redis.url, tmp_path, workers).start()
        try:
            yield Cluster(redis, store, every, server)
        finally:
            server.stop()
    finally:
        redis.stop()
