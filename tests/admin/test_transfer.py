"""Import and export of the Cobra apps.yaml from the panel."""

from __future__ import annotations

import html
import io

import yaml

from app.config_store import parse_apps_yaml

from .conftest import audit_entries, unique


def test_export_downloads_every_app_with_its_secrets(panel, store, app_key, admin_user):
    assert panel.get("/config/").status_code == 200
    assert panel.get("/config/export").status_code == 405  # a POST: the file holds every secret
    response = panel.post("/config/export")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="apps.yaml"'
    document = yaml.safe_load(response.get_data(as_text=True))
    assert document["apps"][app_key]["roles"]["pubsub"]["secret"] == "s" * 32
    entry = next(e for e in audit_entries(store, admin_user) if e["action"] == "config.export")
    assert "s" * 32 not in str(entry)


def apps_yaml(key: str, secret: str = "imported-secret-0123456789") -> str:
    return yaml.safe_dump(
        {"apps": {key: {"roles": {"pub": {"secret": secret, "permissions": ["publish", "subscribe"]}}}}}
    )


def test_importing_a_file(panel, store, admin_user):
    key = unique("imp")
    try:
        response = panel.post(
            "/config/import",
            {"file": (io.BytesIO(apps_yaml(key).encode()), "apps.yaml")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert "Imported." in page and key in page
        role = store.get_app(key).roles["pub"]
        assert role.secret == "imported-secret-0123456789"
        assert role.permissions == ("publish", "subscribe")
        entry = next(e for e in audit_entries(store, admin_user) if e["action"] == "config.import")
        assert key in entry["details"] and "imported-secret" not in str(entry)
    finally:
        store.delete_app(key)


def test_importing_pasted_text_replaces_same_named_apps(panel, store, app_key):
    response = panel.post("/config/import", {"text": apps_yaml(app_key, "replacement-secret-12345")})
    assert response.status_code == 200
    assert "Replaced apps: <code>" + app_key in response.get_data(as_text=True)
    assert set(store.get_app(app_key).roles) == {"pub"}


def test_a_dry_run_changes_nothing(panel, store):
    key = unique("dry")
    response = panel.post("/config/import", {"text": apps_yaml(key), "dry_run": "y"})
    assert response.status_code == 200
    assert "nothing changed" in response.get_data(as_text=True)
    assert store.get_app(key) is None


def test_invalid_files_are_refused_with_the_reason(panel, store):
    cases = {
        "apps: [1, 2": "not valid YAML",
        "roles: {}": "expected a mapping with an 'apps' mapping",
        "apps: {'bad key!': {roles: {}}}": "app key must be 1-64 characters",
        "apps: {ok: {roles: {r: {secret: x, permissions: [fly]}}}}": "unknown permissions: fly",
    }
    for text, reason in cases.items():
        response = panel.post("/config/import", {"text": text})
        assert response.status_code == 400, text
        assert reason in html.unescape(response.get_data(as_text=True)), text
    assert store.get_app("ok") is None


def test_an_empty_import_is_an_error(panel):
    response = panel.post("/config/import", {})
    assert response.status_code == 400
    assert "Choose a file or paste its content." in response.get_data(as_text=True)


def test_a_binary_file_is_refused(panel):
    response = panel.post(
        "/config/import",
        {"file": (io.BytesIO(b"\xff\xfe\x00"), "apps.yaml")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.get_data(as_text=True)


def test_an_export_imports_back_unchanged(panel, store, app_key):
    exported = panel.post("/config/export").get_data(as_text=True)
    before = {app.key: app for app in parse_apps_yaml(exported)}[app_key]
    panel.post("/config/import", {"text": exported})
    assert store.get_app(app_key).roles == before.roles
