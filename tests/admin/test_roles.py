"""Roles: add with a generated secret, edit, reveal, rotate with a grace period, revoke. The broker-facing
rules (rotation grace, revoked roles and deleted apps losing their sessions) are checked against a real
broker process."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.client import CobraClient, CobraError
from tests.support.processes import wait_until

from .conftest import audit_entries


def reveal(panel, app_key: str, role: str) -> dict:
    response = panel.client.post(
        f"/admin/apps/{app_key}/roles/{role}/secret",
        headers={"X-CSRFToken": panel.csrf_token(), "Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def authenticates(broker, app_key: str, role: str, secret: str) -> bool:
    try:
        client = CobraClient(broker.endpoint, app_key, timeout=5)
    except InvalidStatus:  # app not known to the broker (yet, or any more)
        return False
    try:
        client.authenticate(role, secret)
        return True
    except CobraError as exc:
        assert exc.body.get("error") == "authentication_failed"
        return False
    except ConnectionClosed:
        return False
    finally:
        client.close()  # a failed handshake must not leave the connection open


def test_adding_a_role_generates_a_strong_secret(panel, store, app_key, admin_user):
    response = panel.post(
        f"/apps/{app_key}/roles/",
        {"name": "reader", "permissions": ["subscribe", "read"], "channels": "sensors.*, alerts"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/apps/{app_key}#role-reader")
    role = store.get_app(app_key).roles["reader"]
    assert role.permissions == ("subscribe", "read")
    assert role.channels == ("sensors.*", "alerts")
    assert len(role.secret) == 32 and role.secret.isalnum()
    assert reveal(panel, app_key, "reader")["secret"] == role.secret
    entries = audit_entries(store, admin_user)
    created = next(e for e in entries if e["action"] == "role.create")
    assert created["target"] == "reader" and created["app"] == app_key
    assert any(e["action"] == "role.secret.reveal" for e in entries)
    assert not any(role.secret in str(e) for e in entries)


def test_an_empty_channel_list_means_every_channel(panel, store, app_key):
    panel.post(f"/apps/{app_key}/roles/", {"name": "all", "permissions": ["publish"], "channels": ""})
    assert store.get_app(app_key).roles["all"].channels == ("*",)


def test_role_form_errors(panel, store, app_key):
    response = panel.post(f"/apps/{app_key}/roles/", {"name": "bad name", "permissions": ["publish"]})
    assert response.status_code == 400
    assert "role name must be 1-64 characters" in response.get_data(as_text=True)
    response = panel.post(f"/apps/{app_key}/roles/", {"name": "x", "permissions": ["fly"]})
    assert response.status_code == 400
    assert "not a valid choice" in response.get_data(as_text=True)
    response = panel.post(f"/apps/{app_key}/roles/", {"name": "x", "channels": "has space"})
    assert response.status_code == 400
    assert "Not a channel pattern" in response.get_data(as_text=True)
    assert set(store.get_app(app_key).roles) == {"pubsub"}


def test_an_existing_role_is_not_replaced(panel, store, app_key):
    before = store.get_app(app_key).roles["pubsub"]
    response = panel.post(f"/apps/{app_key}/roles/", {"name": "pubsub", "permissions": ["read"]})
    assert response.status_code == 400
    assert "already has a role pubsub" in response.get_data(as_text=True)
    assert store.get_app(app_key).roles["pubsub"] == before


def test_editing_permissions_and_channels_keeps_the_secret(panel, store, app_key, admin_user):
    page = panel.get(f"/apps/{app_key}/roles/pubsub/edit")
    assert page.status_code == 200
    response = panel.post(
        f"/apps/{app_key}/roles/pubsub/edit", {"permissions": ["publish"], "channels": "a.*\nb"}
    )
    assert response.status_code == 302
    role = store.get_app(app_key).roles["pubsub"]
    assert role.permissions == ("publish",)
    assert role.channels == ("a.*", "b")
    assert role.secret == "s" * 32
    assert any(e["action"] == "role.update" for e in audit_entries(store, admin_user))


def test_an_unknown_role_is_a_404(panel, app_key):
    assert panel.get(f"/apps/{app_key}/roles/nope/edit").status_code == 404
    assert panel.post(f"/apps/{app_key}/roles/nope/rotate", {"grace_seconds": "0"}).status_code == 404


def test_rotating_keeps_the_previous_secret_for_the_grace_period(panel, store, app_key, admin_user):
    before = time.time()
    response = panel.post(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": "600"})
    assert response.status_code == 302
    role = store.get_app(app_key).roles["pubsub"]
    assert role.secret != "s" * 32 and len(role.secret) == 32
    assert role.previous_secret == "s" * 32
    assert before + 600 <= role.previous_secret_expires_at <= time.time() + 600
    shown = reveal(panel, app_key, "pubsub")
    assert shown["secret"] == role.secret and shown["previous_secret"] == "s" * 32
    html = panel.get(f"/apps/{app_key}").get_data(as_text=True)
    assert "Previous secret still accepted until" in html
    entry = next(e for e in audit_entries(store, admin_user) if e["action"] == "role.rotate")
    assert entry["details"] == "grace_seconds=600"
    assert role.secret not in str(entry) and "s" * 32 not in str(entry)


def test_rotating_without_grace_drops_the_previous_secret(panel, store, app_key):
    panel.post(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": "0"})
    role = store.get_app(app_key).roles["pubsub"]
    assert role.previous_secret is None
    assert role.secrets_valid_at(time.time()) == (role.secret,)


@pytest.mark.parametrize("grace", ["", "-5", "soon", str(31 * 86400)])
def test_an_invalid_grace_period_changes_nothing(panel, store, app_key, grace):
    response = panel.post(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": grace})
    assert response.status_code == 400
    assert "not rotated" in response.get_data(as_text=True)
    assert store.get_app(app_key).roles["pubsub"].secret == "s" * 32


def test_revoking_needs_the_name_typed(panel, store, app_key, admin_user):
    assert "Type the role name" in panel.get(f"/apps/{app_key}/roles/pubsub/revoke").get_data(as_text=True)
    assert panel.post(f"/apps/{app_key}/roles/pubsub/revoke", {"confirm": "nope"}).status_code == 400
    assert "pubsub" in store.get_app(app_key).roles
    assert panel.post(f"/apps/{app_key}/roles/pubsub/revoke", {"confirm": "pubsub"}).status_code == 302
    assert store.get_app(app_key).roles == {}
    assert any(e["action"] == "role.revoke" for e in audit_entries(store, admin_user))


# ---------------------------------------------------------------- against a running broker
def test_old_and_new_secrets_work_during_the_grace_period_then_only_the_new(panel, store, broker, app_key):
    old = "s" * 32
    wait_until(lambda: authenticates(broker, app_key, "pubsub", old), message="the broker knows the app")
    # Grace long enough that a loaded machine still sees both before it ends; the outcome, not the
    # time, is what is checked.
    panel.post(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": "8"})
    new = reveal(panel, app_key, "pubsub")["secret"]
    wait_until(lambda: authenticates(broker, app_key, "pubsub", new), message="the new secret works")
    assert authenticates(broker, app_key, "pubsub", old)
    wait_until(
        lambda: not authenticates(broker, app_key, "pubsub", old),
        timeout=30,
        interval=0.5,
        message="the old secret expires",
    )
    assert authenticates(broker, app_key, "pubsub", new)


def test_revoking_a_role_closes_its_sessions(panel, broker, app_key, store):
    wait_until(lambda: authenticates(broker, app_key, "pubsub", "s" * 32), message="app known")
    client = CobraClient(broker.endpoint, app_key, "pubsub", "s" * 32)
    panel.post(f"/apps/{app_key}/roles/pubsub/revoke", {"confirm": "pubsub"})
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.receive(timeout=15)
    assert closed.value.rcvd.code == 1008


def test_deleting_an_app_closes_its_connections(panel, broker, app_key):
    wait_until(lambda: authenticates(broker, app_key, "pubsub", "s" * 32), message="app known")
    client = CobraClient(broker.endpoint, app_key, "pubsub", "s" * 32)
    panel.post(f"/apps/{app_key}/delete", {"confirm": app_key})
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.receive(timeout=15)
    assert closed.value.rcvd.code == 1008
    wait_until(lambda: not authenticates(broker, app_key, "pubsub", "s" * 32), message="app refused")
