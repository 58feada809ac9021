"""This process's statistics document, built about once a second and sent two ways.

1. Published through the broker's own engine to channel ``/stats`` of app ``_stats`` (PROTOCOL §8), so
   ``cobra monitor`` and any subscriber of that channel see every node.
2. Written to the cluster's stats hash (:func:`app.cluster.store_node_stats`), where the admin dashboard,
   ``python -m app monitor`` and ``/metrics`` read the latest document of every live node at once.

The hot path only bumps counters (:mod:`app.stats`). Everything derived — deliveries per role (from each
subscription's ``delivered`` counter, and what ended subscriptions handed over), per-app totals, rates — is
computed here, once per tick, at a cost proportional to the subscriptions and active channels of this
process.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import gevent
import orjson
import psutil
import redis

from . import __version__
from .channels import channel_key
from .cluster import store_node_stats
from .engine import EngineError
from .models import STATS_APP
from .stats import ChannelInterval
from .windows import process_scheduler

if TYPE_CHECKING:
    from .services import Services
    from .session import Session

log = logging.getLogger(__name__)

STATS_CHANNEL = "/stats"
STATS_INTERVAL = 1.0  # seconds; PROTOCOL §8 says "about once a second"
# Busiest channels per document: bounds its size (a reported channel costs ~50 bytes per rate map) while a
# process may see millions of channels. Per-app numbers always cover every channel.
MAX_CHANNELS = 100

YIELD_EVERY = 500  # connections walked between two yields to the event loop in a stats tick


class StatsPublisher:
    """``sessions``: this process's sessions by connection id; ``app_connections``: its connections per
    app; ``store``: the config Redis, where the cluster's stats hash lives."""

    def __init__(
        self,
        services: Services,
        store: redis.Redis,
        sessions: Callable[[], Mapping[str, Session]],
        app_connections: Mapping[str, int],
        interval: float = STATS_INTERVAL,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.services = services
        self.store = store
        self.sessions = sessions
        self.app_connections = app_connections
        self.started_at = time.time()
        self.interval = interval
        self.max_channels = max_channels
        self.key = channel_key(STATS_APP, STATS_CHANNEL)
        self.last_document: dict[str, Any] | None = None
        # deliveries per role, aggregated from the subscriptions' own counters at each tick
        self.subscribed_count: Counter[str] = Counter()
        self.subscribed_bytes: Counter[str] = Counter()
        self.app_totals: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._previous_totals: dict[str, dict[str, int]] = {}  # cobra metric → totals last tick
        self._previous_tick = time.monotonic()
        self._process: psutil.Process | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._failing: set[str] = set()  # what failed last time, so a lasting outage logs once

    def start(self, started_at: float) -> None:
        self.started_at = started_at  # the broker's, for the uptime (set after a fork)
        self._process = psutil.Process()  # here, not in __init__: under --preload that runs before fork
        self._previous_tick = time.monotonic()
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1.0)

    def _run(self) -> None:
        while True:  # the first document at once: a node is visible from its start
            try:
                self.tick()
            except Exception:
                log.exception("building the stats document failed")
            gevent.sleep(self.interval)

    def tick(self) -> dict[str, Any]:
        document = self.collect()
        payload = orjson.dumps(document)
        services = self.services
        services.engine.publish(
            self.key, payload, services.config.history_policy(STATS_APP), self._on_published
        )
        try:
            store_node_stats(self.store, services.config.node, payload)
            self._recovered("store")
        except redis.RedisError as exc:
            self._failed("store", f"cannot write the stats document to the config Redis: {exc}")
        return document

    def _on_published(self, result: str | EngineError) -> None:
        if isinstance(result, EngineError):
            self._failed("publish", f"cannot publish to {STATS_CHANNEL} of {STATS_APP}: {result.message}")
        else:
            self._recovered("publish")

    def _failed(self, what: str, message: str) -> None:
        if what not in self._failing:
            self._failing.add(what)
            log.warning("%s", message)

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("stats: %s works again", what)

    # ------------------------------------------------------------------ the document
    def collect(self) -> dict[str, Any]:
        now = time.monotonic()
        elapsed = max(now - self._previous_tick, 1e-3)
        self._previous_tick = now
        services = self.services
        stats = services.stats
        interval = stats.take_channel_interval()
        subs_per_role, subs_per_app = self._count_deliveries(interval)

        cobra: dict[str, dict[str, float]] = {}
        for metric, totals in (
            ("published_count", stats.published_count),
            ("published_bytes", stats.published_bytes),
            ("subscribed_count", self.subscribed_count),
            ("subscribed_bytes", self.subscribed_bytes),
            ("reads_count", stats.reads_count),
            ("reads_bytes", stats.reads_bytes),
            ("writes_count", stats.writes_count),
            ("writes_bytes", stats.writes_bytes),
            ("missed_count", stats.missed_count),
        ):
            current = dict(totals)
            previous = self._previous_totals.get(metric, {})
            cobra[metric] = current
            cobra[metric + "_per_second"] = {
                name: _rate(value - previous.get(name, 0), elapsed) for name, value in current.items()
            }
            self._previous_totals[metric] = current
        cobra["subscriptions"] = dict(subs_per_role)
        cobra["shed_count"] = dict(stats.shed_subscriptions)  # reason → subscriptions shed (PROTOCOL §7)

        uptime = time.time() - self.started_at
        active = set(interval.published_count) | set(interval.delivered_count)
        channel_data = self._channel_data(interval, active, elapsed)
        system = {
            "connections": len(self.sessions()),
            "subscriptions": sum(subs_per_role.values()),
            "mem_bytes": self._process.memory_info().rss if self._process is not None else 0,
            "uptime": str(timedelta(seconds=int(uptime))),
            "uptime_seconds": int(uptime),
            "pid": os.getpid(),
            "version": __version__,
            "active_channels": len(active),
            "reported_channels": len(
                channel_data["published_count_per_second"].keys()
                | channel_data["subscribed_count_per_second"].keys()
            ),
        }
        document = {
            "node": services.config.node,
            "ts": time.time(),
            "interval": round(elapsed, 3),
            "data": {
                "cobra": cobra,
                "channel_data": channel_data,
                "system": system,
                "apps": self._apps(interval, subs_per_app, elapsed),
                "shards": {
                    shard.name: {
                        "up": int(shard.available),
                        "queued": shard.queued,
                        # where the shard's writes go, for /metrics and the panel (Sentinel failovers)
                        "kind": shard.kind,
                        "master": shard.master,
                        "replicas": list(shard.replicas),
                        "failovers": shard.failovers,
                        "last_failover": shard.last_failover,
                    }
                    for shard in services.engine.shard_statuses()
                },
                "totals": {
                    "publishes": stats.publishes,
                    "published_bytes": stats.published_total_bytes,
                    "deliveries": stats.deliveries,
                    "delivered_bytes": stats.delivered_bytes,
                    "errors": stats.errors,
                    "auth_failures": stats.auth_failures,
                    "slow_consumer_disconnects": stats.slow_consumer_disconnects,
                    "shed_messages": stats.shed_messages,
                    "shed_subscriptions": dict(stats.shed_subscriptions),
                    "publish_batches": stats.publish_batches,
                    "publish_batch_commands": stats.publish_batch_commands,
                    # windows pushed before their end because their connection's budget was full
                    "window_early_flushes": process_scheduler().early_flushes,
                },
                "publish_batch_seconds": {
                    "buckets": stats.batch_histogram(),
                    "sum": stats.publish_batch_seconds,
                    "count": stats.publish_batches,
                },
            },
        }
        self.last_document = document
        return document

    def _count_deliveries(self, interval: ChannelInterval) -> tuple[Counter[str], Counter[str]]:
        """Add to each role's totals what its subscriptions delivered since the last tick: the live ones
        (each keeps its own counter, ``reported`` marks what was added already) and those that ended
        meanwhile (handed over by :meth:`app.stats.Stats.on_subscription_end`, however short they lived).
        Returns the live subscriptions per role and per app."""
        sizes: dict[str, float] = {}  # average delivered size per channel this interval
        total_count = total_bytes = 0
        for key, count in interval.delivered_count.items():
            size = interval.delivered_bytes[key]
            total_count += count
            total_bytes += size
            if count:
                sizes[key.decode(errors="replace")] = size / count
        fallback = total_bytes / total_count if total_count else 0.0

        per_role: Counter[str] = Counter()
        per_app: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        sizes_sum: defaultdict[str, float] = defaultdict(float)
        for index, session in enumerate(list(self.sessions().values())):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                # ~1 µs per subscription: with 100k of them, never hold the event loop for the whole walk
                # (a subscription ending meanwhile is handed over by on_subscription_end: never lost or
                # counted twice, as both move ``reported``)
                gevent.sleep(0)
            subs = session.subscriptions
            if not subs:
                continue
            role = session.role_name or "-"
            per_role[role] += len(subs)
            per_app[session.app_key] += len(subs)
            for sub in subs.values():
                delta = sub.delivered - sub.reported
                if delta > 0:
                    sub.reported += delta
                    counts[role] += delta
                    sizes_sum[role] += delta * sizes.get(sub.key, fallback)
        for (role, key), delta in self.services.stats.take_ended_deliveries().items():
            counts[role] += delta
            sizes_sum[role] += delta * sizes.get(key, fallback)
        self.subscribed_count.update(counts)
        # bytes per role are estimated from each channel's average delivered size this interval: the
        # subscription itself counts messages only, to keep its delivery path lean
        self.subscribed_bytes.update({role: int(total) for role, total in sizes_sum.items()})
        return per_role, per_app

    def _channel_data(
        self, interval: ChannelInterval, active: set[bytes], elapsed: float
    ) -> dict[str, dict[str, float]]:
        """Rates of the busiest channels (a channel absent from a map had no such traffic)."""
        busiest = heapq.nlargest(
            self.max_channels,
            active,
            key=lambda k: interval.published_count[k] + interval.delivered_count[k],
        )
        maps: dict[str, dict[str, float]] = {}
        for name, counter in (
            ("published_count_per_second", interval.published_count),
            ("published_bytes_per_second", interval.published_bytes),
            ("subscribed_count_per_second", interval.delivered_count),
            ("subscribed_bytes_per_second", interval.delivered_bytes),
        ):
            maps[name] = {
                key.decode(errors="replace"): _rate(counter[key], elapsed) for key in busiest if counter[key]
            }
        return maps

    def _apps(
        self, interval: ChannelInterval, subs_per_app: Counter[str], elapsed: float
    ) -> dict[str, dict[str, float]]:
        this_interval: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for metric, counter in (
            ("published_count", interval.published_count),
            ("published_bytes", interval.published_bytes),
            ("delivered_count", interval.delivered_count),
            ("delivered_bytes", interval.delivered_bytes),
        ):
            for key, value in counter.items():
                this_interval[key.partition(b"::")[0].decode(errors="replace")][metric] += value
        connections = self.app_connections
        apps: dict[str, dict[str, float]] = {}
        for app in sorted(set(this_interval) | set(self.app_totals) | set(connections) | set(subs_per_app)):
            totals = self.app_totals[app]
            totals.update(this_interval.get(app, {}))
            entry: dict[str, float] = {
                "connections": connections.get(app, 0),
                "subscriptions": subs_per_app[app],
            }
            for metric in ("published_count", "published_bytes", "delivered_count", "delivered_bytes"):
                entry[metric] = totals[metric]
                entry[metric + "_per_second"] = _rate(this_interval[app][metric], elapsed)
            apps[app] = entry
        return apps


def _rate(delta: float, seconds: float) -> float:
    return round(delta / seconds, 3)
