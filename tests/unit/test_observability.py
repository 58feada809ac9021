"""The sans-I/O parts of operations: batch-latency histogram, Prometheus rendering, JSON log lines, the
monitor's table."""

from __future__ import annotations

import io
import logging

import orjson
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.cli.monitor_command import render
from app.logs import JsonFormatter, redact
from app.stats import BATCH_SECONDS_BUCKETS, Stats


def document(node: str, publishes: int, shard_up: int = 1) -> dict:
    return {
        "node": node,
        "ts": 0,
        "data": {
            "cobra": {
                "published_count": {"pub": publishes},
                "published_count_per_second": {"pub": 2.0},
                "subscriptions": {"sub": 3},
            },
            "channel_data": {"published_count_per_second": {"app::fps": 2.0}},
            "system": {"connections": 4, "subscriptions": 3, "mem_bytes": 1 << 20, "uptime": "0:01:00"},
            "apps": {"app": {"connections": 4, "published_count": publishes, "delivered_count": 7}},
            "shards": {"default": {"up": shard_up, "queued": 0}},
            "totals": {"publishes": publishes, "deliveries": 7, "errors": 1},
            "publish_batch_seconds": {"buckets": [["0.001", 5], ["+Inf", 6]], "sum": 0.5, "count": 6},
        },
    }


def samples(text: bytes) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return found


def test_batch_latency_buckets_are_inclusive_upper_bounds_and_cumulative():
    stats = Stats()
    for seconds in (0.0001, BATCH_SECONDS_BUCKETS[1], 0.003, 100.0):
        stats.on_publish_batch(10, seconds)
    histogram = dict(stats.batch_histogram())
    assert histogram[str(BATCH_SECONDS_BUCKETS[0])] == 1
    assert histogram[str(BATCH_SECONDS_BUCKETS[1])] == 2  # le means "less than or equal"
    assert histogram["0.005"] == 3
    assert histogram["+Inf"] == 4 == stats.publish_batches
    assert stats.publish_batch_commands == 40


def test_channel_interval_is_handed_over_and_restarts_from_zero():
    stats = Stats()
    stats.on_delivery(b"app::c", 3, 10)
    interval = stats.take_channel_interval()
    assert interval.delivered_count[b"app::c"] == 3 and interval.delivered_bytes[b"app::c"] == 30
    assert not stats.channel_delivered_count
    assert stats.deliveries == 3  # totals are kept


def test_metrics_label_every_node_so_a_scrape_covers_the_cluster():
    found = samples(metrics.render({"a": document("a", 5), "b": document("b", 7, shard_up=0)}))
    assert found[("cobra_nodes",)] == 2
    assert found[("cobra_publishes_total", ("node", "a"))] == 5
    assert found[("cobra_publishes_total", ("node", "b"))] == 7
    assert found[("cobra_shard_up", ("node", "b"), ("shard", "default"))] == 0
    assert found[("cobra_app_publishes_total", ("app", "app"), ("node", "a"))] == 5
    assert found[("cobra_publish_batch_seconds_bucket", ("le", "0.001"), ("node", "a"))] == 5
    assert found[("cobra_publish_batch_seconds_count", ("node", "a"))] == 6


def test_metrics_survive_documents_of_another_version():
    odd = {"node": "old", "data": {"system": {"connections": "many"}, "totals": None, "shards": []}}
    found = samples(metrics.render({"old": odd}, cluster_view=False))
    assert found[("cobra_connections", ("node", "old"))] == 0
    assert found[("cobra_cluster_view",)] == 0


def json_lines(emit) -> list[dict]:
    """What ``emit(logger)`` logs, through the JSON formatter, one dict per line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_lines_carry_the_connection_id_and_mask_url_passwords():
    extra = {"connection_id": "0123456789ab"}
    [line] = json_lines(
        lambda log: log.warning("connection %s: using %s", "0123456789ab", "redis://:pw@h", extra=extra)
    )
    assert line["connection_id"] == "0123456789ab"
    assert line["message"] == "connection 0123456789ab: using redis://:***@h"  # the plain text is unchanged
    assert "pw" not in line["message"]
    assert line["level"] == "warning" and isinstance(line["pid"], int)


def test_the_connection_id_comes_from_the_field_not_the_message_text():
    [line] = json_lines(lambda log: log.warning("connection %s: gone", "0123456789ab"))
    assert "connection_id" not in line
    assert line["message"] == "connection 0123456789ab: gone"


def test_extra_fields_go_into_the_json_line():
    [line] = json_lines(lambda log: log.warning("m", extra={"connection_id": "feedfacecafe", "node": "n1"}))
    assert (line["connection_id"], line["node"]) == ("feedfacecafe", "n1")


def test_redact_leaves_urls_without_password_alone():
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("rediss://user:secret@host:6380") == "rediss://user:***@host:6380"


def test_monitor_table_sums_nodes_roles_and_channels():
    text = render({"a": document("a", 5), "b": document("b", 7)})
    assert "2 node(s)" in text
    lines = text.splitlines()
    assert any(line.startswith("(all)") and " 8 " in line for line in lines)  # 4 + 4 connections
    assert any(line.startswith("pub ") and " 12 " in line for line in lines)  # 5 + 7 published
    assert any(line.startswith("app::fps") and " 4 " in line for line in lines)  # 2 + 2 per second
