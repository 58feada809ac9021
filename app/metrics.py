"""``GET /metrics``: Prometheus text exposition of the whole cluster, whichever process answers the scrape.

Under gunicorn a scrape reaches one worker picked by the kernel, so a per-process registry would report a
random fraction of the traffic. Instead every process already writes its stats document to Redis once a
second (:func:`app.cluster.node_stats`); the answering process renders the documents of every live node,
each series labelled with its ``node``. We chose that over prometheus_client's multiprocess mode because:

- it covers several machines, not just the workers of one gunicorn master (and needs no shared
  ``PROMETHEUS_MULTIPROC_DIR`` to be created, wiped at deploy and cleaned of dead pids);
- the hot path stays a dict increment (multiprocess mode writes an mmap'd file per increment);
- per-node series let ``rate()`` handle a restarted worker's counter reset; a pre-summed counter would
  drop whenever a node leaves. Sum in PromQL: ``sum without (node) (rate(cobra_publishes_total[1m]))``.

The cost: numbers are up to one stats interval (~1 s) old. Scrape one address per cluster (every process
reports all nodes). When Redis is unreachable, the answering process reports itself alone and says so in
``cobra_cluster_view``.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format generate_latest() writes

# (metric name, help, key in data.totals) — counters, exposed with the ``_total`` suffix
COUNTERS = (
    ("cobra_publishes", "Messages accepted from publishers (one per channel of a publish).", "publishes"),
    ("cobra_published_bytes", "Bytes of the messages accepted from publishers.", "published_bytes"),
    ("cobra_deliveries", "Messages handed to subscriptions by the live fan-out.", "deliveries"),
    ("cobra_delivered_bytes", "Bytes handed to subscriptions by the live fan-out.", "delivered_bytes"),
    (
        "cobra_slow_consumer_disconnects",
        "Clients disconnected because their send queue overflowed (their messages were dropped).",
        "slow_consumer_disconnects",
    ),
    (
        "cobra_shed_messages",
        "Messages dropped from slow clients' send queues (fast_forward and out_of_sync, PROTOCOL §7).",
        "shed_messages",
    ),
    ("cobra_errors", "Requests answered with an error, and fatal protocol errors.", "errors"),
    ("cobra_auth_failures", "Failed authentications.", "auth_failures"),
    (
        "cobra_publish_batch_commands",
        "Commands written to Redis in pipelined publish batches.",
        "publish_batch_commands",
    ),
    (
        "cobra_window_early_flushes",
        "Period windows pushed before their end because their connection's window budget was full.",
        "window_early_flushes",
    ),
)


# What a per-app series is labelled with: the app key → its label, or None to leave the app out.
AppLabel = Callable[[str], str | None]


def _by_key(key: str) -> str:
    return key


class ClusterCollector:
    """Turns stats documents (node name → document) into metric families."""

    def __init__(
        self,
        documents: Mapping[str, Mapping[str, Any]],
        cluster_view: bool,
        app_label: AppLabel | None = _by_key,
    ) -> None:
        self.documents = documents
        self.cluster_view = cluster_view
        self.app_label = app_label  # None: no per-app series at all

    def _per_app(self, data: Mapping[str, Any], key: str) -> dict[str, float]:
        """label → value of one node; apps sharing a label are summed (one series per label set)."""
        sums: dict[str, float] = defaultdict(float)
        if self.app_label is None:
            return sums
        for app, entry in _map(data.get("apps")).items():
            label = self.app_label(app)
            if label is not None:
                sums[label] += _number(_map(entry).get(key))
        return sums

    def collect(self) -> Iterator[Metric]:
        docs = {node: _map(doc.get("data")) for node, doc in sorted(self.documents.items())}
        view = GaugeMetricFamily(
            "cobra_cluster_view",
            "1: every live node's numbers (read from Redis); 0: Redis unreachable, this process alone.",
        )
        view.add_metric([], 1 if self.cluster_view else 0)
        yield view
        nodes = GaugeMetricFamily("cobra_nodes", "Broker processes reporting statistics.")
        nodes.add_metric([], len(docs))
        yield nodes

        for name, help_text, key in (
            ("cobra_connections", "Open client connections.", "connections"),
            ("cobra_subscriptions", "Active subscriptions.", "subscriptions"),
            ("cobra_memory_bytes", "Resident memory of the broker process.", "mem_bytes"),
            ("cobra_uptime_seconds", "Seconds since the broker process started.", "uptime_seconds"),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=["node"])
            for node, data in docs.items():
                gauge.add_metric([node], _number(_map(data.get("system")).get(key)))
            yield gauge

        for name, help_text, key in COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=["node"])
            for node, data in docs.items():
                counter.add_metric([node], _number(_map(data.get("totals")).get(key)))
            yield counter

        shed = CounterMetricFamily(
            "cobra_subscriptions_shed",
            "Subscriptions told they lost messages, by reason: fast_forward, out_of_sync, expired_position.",
            labels=["node", "reason"],
        )
        for node, data in docs.items():
            for reason, count in sorted(_map(_map(data.get("totals")).get("shed_subscriptions")).items()):
                shed.add_metric([node, reason], _number(count))
        yield shed

        for name, help_text, key in (
            ("cobra_app_publishes", "Messages accepted from publishers, per app.", "published_count"),
            ("cobra_app_deliveries", "Messages handed to subscriptions, per app.", "delivered_count"),
        ):
            counter = CounterMetricFamily(name, help_text, labels=["node", "app"])
            for node, data in docs.items():
                for app, value in sorted(self._per_app(data, key).items()):
                    counter.add_metric([node, app], value)
            yield counter
        app_connections = GaugeMetricFamily(
            "cobra_app_connections", "Open connections per app.", labels=["node", "app"]
        )
        for node, data in docs.items():
            for app, value in sorted(self._per_app(data, "connections").items()):
                app_connections.add_metric([node, app], value)
        yield app_connections

        shard_up = GaugeMetricFamily(
            "cobra_shard_up", "1 when the node is connected to the shard.", labels=["node", "shard"]
        )
        shard_queued = GaugeMetricFamily(
            "cobra_shard_publish_queue",
            "Publishes waiting for or on the wire to the shard.",
            labels=["node", "shard"],
        )
        shard_master = GaugeMetricFamily(
            "cobra_shard_master",
            "1 for the node taking the shard's writes, as this broker node last heard (Sentinel moves it).",
            labels=["node", "shard", "kind", "master"],
        )
        shard_replicas = GaugeMetricFamily(
            "cobra_shard_replicas", "Replicas of the shard's master that are up.", labels=["node", "shard"]
        )
        shard_failovers = GaugeMetricFamily(
            "cobra_shard_failovers", "Master moves this broker node followed.", labels=["node", "shard"]
        )
        shard_last_failover = GaugeMetricFamily(
            "cobra_shard_last_failover_timestamp_seconds",
            "Unix time of the last master move this broker node followed (0: none).",
            labels=["node", "shard"],
        )
        for node, data in docs.items():
            for shard, entry in sorted(_map(data.get("shards")).items()):
                entry = _map(entry)
                shard_up.add_metric([node, shard], _number(entry.get("up")))
                shard_queued.add_metric([node, shard], _number(entry.get("queued")))
                if entry.get("master"):
                    labels = [node, shard, str(entry.get("kind") or "single"), str(entry["master"])]
                    shard_master.add_metric(labels, 1)
                replicas = entry.get("replicas")
                shard_replicas.add_metric([node, shard], len(replicas) if isinstance(replicas, list) else 0)
                shard_failovers.add_metric([node, shard], _number(entry.get("failovers")))
                shard_last_failover.add_metric([node, shard], _number(entry.get("last_failover")))
        yield shard_up
        yield shard_queued
        yield shard_master
        yield shard_replicas
        yield shard_failovers
        yield shard_last_failover

        latency = HistogramMetricFamily(
            "cobra_publish_batch_seconds",
            "Time from writing a pipelined publish batch to Redis until its last reply was read.",
            labels=["node"],
        )
        for node, data in docs.items():
            histogram = _map(data.get("publish_batch_seconds"))
            buckets = [(str(bound), _number(count)) for bound, count in histogram.get("buckets") or ()]
            if buckets:
                latency.add_metric([node], buckets, sum_value=_number(histogram.get("sum")))
        yield latency


def render(
    documents: Mapping[str, Mapping[str, Any]],
    cluster_view: bool = True,
    app_label: AppLabel | None = _by_key,
) -> bytes:
    """The exposition; ``app_label`` names each app's series (None: no per-app series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(documents, cluster_view, app_label))  # type: ignore[arg-type]
    return generate_latest(registry)


UNLABELLED = "other"  # under metrics_apps=labelled, every app without a metrics_label, summed
METRICS_APPS_MODES = ("label", "labelled", "off")


def app_labeller(mode: str, labels: Mapping[str, str]) -> AppLabel | None:
    """The ``metrics_apps`` setting as a labelling rule, given each app's ``metrics_label`` ("" = none):
    ``label`` its label or else its key; ``labelled`` its label or else :data:`UNLABELLED`, so no app key
    is ever shown; ``off`` no per-app series."""
    if mode not in METRICS_APPS_MODES:
        raise ValueError(f"metrics_apps must be one of {', '.join(METRICS_APPS_MODES)}, got {mode!r}")
    if mode == "off":
        return None
    if mode == "labelled":
        return lambda key: labels.get(key) or UNLABELLED
    return lambda key: labels.get(key) or key


def bearer_token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (a scraper's wrong guesses learn
    nothing from response times)."""
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").strip().encode(), expected)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    # a document from a broker of another version may lack a number: report 0 rather than fail the scrape
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
