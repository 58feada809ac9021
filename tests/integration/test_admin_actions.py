"""PROTOCOL §5: admin/get_connections and admin/close_connection, scoped to the caller's app."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import OTHER_APP


def test_get_connections_lists_the_apps_connections(connect):
    admin = connect("admin")
    other = connect("pubsub")
    ids = admin.request("admin/get_connections")["body"]["connections"]
    assert admin.connection_id in ids and other.connection_id in ids


def test_get_connections_does_not_show_other_apps(connect):
    admin = connect("admin")
    stranger = connect("pubsub", app=OTHER_APP)
    assert stranger.connection_id not in admin.request("admin/get_connections")["body"]["connections"]


def test_admin_app_sees_every_app(broker, connect, store):
    from app.client import CobraClient

    secret = store.get_app("_admin").roles["admin"].secret
    stranger = connect("pubsub", app=OTHER_APP)
    with CobraClient(broker.endpoint, "_admin", "admin", secret) as admin:
        assert stranger.connection_id in admin.request("admin/get_connections")["body"]["connections"]


def test_close_connection_closes_the_target_with_1000_and_replies(connect):
    admin = connect("admin")
    victim = connect("pubsub")
    assert admin.request("admin/close_connection", {"connection_id": victim.connection_id})["body"] == {}
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            victim.receive(timeout=5)
    assert closed.value.rcvd.code == 1000


def test_close_connection_without_id_is_an_error(connect):
    reply = connect("admin").request("admin/close_connection", {}, check=False)
    assert reply["body"] == {"error": "Missing connection id", "code": "unknown_connection"}


def test_close_unknown_connection_is_an_error(connect):
    reply = connect("admin").request("admin/close_connection", {"connection_id": "ffffffffffff"}, check=False)
    assert reply["body"] == {"error": "Cannot find connection id", "code": "unknown_connection"}


def test_an_app_cannot_close_another_apps_connection(connect):
    stranger = connect("pubsub", app=OTHER_APP)
    reply = connect("admin").request(
        "admin/close_connection", {"connection_id": stranger.connection_id}, check=False
    )
    assert reply["body"]["code"] == "unknown_connection"
    assert stranger.publish("still-here", 1)["channels"] == ["still-here"]
