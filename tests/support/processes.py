"""Real processes for the tests: redis-server nodes and broker processes, on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus

from app.client import CobraClient, CobraError
from app.embedded_redis import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_http_ok(url: str, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


class BrokerProcess:
    """``python -m app run`` in a subprocess, against a given Redis, with its output kept in a file."""

    def __init__(
        self,
        redis_url: str | None,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.port = port or free_port()
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"broker-{self.port}.log"
        self.extra_env = env or {}
        self.args = args or []
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        env.update({"COBRA_STATE_DIR": str(self.tmp_path / f"state-{self.port}"), "PYTHONUNBUFFERED": "1"})
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--port", str(self.port), *self.args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http_ok(self.http + "/health/", timeout, self.process)
            # /health/ answers before the broker has read its config: wait for a ready engine too.
            wait_for_log(self.log_path, "ready (config version", timeout)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"broker did not start:\n{self.output()}") from None
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int | None:
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


def wait_for_log(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not logged within {timeout}s")
        time.sleep(0.05)


def wait_until(
    predicate: Any, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy (no timing is asserted, only the outcome)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


__all__ = ["BrokerProcess", "RedisProcess", "free_port", "wait_for_log", "wait_http_ok", "wait_until"]


def can_authenticate(broker: BrokerProcess, app_key: str, role: str, secret: str) -> bool:
    """Whether a client can connect to ``app_key`` on ``broker`` and authenticate as ``role``: False while
    the broker does not know the app or the role (yet, or any more)."""
    try:
        with CobraClient(broker.endpoint, app_key, role, secret, timeout=2):
            return True
    except (CobraError, InvalidStatus, OSError):
        return False
