"""The per-app metrics label (what ``/metrics`` calls an app instead of its key), set from the panel, the
CLI and apps.yaml, all through the config store."""

from __future__ import annotations

import uuid

from app.config_store import dump_apps_yaml, read_apps_yaml
from tests.integration.test_cli import cli

from .conftest import audit_entries


def test_the_panel_sets_and_clears_an_apps_metrics_label(panel, store, app_key, admin_user):
    assert 'id="metrics"' in panel.get(f"/apps/{app_key}").get_data(as_text=True)
    response = panel.post(f"/apps/{app_key}/metrics-label", {"metrics_label": "  game-eu  "})
    assert response.status_code == 302 and response.headers["Location"].endswith("#metrics")
    assert store.get_app(app_key).metrics_label == "game-eu"
    assert "app.metrics_label" in [e["action"] for e in audit_entries(store, admin_user)]
    panel.post(f"/apps/{app_key}/metrics-label", {"metrics_label": ""})
    assert store.get_app(app_key).metrics_label == ""


def test_the_panel_refuses_a_label_that_is_not_a_name(panel, store, app_key):
    response = panel.post(f"/apps/{app_key}/metrics-label", {"metrics_label": 'x"} evil{'})
    assert response.status_code == 400
    assert store.get_app(app_key).metrics_label == ""


def test_the_cli_sets_an_apps_metrics_label(redis_server, store, app_key):
    label = f"label-{uuid.uuid4().hex[:6]}"
    result = cli("apps", "metrics-label", app_key, label, redis_url=redis_server.url)
    assert result.returncode == 0, result.stderr
    assert f"metrics_label = {label}" in result.stdout
    assert store.get_app(app_key).metrics_label == label
    refused = cli("apps", "metrics-label", app_key, "not a name", redis_url=redis_server.url)
    assert refused.returncode != 0 and store.get_app(app_key).metrics_label == label
    assert cli("apps", "metrics-label", app_key, redis_url=redis_server.url).returncode == 0
    assert store.get_app(app_key).metrics_label == ""


def test_apps_yaml_carries_the_metrics_label(store, app_key):
    app = store.update_app(app_key, lambda a: type(a)(a.key, a.roles, a.settings, metrics_label="tenant-7"))
    text = dump_apps_yaml([app])
    assert "metrics_label: tenant-7" in text
    assert read_apps_yaml(text).apps[0].metrics_label == "tenant-7"
