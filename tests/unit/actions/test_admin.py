"""``admin/get_connections`` and ``admin/close_connection``: an app sees its own connections only, the
``_admin`` app sees them all."""

from __future__ import annotations

from app.protocol import ErrorCode
from app.websocket import CLOSE_NORMAL

from .support import ADMIN_APP, APP, OTHER_APP, Harness, make_app, role


def setup():
    harness = Harness(make_app(APP), make_app(OTHER_APP), make_app(ADMIN_APP))
    clients = {}
    for name, app_key in (("admin", APP), ("peer", APP), ("other", OTHER_APP), ("root", ADMIN_APP)):
        clients[name] = harness.open(app_key)
        clients[name].authenticate()
    return harness, clients


def test_get_connections_lists_the_connections_of_the_own_app():
    _, clients = setup()
    reply = clients["admin"].reply("admin/get_connections")
    assert reply["body"]["connections"] == sorted([clients["admin"].session.id, clients["peer"].session.id])


def test_the_admin_app_sees_every_connection():
    _, clients = setup()
    reply = clients["root"].reply("admin/get_connections")
    assert reply["body"]["connections"] == sorted(c.session.id for c in clients.values())


def test_close_connection_closes_another_connection_of_the_app():
    _, clients = setup()
    reply = clients["admin"].reply("admin/close_connection", connection_id=clients["peer"].session.id)
    assert reply["action"] == "admin/close_connection/ok"
    assert clients["peer"].transport.close_code == CLOSE_NORMAL


def test_another_apps_connection_cannot_be_found_unless_from_the_admin_app():
    _, clients = setup()
    target = clients["other"].session.id
    reply = clients["admin"].reply("admin/close_connection", connection_id=target)
    assert reply["body"]["code"] == ErrorCode.UNKNOWN_CONNECTION
    assert clients["other"].transport.close_code is None
    assert clients["root"].reply("admin/close_connection", connection_id=target)["action"].endswith("/ok")
    assert clients["other"].transport.close_code == CLOSE_NORMAL


def test_close_connection_of_an_unknown_or_missing_id_is_refused():
    _, clients = setup()
    for body in ({"connection_id": "nope"}, {}, {"connection_id": 3}):
        reply = clients["admin"].reply("admin/close_connection", body)
        assert reply["body"]["code"] == ErrorCode.UNKNOWN_CONNECTION


def test_closing_oneself_sends_the_reply_before_the_close():
    _, clients = setup()
    me = clients["admin"]
    reply = me.reply("admin/close_connection", connection_id=me.session.id)
    assert reply["action"] == "admin/close_connection/ok" and me.transport.close_code == CLOSE_NORMAL


def test_admin_actions_need_the_admin_permission():
    harness = Harness(make_app(roles=(role(permissions=("publish",)),)))
    client = harness.open()
    client.authenticate()
    assert client.reply("admin/get_connections")["body"]["code"] == ErrorCode.PERMISSION_DENIED
