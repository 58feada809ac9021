"""Asking a Redis Cluster for its slot map, and describing its topology and health (CLI, panel).

Plain RESP connections (:mod:`app.resp`), one at a time, each bounded by ``timeout``: the first node that
answers ``CLUSTER SLOTS`` gives the map. Sharded Pub/Sub is checked for by capability (``COMMAND INFO
SPUBLISH``), not by server name or version string: a cluster without it is refused with
:data:`NO_SHARDED_PUBSUB`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import gevent

from ..redis_cluster_url import ClusterURL, parse_cluster_url
from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection
from .cluster_slots import Address, SlotMap, parse_cluster_slots

NO_SHARDED_PUBSUB = (
    "this Redis Cluster has no sharded Pub/Sub (SPUBLISH/SSUBSCRIBE, Redis 7.0 or newer): "
    "a redis+cluster:// shard needs Redis >= 7"
)


class ClusterUnavailable(Exception):
    """No node of the cluster answered, or the cluster cannot carry channels (its message says why)."""


def node_address(cluster: ClusterURL, address: Address) -> RedisAddress:
    return RedisAddress(cluster.node_url(*address))


def _call(conn: RespConnection, *args: Any) -> Any:
    reply = conn.call(*args)
    if isinstance(reply, ReplyError):
        raise ClusterUnavailable(f"{' '.join(map(str, args))}: {reply}")
    return reply


def fetch_slot_map(cluster: ClusterURL, candidates: Iterable[Address], timeout: float) -> SlotMap:
    """The slot map as the first answering node of ``candidates`` tells it. Raises ClusterUnavailable
    when none answers, or when the cluster lacks sharded Pub/Sub."""
    problems: list[str] = []
    for address in dict.fromkeys(candidates):
        conn = RespConnection(node_address(cluster, address), connect_timeout=timeout)
        try:
            with gevent.Timeout(timeout, RedisUnavailable("no answer")):
                conn.connect()
                if _call(conn, "COMMAND", "INFO", "SPUBLISH") in ([], [None]):
                    raise ClusterUnavailable(NO_SHARDED_PUBSUB)
                slot_map = parse_cluster_slots(_call(conn, "CLUSTER", "SLOTS"), address[0])
        except (RedisUnavailable, OSError) as exc:
            problems.append(f"{address[0]}:{address[1]}: {exc}")
            continue
        except ClusterUnavailable as exc:
            if str(exc) == NO_SHARDED_PUBSUB:
                raise
            problems.append(f"{address[0]}:{address[1]}: {exc}")
            continue
        finally:
            conn.close()
        if not slot_map.masters:
            problems.append(f"{address[0]}:{address[1]}: no slot is assigned (not a cluster yet?)")
            continue
        return slot_map
    raise ClusterUnavailable("no node of the cluster answered: " + "; ".join(problems))


def _probe(cluster: ClusterURL, address: Address, timeout: float) -> tuple[str | None, dict[str, str]]:
    """(None or why the node does not answer, the fields of its INFO server/memory/clients)."""
    conn = RespConnection(node_address(cluster, address), connect_timeout=timeout)
    try:
        with gevent.Timeout(timeout, RedisUnavailable("no answer")):
            conn.connect()
            reply = conn.call("INFO")
        if isinstance(reply, ReplyError):
            return str(reply), {}
        fields = dict(
            line.split(":", 1)
            for line in reply.decode().splitlines()
            if ":" in line and not line.startswith("#")
        )
        return None, fields
    except (RedisUnavailable, OSError) as exc:
        return str(exc), {}
    finally:
        conn.close()


def cluster_health(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """Topology and health of the cluster at ``url``, never raising: ``{"ok", "error"?, "masters": [{
    "address", "slots", "replicas", "ok"}], "covered"}``. ``ok`` means: sharded Pub/Sub, every slot
    covered, every master answering PING."""
    try:
        cluster = parse_cluster_url(url)
        slot_map = fetch_slot_map(cluster, cluster.seeds, timeout)
    except (ValueError, ClusterUnavailable) as exc:
        return {"ok": False, "error": str(exc), "masters": [], "covered": False}
    masters = []
    for address, node in sorted(slot_map.masters.items()):
        problem, info = _probe(cluster, address, timeout)
        masters.append(
            {
                "info": info,
                "address": f"{address[0]}:{address[1]}",
                "slots": sum(end - start + 1 for start, end in slot_map.slot_ranges(address)),
                "replicas": [f"{host}:{port}" for host, port in node.replicas],
                "ok": problem is None,
                "error": problem,
            }
        )
    ok = slot_map.covered and all(master["ok"] for master in masters)
    health: dict[str, Any] = {"ok": ok, "masters": masters, "covered": slot_map.covered}
    if not ok:
        down = [m["address"] for m in masters if not m["ok"]]
        health["error"] = "; ".join(
            ([f"master(s) not answering: {', '.join(down)}"] if down else [])
            + ([] if slot_map.covered else ["some slots have no master"])
        )
    return health


def describe_topology(health: dict[str, Any]) -> str:
    """One line for ``shards list``: ``3 masters (2+2+2 replicas)``, or what is wrong."""
    masters = health["masters"]
    if not masters:
        return health.get("error", "unknown")
    replicas = "+".join(str(len(m["replicas"])) for m in masters)
    text = f"cluster of {len(masters)} masters ({replicas} replicas)"
    return text if health["ok"] else f"{text}; {health.get('error')}"


def cluster_shard_health(url: str, timeout: float) -> dict[str, Any]:
    """:func:`cluster_health` in the shape of a single node's health on the admin panel's shard page:
    memory and clients summed over the masters, and a ``topology`` line."""
    started = time.perf_counter()
    health = cluster_health(url, timeout)
    infos = [m["info"] for m in health["masters"] if m["ok"]]
    result: dict[str, Any] = {
        "ok": health["ok"],
        "latency_ms": (time.perf_counter() - started) * 1000,
        "used_memory": sum(int(i.get("used_memory", 0)) for i in infos),
        "maxmemory": None,
        "connected_clients": sum(int(i.get("connected_clients", 0)) for i in infos),
        "version": infos[0].get("redis_version") if infos else None,
        "topology": describe_topology(health),
        "masters": health["masters"],
    }
    if not health["ok"]:
        result["error"] = health.get("error")
    return result
