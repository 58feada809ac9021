"""What the live broker processes report of each shard: its kind, master, replicas and last failover.

Only a broker follows a Sentinel or Cluster failover (its shard link sees the master move), and the admin
panel and the CLI are other processes. Each broker already writes, with its stats document about once a
second (:func:`app.cluster.store_node_stats`, ``data.shards``), every shard's topology as its link sees it:
``kind``, ``master``, ``replicas``, ``failovers`` and ``last_failover`` (wall-clock Unix time). This module
folds those documents into one report per shard name: the most recent failover any live broker saw, and
the most failovers one followed (brokers started after a failover never saw it, so a sum would mislead).
Nothing is written for it: the documents are the registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from .cluster import node_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardReport:
    """One shard as the live brokers see it."""

    name: str
    kind: str  # "single", "sentinel" or "cluster", as the brokers' links say
    masters: tuple[str, ...]  # each distinct master a broker names: two means one broker still lags
    replicas: tuple[str, ...]  # replicas that are up, per the broker that reported the latest failover
    failovers: int  # the most master moves one broker followed
    last_failover: float | None  # Unix time of the latest move any broker followed; None: never
    brokers: int  # live brokers reporting this shard
    connected: int  # of those, how many have it up (publisher and Pub/Sub reader connected)


def shard_reports(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, ShardReport]:
    """Shard name → report, from the stats documents of the live brokers (node name → document).

    A malformed entry is skipped: one broker of another version must not hide what the others say."""
    seen: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents.values():
        data = document.get("data") if isinstance(document, Mapping) else None
        shards = data.get("shards") if isinstance(data, Mapping) else None
        for name, entry in (shards or {}).items() if isinstance(shards, Mapping) else ():
            if isinstance(entry, Mapping):
                seen.setdefault(str(name), []).append(entry)
    return {name: _fold(name, entries) for name, entries in sorted(seen.items())}


def _fold(name: str, entries: list[Mapping[str, Any]]) -> ShardReport:
    def when(entry: Mapping[str, Any]) -> float:
        value = entry.get("last_failover")
        return float(value) if isinstance(value, (int, float)) else 0.0

    latest = max(entries, key=when)
    failovers = [e.get("failovers") for e in entries]
    replicas = latest.get("replicas")
    return ShardReport(
        name=name,
        kind=str(latest.get("kind") or "single"),
        masters=tuple(sorted({str(e["master"]) for e in entries if e.get("master")})),
        replicas=tuple(str(r) for r in replicas) if isinstance(replicas, list) else (),
        failovers=max((n for n in failovers if isinstance(n, int)), default=0),
        last_failover=when(latest) or None,
        brokers=len(entries),
        connected=sum(1 for e in entries if e.get("up")),
    )


def read_shard_reports(client: redis.Redis) -> dict[str, ShardReport]:
    """:func:`shard_reports` of the brokers that reported within ``NODE_TTL`` seconds; empty when the
    config Redis cannot be read (the caller shows "no broker reports", it does not fail)."""
    try:
        return shard_reports(node_stats(client))
    except (redis.RedisError, ValueError, TypeError) as exc:
        log.warning("cannot read the brokers' shard reports: %s", exc)
        return {}


def format_failover(when: float | None) -> str:
    """``2026-12-02T03:04:05Z``, or ``never``: the form /ready uses too."""
    return "never" if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
