"""``auth/handshake`` and ``auth/authenticate`` (PROTOCOL §3) and the permission gate (§4)."""

from __future__ import annotations

from app import __version__
from app.protocol import ErrorCode
from app.websocket import CLOSE_POLICY_VIOLATION

from .support import NODE, SECRET, Harness, make_app, role


def test_handshake_answers_a_nonce_the_version_the_connection_id_and_the_node():
    client = Harness().open()
    reply = client.handshake()
    assert reply["action"] == "auth/handshake/ok"
    data = reply["body"]["data"]
    assert data["version"] == __version__ and data["node"] == NODE
    assert data["connection_id"] == client.session.id and isinstance(data["nonce"], str) and data["nonce"]


def test_handshake_needs_the_role_secret_method_and_a_role():
    client = Harness().open()
    reply = client.reply("auth/handshake", method="md5", data={"role": "client"})
    assert reply["body"]["code"] == ErrorCode.INVALID_AUTH_METHOD
    reply = client.reply("auth/handshake", method="role_secret", data={})
    assert reply["body"]["code"] == ErrorCode.BAD_SCHEMA


def test_authenticate_with_the_right_hash_authenticates_and_updates_the_registry():
    harness = Harness()
    client = harness.open()
    assert client.authenticate()["action"] == "auth/authenticate/ok"
    assert client.session.role_name == "client"
    assert harness.cluster.registry[client.session.id]["role"] == "client"


def test_authenticate_with_a_wrong_hash_fails_and_is_counted():
    harness = Harness()
    client = harness.open()
    reply = client.authenticate(secret="wrong")
    assert reply["action"] == "auth/authenticate/error"
    assert reply["body"]["code"] == ErrorCode.AUTHENTICATION_FAILED
    assert reply["body"]["reason"] == "challenge_failed"
    assert client.session.role_name is None and harness.services.stats.auth_failures == 1


def test_authenticate_as_an_unknown_role_or_without_handshake_fails_as_invalid_role():
    client = Harness().open()
    assert (
        client.reply("auth/authenticate", method="role_secret", credentials={"hash": "x"})["body"]["reason"]
        == "invalid_role"
    )
    assert client.authenticate("nobody")["body"]["reason"] == "invalid_role"


def test_a_nonce_answers_one_attempt_only():
    from app import auth

    client = Harness().open()
    nonce = client.handshake()["body"]["data"]["nonce"]
    credentials = {"hash": auth.compute_hash("wrong", nonce)}
    client.reply("auth/authenticate", method="role_secret", credentials=credentials)
    credentials = {"hash": auth.compute_hash(SECRET, nonce)}  # right, but the nonce is spent
    reply = client.reply("auth/authenticate", method="role_secret", credentials=credentials)
    assert reply["body"]["reason"] == "challenge_failed" and client.session.role_name is None


def test_too_many_failures_send_the_error_then_close_with_policy_violation():
    client = Harness(auth_max_attempts=2).open()
    client.authenticate(secret="wrong")
    assert client.transport.close_code is None
    # The second failure (the nonce of the first attempt is spent) reaches the limit.
    received = client.send("auth/authenticate", method="role_secret", credentials={"hash": "x"})
    assert [pdu["action"] for pdu in received] == ["auth/authenticate/error"]
    assert client.transport.close_code == CLOSE_POLICY_VIOLATION


def test_a_success_resets_the_failure_count():
    client = Harness(auth_max_attempts=2).open()
    client.authenticate(secret="wrong")
    client.authenticate()
    client.authenticate(secret="wrong")
    assert client.transport.close_code is None


def test_a_new_handshake_resets_the_connection_to_unauthenticated():
    harness = Harness()
    client = harness.open()
    client.authenticate()
    client.subscribe("ch")
    assert harness.engine.subscribers
    client.handshake()
    assert client.session.role_name is None and client.session.subscriptions == {}
    assert harness.engine.subscribers == {}  # its subscriptions ended in the engine too
    reply = client.publish("ch", 1)
    assert reply["body"]["code"] == ErrorCode.NOT_AUTHENTICATED


def test_actions_need_authentication():
    client = Harness().open()
    for action in ("rtm/publish", "rtm/subscribe", "rtm/read", "admin/get_connections"):
        assert client.reply(action, channel="ch")["body"]["code"] == ErrorCode.NOT_AUTHENTICATED


def test_an_action_needs_its_permission_as_currently_configured():
    harness = Harness(make_app(roles=(role(permissions=("subscribe",)),)))
    client = harness.open()
    client.authenticate()
    assert client.publish("ch", 1)["body"]["code"] == ErrorCode.PERMISSION_DENIED
    harness.reconfigure(make_app(roles=(role(permissions=("publish",)),)))
    assert client.publish("ch", 1)["action"] == "rtm/publish/ok"  # the admin's change applied at once
