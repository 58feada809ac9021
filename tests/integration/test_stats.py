"""PROTOCOL §8: every broker process publishes its statistics to ``/stats`` of ``_stats`` about once a
second (what ``cobra monitor`` reads), and keeps its latest document in the cluster's stats hash (what the
admin dashboard, ``python -m app monitor`` and ``/metrics`` read). Real gunicorn, 2 workers, real Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import pytest

from app.client import CobraClient
from app.cluster import STATS_KEY, node_stats
from tests.conftest import TEST_APP
from tests.support.gunicorn import clients_on_every_worker, gunicorn_cluster, open_client
from tests.support.processes import ROOT, wait_until

WORKERS = 2
ROLE_MAPS = [
    f"{kind}_{unit}{suffix}"
    for kind in ("published", "subscribed", "reads", "writes")
    for unit in ("count", "bytes")
    for suffix in ("", "_per_second")
]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with gunicorn_cluster(tmp_path_factory.mktemp("stats"), WORKERS) as running:
        yield running


@pytest.fixture
def clients():
    opened: list[CobraClient] = []
    yield opened
    for client in opened:
        client.close()


def stats_subscriber(running, clients) -> CobraClient:
    app = running.store.get_app("_stats")
    client, _ = open_client(running.server.endpoint, "_stats", "stats", app.roles["stats"].secret)
    clients.append(client)
    client.subscribe("/stats")
    return client


def next_document(client: CobraClient) -> dict[str, Any]:
    while True:
        push = client.next_push(timeout=10)
        if push["action"] == "rtm/subscription/data":
            (document,) = push["body"]["messages"]  # cobra monitor reads messages[0] of each push
            return document


def is_number_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    )


def test_every_worker_publishes_a_protocol_shaped_document_to_the_stats_channel(running, clients):
    subscriber = stats_subscriber(running, clients)
    documents: dict[str, dict[str, Any]] = {}
    wait_until(
        lambda: documents.update({(d := next_document(subscriber))["node"]: d}) or len(documents) == WORKERS,
        timeout=30,
        message="a document from each worker",
    )
    for node, document in documents.items():
        data = document["data"]
        assert {*ROLE_MAPS, "subscriptions"} <= set(data["cobra"]), node
        assert all(is_number_map(leaf) for leaf in data["cobra"].values()), node
        assert all(is_number_map(leaf) for leaf in data["channel_data"].values()), node
        system = data["system"]
        assert isinstance(system["connections"], int) and isinstance(system["mem_bytes"], int)
        assert system["mem_bytes"] > 0
        assert re.fullmatch(r"\d+:\d\d:\d\d", system["uptime"])
    assert set(documents) == set(node_stats(running.store.redis))


def test_stats_count_traffic_per_role_per_app_and_per_channel_across_workers(running, clients):
    channel = f"stats-{uuid.uuid4().hex[:8]}"
    key = f"{TEST_APP}::{channel}"
    subscribers, every = clients_on_every_worker(
        running.server.endpoint, TEST_APP, "subscriber", running.secret("subscriber", TEST_APP), WORKERS
    )
    clients.extend(every)
    for subscriber in subscribers.values():
        subscriber.subscribe(channel)
    publisher, _ = open_client(
        running.server.endpoint, TEST_APP, "publisher", running.secret("publisher", TEST_APP)
    )
    clients.append(publisher)
    monitor = stats_subscriber(running, clients)
    before = totals(running)
    sent = 30
    for n in range(sent):
        publisher.publish(channel, {"n": n})
    for subscriber in subscribers.values():
        assert [subscriber.next_push()["body"]["messages"][0]["n"] for _ in range(sent)] == list(range(sent))

    expected = {
        "by_role": before["by_role"] + sent,
        "published": before["published"] + sent,
        "delivered": before["delivered"] + sent * WORKERS,
    }
    wait_until(lambda: totals(running) == expected, timeout=30, message="counters add up across workers")
    documents = node_stats(running.store.redis)
    per_role = sum_maps(doc["data"]["cobra"]["subscribed_count"] for doc in documents.values())
    assert per_role["subscriber"] >= sent * WORKERS

    # the channel's rates show up in the stream's channel_data while the traffic lasts
    seen_rates: set[str] = set()
    while len(seen_rates) < 2:
        publisher.publish(channel, {"more": True})
        channel_data = next_document(monitor)["data"]["channel_data"]
        seen_rates |= {
            metric
            for metric in ("published_count_per_second", "subscribed_count_per_second")
            if channel_data[metric].get(key, 0) > 0
        }


def totals(running) -> dict[str, float]:
    """Across every node: publishes by role ``publisher``, and publishes/deliveries of the test app."""
    documents = node_stats(running.store.redis)
    roles = sum_maps(doc["data"]["cobra"]["published_count"] for doc in documents.values())
    apps = [doc["data"]["apps"].get(TEST_APP, {}) for doc in documents.values()]
    return {
        "by_role": roles.get("publisher", 0),
        "published": sum(app.get("published_count", 0) for app in apps),
        "delivered": sum(app.get("delivered_count", 0) for app in apps),
    }


def sum_maps(maps) -> dict[str, float]:
    total: dict[str, float] = {}
    for values in maps:
        for name, value in values.items():
            total[name] = total.get(name, 0) + value
    return total


def test_node_stats_forgets_nodes_that_stopped_reporting(running):
    redis = running.store.redis
    stale = {"node": "gone:1:1", "ts": time.time() - 3600, "data": {}}
    redis.hset(STATS_KEY, "gone:1:1", orjson.dumps(stale))
    assert "gone:1:1" not in node_stats(redis)
    assert not redis.hexists(STATS_KEY, "gone:1:1")


def test_monitor_once_prints_every_node_role_and_channel(running, clients):
    channel = f"monitor-{uuid.uuid4().hex[:8]}"
    publisher, _ = open_client(
        running.server.endpoint, TEST_APP, "pubsub", running.secret("pubsub", TEST_APP)
    )
    clients.append(publisher)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}

    def snapshot() -> str | None:
        publisher.publish(channel, {"x": 1})  # keep the channel among the busiest of the interval
        result = subprocess.run(
            [sys.executable, "-m", "app", "monitor", "--once", "--redis-url", running.redis.url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout if f"{TEST_APP}::{channel}" in result.stdout else None

    output = wait_until(snapshot, timeout=30, interval=0.3, message="the channel in the monitor")
    for node in node_stats(running.store.redis):
        assert node in output
    assert "pubsub" in output and "(all)" in output


def test_monitor_reads_the_stats_channel_like_cobra_monitor(running):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    secret = running.store.get_app("_stats").roles["stats"].secret
    result = subprocess.run(
        [
            *(sys.executable, "-m", "app", "monitor", "--once", "--source", "channel"),
            *("--endpoint", running.server.endpoint, "--rolesecret", secret),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "node(s)" in result.stdout


def test_monitor_once_fails_clearly_when_no_node_reports(tmp_path):
    from tests.support.processes import RedisProcess

    redis = RedisProcess(tmp_path / "empty")
    redis.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        result = subprocess.run(
            [sys.executable, "-m", "app", "monitor", "--once", "--redis-url", redis.url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        redis.stop()
    assert result.returncode == 1
    assert "no broker node reported statistics" in result.stderr


def delivered_to(running, role: str) -> float:
    documents = node_stats(running.store.redis)
    return sum_maps(doc["data"]["cobra"]["subscribed_count"] for doc in documents.values()).get(role, 0)


def test_a_health_check_between_two_ticks_counts_its_deliveries_for_the_health_role(running):
    """``health`` subscribes, gets its two messages (one replayed, one live) and leaves within a
    second, between two stats ticks: its deliveries count all the same, in the documents and in monitor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    env["REDIS_URL"] = running.redis.url  # where the CLI reads the health role's secret
    before = delivered_to(running, "health")
    result = subprocess.run(
        [sys.executable, "-m", "app", "health", "--endpoint", running.server.endpoint, "--timeout", "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(
        lambda: delivered_to(running, "health") == before + 2, timeout=30, message="health's deliveries"
    )
    monitor = subprocess.run(
        [sys.executable, "-m", "app", "monitor", "--once", "--redis-url", running.redis.url],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert monitor.returncode == 0, monitor.stderr
    (row,) = [line.split() for line in monitor.stdout.splitlines() if line.split()[:1] == ["health"]]
    assert float(row[3]) == before + 2  # role, published, pub/s, delivered, ...
