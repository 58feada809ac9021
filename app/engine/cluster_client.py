"""History reads and key/value on a Redis Cluster shard: redis-py's ``RedisCluster``, behind the same
calls the engine makes on a single node's ``redis.Redis`` (off the hot path).

Two things are adapted. ``RedisCluster`` connects when it is built, and a shard link is built before its
cluster may be up: the client is made on first use. And some cluster failures (no node reachable) raise
``RedisClusterException``, which is not a ``redis.RedisError``: they are raised as ``redis.ConnectionError``,
which the engine already turns into ``shard_unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from ..redis_cluster_url import ClusterURL


class ClusterReadClient:
    def __init__(self, cluster: ClusterURL, socket_timeout: float = 5.0) -> None:
        self.cluster = cluster
        self.socket_timeout = socket_timeout
        self._client: RedisCluster | None = None

    def _get(self) -> RedisCluster:
        if self._client is None:
            try:
                self._client = RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in self.cluster.seeds],
                    username=self.cluster.username,
                    password=self.cluster.password,
                    socket_connect_timeout=2.0,
                    socket_timeout=self.socket_timeout,
                    cluster_error_retry_attempts=3,
                )
            except RedisClusterException as exc:
                raise redis.ConnectionError(f"cluster unreachable: {exc}") from exc
        return self._client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._get(), name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError, RedisClusterException):
                # Right after a failover the client may still know the dead master: the caller is often
                # a fill that must not come back empty. Start over from the seeds, once.
                self.close()
            try:
                return getattr(self._get(), name)(*args, **kwargs)
            except RedisClusterException as exc:
                raise redis.ConnectionError(str(exc)) from exc

        return call

    def ping(self) -> bool:
        """Every master answers (a cluster with a master down is not healthy)."""
        ping: Callable[..., Any] = self.__getattr__("ping")
        return bool(ping(target_nodes=RedisCluster.PRIMARIES))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
