"""No secret or password ever reaches a log line or the audit log, whatever the panel does with it."""

from __future__ import annotations

import logging

import pytest

from .conftest import PASSWORD, unique


@pytest.fixture
def every_log_line(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def test_a_full_session_leaves_no_secret_behind(every_log_line, panel, store, app_key, admin_user, broker):
    seen_secrets = {"s" * 32, PASSWORD}
    panel.login(admin_user, "a wrong password attempt")
    panel.post(f"/apps/{app_key}/roles/", {"name": "extra", "permissions": ["publish"]})
    panel.post(f"/apps/{app_key}/roles/extra/rotate", {"grace_seconds": "60"})
    role = store.get_app(app_key).roles["extra"]
    seen_secrets |= {role.secret, role.previous_secret, "a wrong password attempt"}
    panel.client.post(
        f"/admin/apps/{app_key}/roles/extra/secret", headers={"X-CSRFToken": panel.csrf_token()}
    )
    panel.post("/config/export")
    imported = f"apps:\n  {app_key}-imp:\n    roles:\n      r: {{secret: imported-secret-xyz-123}}\n"
    assert panel.post("/config/import", {"text": imported}).status_code == 200
    assert store.get_app(f"{app_key}-imp") is not None
    seen_secrets.add("imported-secret-xyz-123")
    other = unique("u")
    panel.post("/users/", {"name": other, "password": "other user pw 1", "confirm": "other user pw 1"})
    panel.post(f"/users/{other}/password", {"password": "other user pw 2"})
    seen_secrets |= {"other user pw 1", "other user pw 2"}
    try:
        audit = str(store.audit_entries(500))
        for secret in seen_secrets:
            assert secret not in every_log_line.text
            assert secret not in audit
        assert all(secret not in broker.output() for secret in seen_secrets - {"s" * 32})
    finally:
        store.delete_app(f"{app_key}-imp")
        store.delete_admin_user(other)
