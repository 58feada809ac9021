"""The Redis deployments ``bench.ha_bench`` measures, each started fresh on loopback as *one* shard.

- ``single``: one Redis 7 node (``/usr/bin/redis-server`` or what tests/support/redis7.py finds, never the
  embedded 6.2), no replica;
- ``sentinel``: one master, two replicas, three Sentinels (tests/support/sentinel.py: down-after 1 s,
  failover-timeout 5 s);
- ``cluster``: a Redis Cluster of three masters with ``replicas`` replicas each
  (tests/support/redis_cluster.py: cluster-node-timeout 1 s).

The starters are the test suite's own (``tests.support``, as bench/shards_bench.py already uses), so the
benchmark measures the deployments the failover tests prove correct. Each topology also knows how to kill the
master holding a key (SIGKILL), tell when another node took over, bring the killed node back as a replica,
and read a channel's history on whoever is master now: what the failover measurement needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from app.engine.cluster_slots import key_slot
from app.models import Shard

SHARD_NAME = "ha"  # the only entry of the shard list: every channel lands on the topology under test


def wait_for(predicate: Any, timeout: float, message: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (its value), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (redis.RedisError, LookupError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def replica_synced(client: redis.Redis) -> bool:
    """The node is a replica whose link to its master is up (its full sync is done)."""
    try:
        info = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"
    finally:
        client.close()


class SingleNode:
    name = "single"

    def __init__(self, workdir: Path) -> None:
        from tests.support.redis7 import Node, redis7_server

        self.node = Node([redis7_server()], workdir / "single", 'save ""\nappendonly no\n')

    def start(self) -> None:
        self.node.start()

    def stop(self) -> None:
        self.node.kill()

    def shard(self) -> Shard:
        return Shard(SHARD_NAME, f"redis://{self.node.address}/0")

    def data_nodes(self) -> list[tuple[str, str]]:
        """(URL, "master" | "replica") of every running data node, for the CPU figures."""
        return [(f"redis://{self.node.address}/0", "master")]


class SentinelShard:
    name = "sentinel"
    replicas = 2

    def __init__(self, workdir: Path) -> None:
        from tests.support.sentinel import SentinelDeployment

        self.deployment = SentinelDeployment(workdir / "sentinel", replicas=self.replicas, sentinels=3)

    def start(self) -> None:
        self.deployment.start()

    def stop(self) -> None:
        self.deployment.stop()

    def shard(self) -> Shard:
        return Shard(SHARD_NAME, self.deployment.url)

    def master_port(self) -> int:
        return wait_for(self.deployment.master_port, 30, "the Sentinels to agree on a master")

    def data_nodes(self) -> list[tuple[str, str]]:
        master = self.master_port()
        return [
            (f"redis://{node.address}/0", "master" if port == master else "replica")
            for port, node in self.deployment.nodes.items()
            if node.process is not None
        ]

    # ------------------------------------------------------------------ failover
    def master_id(self, key: str) -> int:
        """Which node is master for ``key`` now (its port): every key has the one master here."""
        return self.master_port()

    def victim(self, key: str) -> int:
        """The node :meth:`kill` will kill to fail ``key`` over: the master (by its port)."""
        return self.master_port()

    def kill(self, victim: int) -> None:
        self.deployment.nodes[victim].kill()  # SIGKILL, then reaped: dead when this returns

    def failed_over(self, killed: int) -> bool:
        return self.deployment.master_port() not in (None, killed)

    def restore(self, killed: int, timeout: float = 60.0) -> None:
        """Restart the killed node on its port, empty (no persistence): Sentinel makes it a replica."""
        node = self.deployment.nodes[killed]
        node.start()
        wait_for(lambda: replica_synced(node.client()), timeout, f"{node.address} to be a synced replica")
        self.deployment.wait_sentinels_agree(self.master_port(), self.replicas, timeout=timeout)

    def history_positions(self, key: str) -> set[str]:
        client = redis.Redis(port=self.master_port(), socket_timeout=10)
        try:
            return {entry_id.decode() for entry_id, _fields in client.xrange(key)}
        finally:
            client.close()


class ClusterShard:
    name = "cluster"

    def __init__(self, workdir: Path, replicas: int, masters: int = 3) -> None:
        from tests.support.redis_cluster import RedisCluster

        self.replicas = replicas
        self.cluster = RedisCluster(workdir / f"cluster-r{replicas}", masters=masters, replicas=replicas)

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def shard(self) -> Shard:
        return Shard(SHARD_NAME, self.cluster.url)

    def data_nodes(self) -> list[tuple[str, str]]:
        masters = {node.port for node in self.cluster.masters()}
        return [
            (f"redis://{node.address}/0", "master" if node.port in masters else "replica")
            for node in self.cluster.nodes
            if node.running
        ]

    # ------------------------------------------------------------------ failover
    def master_of(self, key: str) -> Any:
        return self.cluster.node_for_slot(key_slot(key.encode()))

    def master_id(self, key: str) -> int:
        """Which node is master for ``key`` now (its port), by the key's slot."""
        return self.master_of(key).port

    def victim(self, key: str) -> tuple[Any, int]:
        """The node :meth:`kill` will kill to fail ``key`` over: the master of its slot (and the slot)."""
        slot = key_slot(key.encode())
        return self.cluster.node_for_slot(slot), slot

    def kill(self, victim: tuple[Any, int]) -> None:
        victim[0].kill()  # SIGKILL, then reaped: dead when this returns

    def failed_over(self, killed: tuple[Any, int]) -> bool:
        # masters() lists running nodes only: any owner of the slot found now is the promoted replica.
        try:
            return self.cluster.node_for_slot(killed[1]) is not killed[0]
        except (redis.RedisError, LookupError):
            return False

    def restore(self, killed: tuple[Any, int], timeout: float = 60.0) -> None:
        """Restart the killed node with its nodes.conf: it rejoins and the cluster makes it a replica."""
        node = killed[0]
        node.start()
        wait_for(lambda: replica_synced(node.client()), timeout, f"{node.address} to be a synced replica")
        self.cluster.wait_healthy(timeout=timeout, replicas=self.replicas)

    def history_positions(self, key: str) -> set[str]:
        client = self.master_of(key).client()
        try:
            return {entry_id.decode() for entry_id, _fields in client.xrange(key)}
        finally:
            client.close()
