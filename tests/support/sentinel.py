"""A Sentinel-managed Redis for the tests: one master, two replicas, three Sentinels, on loopback.

Sentinel's timings are tuned down (a master silent for 1 s is down; a failover may take 5 s) so a failover
completes in a few seconds; nothing else differs from a production setup. With ``password`` the data nodes
have ``requirepass``/``masterauth`` (and the Sentinels ``auth-pass``); with ``sentinel_password`` the
Sentinels themselves have ``requirepass``: the shard URL then carries both.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import redis

from tests.support.redis7 import Node, redis7_server, sentinel_command

MASTER_NAME = "cobra-ha"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class AuthNode(Node):
    """A :class:`Node` whose clients authenticate (``requirepass``)."""

    def __init__(self, command: list[str], directory: Path, config: str, password: str | None) -> None:
        super().__init__(command, directory, config)
        self.password = password

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1, socket_timeout=5)


class SentinelDeployment:
    def __init__(
        self,
        tmp_path: Path,
        replicas: int = 2,
        sentinels: int = 3,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        server = [redis7_server()]
        sentinel = sentinel_command()
        self.password = password
        self.sentinel_password = sentinel_password
        data = 'save ""\nappendonly no\n'
        if password:
            data += f'requirepass "{password}"\nmasterauth "{password}"\n'
        self.master = AuthNode(server, tmp_path / "master", data, password)
        self.replicas = [
            AuthNode(
                server, tmp_path / f"replica{i}", data + f"replicaof 127.0.0.1 {self.master.port}\n", password
            )
            for i in range(replicas)
        ]
        watch = (
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
        )
        if password:
            watch += f'sentinel auth-pass {MASTER_NAME} "{password}"\n'
        if sentinel_password:
            watch += f'requirepass "{sentinel_password}"\n'
        self.sentinels = [
            AuthNode(sentinel, tmp_path / f"sentinel{i}", watch, sentinel_password) for i in range(sentinels)
        ]
        # Every node by its port, whatever role it has now (roles change with failovers).
        self.nodes = {node.port: node for node in [self.master, *self.replicas]}

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        query = ""
        if self.sentinel_password:
            query = f"?sentinel_password={quote(self.sentinel_password, safe='')}"
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}{query}"

    def start(self) -> SentinelDeployment:
        self.master.start()
        for replica in self.replicas:
            replica.start()
        self.wait_replicas(self.master, len(self.replicas))
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_sentinels_agree(self.master.port, len(self.replicas))
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes.values()]:
            node.kill()

    # ------------------------------------------------------------------ what the deployment says
    def master_port(self) -> int | None:
        """The master most Sentinels name now (None when they disagree or do not answer)."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            client = sentinel.client()
            try:
                host_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                if host_port:
                    votes[int(host_port[1])] = votes.get(int(host_port[1]), 0) + 1
            except redis.RedisError:
                pass
            finally:
                client.close()
        best = max(votes.items(), key=lambda item: item[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def wait_replicas(self, master: Node, count: int, timeout: float = 30.0) -> None:
        client = master.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    info = client.info("replication")
                    online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                    ready = sum(1 for v in online if v.get("state") == "online")
                    if info.get("role") == "master" and ready >= count:
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    problem = f"{count} replica(s) of {master.address} not online within {timeout}s"
                    raise AssertionError(problem)
                time.sleep(0.1)
        finally:
            client.close()

    def wait_sentinels_agree(self, port: int, replicas: int, timeout: float = 30.0) -> None:
        """Every Sentinel names ``port`` as the master and sees ``replicas`` replicas and the others."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._sees(s, port, replicas) for s in self.sentinels if s.process is not None):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the Sentinels do not agree on master {port} within {timeout}s")
            time.sleep(0.2)

    def _sees(self, sentinel: Node, port: int, replicas: int) -> bool:
        client = sentinel.client()
        try:
            master = client.sentinel_master(MASTER_NAME)
            return (
                int(master["port"]) == port
                and int(master["num-slaves"]) >= replicas
                and int(master["num-other-sentinels"]) >= len(self.sentinels) - 1
            )
        except (redis.RedisError, KeyError):
            return False
        finally:
            client.close()
