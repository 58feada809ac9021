"""Changes made in the config store reach running brokers without a restart."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.client import CobraClient
from app.models import App, Role
from tests.support.processes import wait_until


@pytest.fixture
def fresh_app(store):
    key = f"live-{uuid.uuid4().hex[:8]}"
    app = App(
        key=key, roles={"r": Role(name="r", secret="s" * 32), "other": Role(name="other", secret="o" * 32)}
    )
    yield app
    store.delete_app(key)


def can_connect(broker, app: App, role: str = "r") -> bool:
    try:
        with CobraClient(broker.endpoint, app.key, role, app.roles[role].secret, timeout=2):
            return True
    except InvalidStatus:
        return False


def test_a_new_app_can_connect_without_a_restart(broker, store, fresh_app):
    assert not can_connect(broker, fresh_app)
    store.put_app(fresh_app)
    wait_until(lambda: can_connect(broker, fresh_app), message="new app accepted")


def test_a_removed_role_loses_its_live_sessions(broker, store, fresh_app):
    store.put_app(fresh_app)
    wait_until(lambda: can_connect(broker, fresh_app), message="app known")
    client = CobraClient(broker.endpoint, fresh_app.key, "r", "s" * 32)
    survivor = CobraClient(broker.endpoint, fresh_app.key, "other", "o" * 32)
    store.update_app(fresh_app.key, lambda app: replace(app, roles={"other": app.roles["other"]}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.receive(timeout=10)
    assert closed.value.rcvd.code == 1008
    assert survivor.publish("c", 1)["channels"] == ["c"]
    survivor.close()


def test_a_deleted_app_loses_its_connections(broker, store, fresh_app):
    store.put_app(fresh_app)
    wait_until(lambda: can_connect(broker, fresh_app), message="app known")
    client = CobraClient(broker.endpoint, fresh_app.key, "r", "s" * 32)
    store.delete_app(fresh_app.key)
    with pytest.raises(ConnectionClosed):
        while True:
            client.receive(timeout=10)


def test_permission_changes_apply_to_live_sessions(broker, store, fresh_app):
    store.put_app(fresh_app)
    wait_until(lambda: can_connect(broker, fresh_app), message="app known")
    client = CobraClient(broker.endpoint, fresh_app.key, "r", "s" * 32)
    assert client.publish("c", 1)["channels"] == ["c"]
    store.update_app(
        fresh_app.key,
        lambda app: replace(
            app, roles={**app.roles, "r": replace(app.roles["r"], permissions=("subscribe",))}
        ),
    )

    def publish_denied() -> bool:
        reply = client.request("rtm/publish", {"channel": "c", "message": 1}, check=False)
        return reply["body"].get("code") == "permission_denied"

    wait_until(publish_denied, message="publish permission withdrawn")
    client.close()
