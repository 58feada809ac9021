"""``GET /metrics``: Prometheus text exposition with the numbers of every gunicorn worker, whichever
worker the kernel hands the scrape to (real gunicorn, 2 workers, real Redis)."""

from __future__ import annotations

import urllib.request
import uuid
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.client import CobraClient, CobraError
from tests.conftest import TEST_APP
from tests.support.gunicorn import clients_on_every_worker, gunicorn_cluster, open_client
from tests.support.processes import wait_until

WORKERS = 2


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with gunicorn_cluster(tmp_path_factory.mktemp("metrics"), WORKERS) as running:
        yield running


@pytest.fixture
def clients():
    opened: list[CobraClient] = []
    yield opened
    for client in opened:
        client.close()


def scrape(running) -> tuple[str, dict[str, dict[tuple, float]]]:
    """(content type, metric name → {sorted label items → value}) of one scrape."""
    with urllib.request.urlopen(running.server.http + "/metrics", timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return content_type, samples


def per_node(samples: dict[str, dict[tuple, float]], name: str) -> dict[str, float]:
    return {dict(labels)["node"]: value for labels, value in samples.get(name, {}).items()}


def test_every_scrape_reports_every_worker(running):
    def all_up() -> bool:
        samples = scrape(running)[1]
        shards = per_node(samples, "cobra_shard_up")
        return samples["cobra_nodes"][()] == WORKERS and list(shards.values()) == [1] * WORKERS

    # each worker writes its first document as soon as its broker runs, maybe before its Pub/Sub link is up
    wait_until(all_up, message="both workers reported, connected to the shard")
    for _ in range(6):  # several scrapes: each may land on either worker, each must show both
        content_type, samples = scrape(running)
        assert content_type.startswith("text/plain")
        assert samples["cobra_nodes"][()] == WORKERS
        assert samples["cobra_cluster_view"][()] == 1
        nodes = set(per_node(samples, "cobra_memory_bytes"))
        assert len(nodes) == WORKERS
        assert all(value == 1 for value in per_node(samples, "cobra_shard_up").values())


def test_publishes_deliveries_and_connections_add_up_across_workers(running, clients):
    channel = f"metrics-{uuid.uuid4().hex[:8]}"
    by_node, every = clients_on_every_worker(
        running.server.endpoint, TEST_APP, "pubsub", running.secret("pubsub", TEST_APP), WORKERS
    )
    clients.extend(every)
    for client in by_node.values():
        client.subscribe(channel)
    _, before = scrape(running)
    sent_per_worker = 25
    for client in by_node.values():
        for n in range(sent_per_worker):
            client.publish(channel, {"n": n})
    for client in by_node.values():
        for _ in range(sent_per_worker * WORKERS):
            assert client.next_push()["action"] == "rtm/subscription/data"

    def grew(name: str, samples) -> float:
        return sum(per_node(samples, name).values()) - sum(per_node(before, name).values())

    def settled():
        _, samples = scrape(running)
        publishes, deliveries = (
            grew("cobra_publishes_total", samples),
            grew("cobra_deliveries_total", samples),
        )
        return (
            samples
            if (publishes, deliveries)
            == (
                sent_per_worker * WORKERS,
                sent_per_worker * WORKERS * WORKERS,
            )
            else None
        )

    samples = wait_until(settled, timeout=30, interval=0.2, message="totals of both workers")
    # each worker published its own share: the per-node series are not one worker's number repeated
    publishes = per_node(samples, "cobra_publishes_total")
    assert all(
        publishes[node] - per_node(before, "cobra_publishes_total").get(node, 0) == sent_per_worker
        for node in by_node
    )
    assert sum(per_node(samples, "cobra_connections").values()) >= len(every)
    assert sum(per_node(samples, "cobra_subscriptions").values()) >= WORKERS
    app_publishes = {
        dict(labels)["node"]: value
        for labels, value in samples["cobra_app_publishes_total"].items()
        if dict(labels)["app"] == TEST_APP
    }
    assert sum(app_publishes.values()) >= sent_per_worker * WORKERS
    assert sum(per_node(samples, "cobra_publish_batch_seconds_count").values()) > 0
    assert sum(per_node(samples, "cobra_publish_batch_seconds_bucket").values()) > 0


def test_errors_and_authentication_failures_are_counted(running, clients):
    _, before = scrape(running)
    client, _ = open_client(
        running.server.endpoint, TEST_APP, "subscriber", running.secret("subscriber", TEST_APP)
    )
    clients.append(client)
    with pytest.raises(CobraError):
        client.publish("denied", 1)  # the subscriber role may not publish
    stranger = CobraClient(running.server.endpoint, TEST_APP)
    clients.append(stranger)
    stranger.request("auth/handshake", {"method": "role_secret", "data": {"role": "pubsub"}})
    wrong = {"method": "role_secret", "credentials": {"hash": "AAAAAAAAAAAAAAAAAAAAAA=="}}
    stranger.request("auth/authenticate", wrong, check=False)

    def counted() -> bool:
        _, samples = scrape(running)
        return all(
            sum(per_node(samples, name).values()) > sum(per_node(before, name).values())
            for name in ("cobra_errors_total", "cobra_auth_failures_total")
        )

    wait_until(counted, timeout=30, interval=0.2, message="errors and auth failures counted")
