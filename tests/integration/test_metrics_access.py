"""``/metrics`` without leaking the tenants' app keys to anonymous scrapers: a bearer token when one is set
(``metrics_token``), per-app series switched off or labelled by a name the admin chose (``metrics_apps``,
each app's ``metrics_label``) — against real broker processes and a real gunicorn."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.models import PERMISSIONS, App, Role
from tests.support.gunicorn import GunicornProcess, open_client
from tests.support.processes import can_authenticate, wait_until

SECRET = "s" * 32
TOKEN = "scrape-" + "k" * 40


def fetch(http: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(http + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def scrape_until(http: str, label: str, at_least: float = 3) -> str:
    """The first scrape whose series of app ``label`` counted ``at_least`` publishes (stats are ~1 s old)."""

    def ready() -> str | None:
        body = fetch(http)[2]
        return body if app_series(body).get(label, 0) >= at_least else None

    return wait_until(ready, timeout=30, interval=0.2, message=f"publishes of app={label} on /metrics")


def app_series(text: str) -> dict[str, float]:
    """app label → cobra_app_publishes_total summed over nodes."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cobra_app_publishes_total":
                app = sample.labels["app"]
                found[app] = found.get(app, 0.0) + sample.value
    return found


@pytest.fixture
def tenant(store):
    """A fresh app (the tenant whose key must not leak) and a function publishing through it."""
    key = f"tenant-{uuid.uuid4().hex[:10]}"
    store.put_app(App(key=key, roles={"pubsub": Role("pubsub", SECRET, PERMISSIONS)}))
    yield key
    store.delete_app(key)


def publish_some(endpoint_broker, key: str, count: int = 3) -> None:
    wait_until(lambda: can_authenticate(endpoint_broker, key, "pubsub", SECRET), message="app known")
    client, _ = open_client(endpoint_broker.endpoint, key, "pubsub", SECRET)
    try:
        for n in range(count):
            client.publish("scores", {"n": n})
    finally:
        client.close()


def test_with_a_token_set_metrics_need_it(broker_factory, tenant):
    broker = broker_factory(env={"COBRA_METRICS_TOKEN": TOKEN})
    publish_some(broker, tenant)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": "Basic x"},
    ):
        status, answer, body = fetch(broker.http, headers)
        assert status == 401, headers
        assert answer.get("WWW-Authenticate", "").startswith("Bearer")
        assert tenant not in body and "cobra_" not in body

    def scraped() -> str | None:
        status, _, body = fetch(broker.http, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        return body if app_series(body).get(tenant, 0) >= 3 else None

    wait_until(scraped, timeout=30, interval=0.2, message="the tenant's publishes on /metrics")


def test_per_app_series_can_be_switched_off(broker_factory, tenant):
    broker = broker_factory(env={"COBRA_METRICS_APPS": "off"})
    publish_some(broker, tenant)

    def counted() -> str | None:
        body = fetch(broker.http)[2]
        totals = [
            s.value
            for f in text_string_to_metric_families(body)
            for s in f.samples
            if s.name == "cobra_publishes_total"
        ]
        return body if sum(totals) >= 3 else None

    body = wait_until(counted, timeout=30, interval=0.2, message="the publishes counted")
    assert tenant not in body
    assert app_series(body) == {}
    assert "cobra_app_connections{" not in body


def test_an_app_is_reported_under_the_label_its_admin_chose(broker_factory, store, tenant):
    label = f"game-{uuid.uuid4().hex[:6]}"
    store.update_app(tenant, lambda app: App(app.key, app.roles, app.settings, metrics_label=label))
    broker = broker_factory()
    publish_some(broker, tenant)
    body = scrape_until(broker.http, label)
    assert tenant not in body


def test_labelled_mode_never_shows_an_app_key(tmp_path, redis_server, store, tenant, test_apps):
    """``metrics_apps=labelled`` under gunicorn: apps without a label are summed as ``other``."""
    server = GunicornProcess(redis_server.url, tmp_path, workers=2, env={"COBRA_METRICS_APPS": "labelled"})
    server.start()
    try:
        client, _ = open_client(server.endpoint, tenant, "pubsub", SECRET)
        try:
            for n in range(3):
                client.publish("scores", {"n": n})
        finally:
            client.close()
        body = scrape_until(server.http, "other")
        assert tenant not in body
        assert set(app_series(body)) <= {"other"} | {a.metrics_label for a in store.list_apps().values()}
    finally:
        server.stop()
