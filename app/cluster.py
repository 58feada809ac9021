"""Many broker processes, one broker: who holds which connection, and a control channel between them.

Every process keeps, in the config Redis, a hash of its connections and a heartbeat; a process that stops
beating drops out after ``NODE_TTL`` seconds, with its connection list (the key expires). Requests that
must reach the process holding a connection (close it) go over a Pub/Sub control channel. Each heartbeat
also shares the process's connection count per app and reads the others', so a per-app connection limit
holds for the whole cluster (give or take what connects within one heartbeat). A connection's entry is
rewritten when it authenticates and when its subscriptions change, coalesced:
:meth:`Cluster.connection_changed` only marks it dirty and the heartbeat writes the latest entries, so a
subscribe storm costs one write per connection per heartbeat.

=======================================  =======  =================================================
key                                      type     content
=======================================  =======  =================================================
``cobra:cluster:nodes``                  hash     node name → JSON {pid, host, port, started_at, seen_at,
                                                 connections, apps: {app key → connections}}
``cobra:cluster:connections:<node>``     hash     connection id → JSON {app, role, remote_addr, ...}
``cobra:cluster:control``                channel  JSON commands: {"op": "close", "id", "node", ...}
``cobra:cluster:stats``                  hash     node name → JSON stats document (see below)
=======================================  =======  =================================================

The stats document of a node is what it publishes to ``/stats`` of app ``_stats`` about once a second
(PROTOCOL §8; built by :mod:`app.stats_publisher`), plus ``ts`` (Unix time it was built). Besides the §8
sections ``cobra`` (per role), ``channel_data`` (per ``<app>::<channel>``, rates over the last interval,
busiest channels only) and ``system``, ``data`` holds ``apps`` (per app: connections, subscriptions,
``published_count|bytes``, ``delivered_count|bytes`` totals and each ``*_per_second``), ``shards``
(name → {"up": 0|1, "queued": n}), ``totals`` (process-wide counters) and ``publish_batch_seconds`` (a
cumulative histogram). :func:`node_stats` returns the documents of the live nodes: the admin panel's
dashboard and ``/metrics`` read them from there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
import orjson
import redis

from .channel_listener import listen_forever

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

NODES_KEY = "cobra:cluster:nodes"
CONNECTIONS_KEY = "cobra:cluster:connections:"
CONTROL_CHANNEL = "cobra:cluster:control"
STATS_KEY = "cobra:cluster:stats"
NODE_TTL = 10.0
HEARTBEAT_INTERVAL = 1.0


def live_nodes(client: redis.Redis, now: float | None = None) -> dict[str, dict[str, Any]]:
    """The broker processes that beat within the last ``NODE_TTL`` seconds."""
    return _fresh_nodes(client.hgetall(NODES_KEY), time.time() if now is None else now)


def _fresh_nodes(entries: dict[bytes, bytes], now: float) -> dict[str, dict[str, Any]]:
    """The readable entries of the nodes hash that were written within ``NODE_TTL`` seconds of ``now``."""
    nodes = {}
    for name, raw in entries.items():
        try:
            info = orjson.loads(raw)
            fresh = now - float(info.get("seen_at", 0)) <= NODE_TTL
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            continue  # one unreadable entry does not hide the other nodes
        if fresh:
            nodes[name.decode()] = info
    return nodes


def registered_connections(client: redis.Redis, app_key: str | None = None) -> list[dict[str, Any]]:
    """Every connection of every live process (optionally of one app), as last flushed by its process."""
    nodes = list(live_nodes(client))
    with client.pipeline(transaction=False) as pipe:
        for node in nodes:
            pipe.hgetall(CONNECTIONS_KEY + node)
        results = pipe.execute()
    found = []
    for node, entries in zip(nodes, results, strict=True):
        for raw in entries.values():
            info = orjson.loads(raw)
            if app_key is None or info.get("app") == app_key:
                info["node"] = node
                found.append(info)
    return found


def node_stats(client: redis.Redis, now: float | None = None) -> dict[str, dict[str, Any]]:
    """node name → latest stats document, for the nodes that reported within ``NODE_TTL`` seconds.

    Entries of nodes that died without cleaning up are removed on the way (a node stopping cleanly
    removes its own)."""
    now = time.time() if now is None else now
    documents: dict[str, dict[str, Any]] = {}
    stale = []
    for name, raw in client.hgetall(STATS_KEY).items():
        try:
            document = orjson.loads(raw)
            fresh = now - float(document["ts"]) <= NODE_TTL
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            fresh = False
        if fresh:
            documents[name.decode()] = document
        else:
            stale.append(name)
    if stale:
        client.hdel(STATS_KEY, *stale)
    return documents


def store_node_stats(client: redis.Redis, node: str, document: bytes) -> None:
    """Replace ``node``'s stats document; the whole hash expires when no node writes any more."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(STATS_KEY, node, document).expire(STATS_KEY, int(NODE_TTL * 3)).execute()


def request_close(client: redis.Redis, connection_id: str, app_key: str | None = None) -> bool:
    """Ask the process holding ``connection_id`` (in ``app_key``'s scope) to close it with 1000.

    Its registry entry goes at once rather than at that process's next heartbeat, so the list an admin
    sees right after asking no longer shows it (the process deletes it too once closed: no harm in both)."""
    for info in registered_connections(client, app_key):
        if info.get("id") == connection_id:
            node = info["node"]
            command = {"op": "close", "id": connection_id, "node": node}
            with client.pipeline(transaction=False) as pipe:
                pipe.publish(CONTROL_CHANNEL, orjson.dumps(command))
                pipe.hdel(CONNECTIONS_KEY + node, connection_id).execute()
            return True
    return False


class Cluster:
    """This process's membership: heartbeat, connection registry, control channel listener."""

    def __init__(
        self,
        client: redis.Redis,
        node: str,
        node_info: dict[str, Any],
        local_sessions: Callable[[], Mapping[str, Session]],
        on_close_request: Callable[[str], None],
        app_connections: Mapping[str, int] | None = None,
        on_authenticated: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = client
        self.node = node
        self.node_info = node_info
        self.local_sessions = local_sessions  # id → Session of this process's connections
        self.on_close_request = on_close_request  # closes one of them (by id) with 1000
        self.app_connections = app_connections if app_connections is not None else {}  # this process's
        # Authenticated connections of this process (id → app key, and per app): an app's max_connections
        # counts these only, so sockets that merely know an app key cannot lock its clients out.
        self.authenticated: dict[str, str] = {}
        self.authenticated_per_app: Counter[str] = Counter()
        self.on_authenticated = on_authenticated  # called with a connection id as it authenticates
        # app key → connections held by the other live processes, as of their last heartbeat
        self.remote_app_connections: Counter[str] = Counter()
        self._dirty: dict[str, dict[str, Any] | None] = {}  # id → info to write, or None to delete
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._heartbeat), gevent.spawn(self._listen)]

    def stop(self) -> None:
        # Wait for the kill: a heartbeat still on its way would otherwise re-register this node.
        gevent.killall(self._greenlets, block=True, timeout=1.0)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hdel(NODES_KEY, self.node).hdel(STATS_KEY, self.node)
                pipe.delete(CONNECTIONS_KEY + self.node).execute()
        except redis.RedisError:
            pass  # the entries expire by themselves

    # ------------------------------------------------------------------ registry
    def connection_changed(self, connection_id: str, info: dict[str, Any] | None) -> None:
        self._dirty[connection_id] = info
        app_key = info.get("app") if info is not None and info.get("role") is not None else None
        was = self.authenticated.get(connection_id)
        if was == app_key:
            return
        if was is not None:
            del self.authenticated[connection_id]
            self.authenticated_per_app[was] -= 1
            if self.authenticated_per_app[was] <= 0:
                del self.authenticated_per_app[was]
        if app_key is not None:
            self.authenticated[connection_id] = app_key
            self.authenticated_per_app[app_key] += 1
            if self.on_authenticated is not None:
                self.on_authenticated(connection_id)

    def authenticated_connections(self, app_key: str, cluster_wide: bool = True) -> int:
        """The app's authenticated connections in the cluster: this process's now, the others' as of
        their last heartbeat (or this process's only)."""
        local = self.authenticated_per_app[app_key]
        return local + self.remote_app_connections[app_key] if cluster_wide else local

    def connection_ids(self, app_key: str | None) -> list[str]:
        """All connection ids in scope: this process's exactly, the others' as last flushed."""
        local = {
            cid
            for cid, session in self.local_sessions().items()
            if app_key is None or session.app_key == app_key
        }
        try:
            remote = {
                info["id"]
                for info in registered_connections(self.redis, app_key)
                if info["node"] != self.node
            }
        except redis.RedisError as exc:
            log.warning("cannot read the cluster registry: %s", exc)
            remote = set()
        return sorted(local | remote)

    def close_connection(self, connection_id: str, app_key: str | None) -> bool:
        session = self.local_sessions().get(connection_id)
        if session is not None:
            if app_key is not None and session.app_key != app_key:
                return False  # apps never see each other's connections
            self.on_close_request(connection_id)
            return True
        try:
            return request_close(self.redis, connection_id, app_key)
        except redis.RedisError as exc:
            log.warning("cannot reach the cluster registry: %s", exc)
            return False

    # ------------------------------------------------------------------ greenlets
    def _heartbeat(self) -> None:
        full_sync = True
        while True:
            try:
                self._flush(full_sync)
                full_sync = False
            except redis.RedisError as exc:
                log.warning("cluster heartbeat failed: %s", exc)
                full_sync = True  # Redis may have lost our entries: rewrite them all
            gevent.sleep(HEARTBEAT_INTERVAL)

    def _flush(self, full_sync: bool) -> None:
        key = CONNECTIONS_KEY + self.node
        if full_sync:
            dirty = {cid: session.info() for cid, session in self.local_sessions().items()}
            self._dirty.clear()
        else:
            dirty, self._dirty = self._dirty, {}
        info = dict(
            self.node_info,
            seen_at=time.time(),
            connections=len(self.local_sessions()),
            apps=dict(self.authenticated_per_app),  # what max_connections counts, across the cluster
        )
        with self.redis.pipeline(transaction=False) as pipe:
            if full_sync:
                pipe.delete(key)
            written = {cid: orjson.dumps(v) for cid, v in dirty.items() if v is not None}
            removed = [cid for cid, v in dirty.items() if v is None]
            if written:
                pipe.hset(key, mapping=written)
            if removed:
                pipe.hdel(key, *removed)
            pipe.expire(key, int(NODE_TTL * 2))
            pipe.hset(NODES_KEY, self.node, orjson.dumps(info))
            pipe.hgetall(NODES_KEY)
            nodes = _fresh_nodes(pipe.execute()[-1], info["seen_at"])
        remote: Counter[str] = Counter()
        for name, node in nodes.items():
            apps = node.get("apps")
            if name != self.node and isinstance(apps, dict):
                remote.update({str(k): int(v) for k, v in apps.items() if isinstance(v, int)})
        self.remote_app_connections = remote

    def _listen(self) -> None:
        listen_forever(self.redis, CONTROL_CHANNEL, self._on_control, "control channel listener")

    def _on_control(self, raw: bytes) -> None:
        try:
            command = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed control command")
            return
        if not isinstance(command, dict) or command.get("node") != self.node:
            return
        if command.get("op") == "close" and isinstance(command.get("id"), str):
            # the asker deleted its registry entry already: no pending flush may bring it back
            self._dirty[command["id"]] = None
            self.on_close_request(command["id"])
