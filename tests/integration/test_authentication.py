"""PROTOCOL §3: handshake, challenge, failures, and what an unauthenticated connection may do."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from app.auth import compute_hash
from tests.conftest import TEST_APP


def handshake(client, role="pubsub", pdu_id=0):
    return client.request("auth/handshake", {"method": "role_secret", "data": {"role": role}}, check=False)


def authenticate(client, hash_value, pdu_id=None):
    return client.request(
        "auth/authenticate", {"method": "role_secret", "credentials": {"hash": hash_value}}, check=False
    )


def test_handshake_returns_string_nonce_version_connection_id_and_node(connect):
    client = connect(role=None)
    reply = handshake(client)
    assert reply["action"] == "auth/handshake/ok"
    data = reply["body"]["data"]
    for field in ("nonce", "version", "connection_id", "node"):
        assert isinstance(data[field], str) and data[field]
    assert len(data["connection_id"]) == 12


def test_nonces_differ_between_handshakes(connect):
    client = connect(role=None)
    assert handshake(client)["body"]["data"]["nonce"] != handshake(client)["body"]["data"]["nonce"]


def test_correct_hash_authenticates(connect, test_apps):
    client = connect(role=None)
    nonce = handshake(client)["body"]["data"]["nonce"]
    reply = authenticate(client, compute_hash(test_apps[TEST_APP].roles["pubsub"].secret, nonce))
    assert reply["action"] == "auth/authenticate/ok"
    assert reply["body"] == {}


def test_unknown_auth_method_is_refused(connect):
    client = connect(role=None)
    reply = client.request("auth/handshake", {"method": "password", "data": {"role": "x"}}, check=False)
    assert reply["action"] == "auth/handshake/error"
    assert reply["body"]["error"] == "invalid auth method: password"
    assert reply["body"]["code"] == "invalid_auth_method"


def test_handshake_for_unknown_role_does_not_reveal_it(connect):
    client = connect(role=None)
    reply = handshake(client, role="no-such-role")
    assert reply["action"] == "auth/handshake/ok"


def test_unknown_role_fails_with_invalid_role(connect):
    client = connect(role=None)
    nonce = handshake(client, role="no-such-role")["body"]["data"]["nonce"]
    reply = authenticate(client, compute_hash("whatever", nonce))
    assert reply["action"] == "auth/authenticate/error"
    assert reply["body"]["error"] == "authentication_failed"
    assert reply["body"]["reason"] == "invalid_role"


def test_wrong_secret_fails_with_challenge_failed(connect):
    client = connect(role=None)
    nonce = handshake(client)["body"]["data"]["nonce"]
    reply = authenticate(client, compute_hash("wrong secret", nonce))
    assert reply["body"]["error"] == "authentication_failed"
    assert reply["body"]["reason"] == "challenge_failed"
    assert reply["body"]["code"] == "authentication_failed"


def test_a_nonce_answers_one_attempt_only(connect, test_apps):
    client = connect(role=None)
    nonce = handshake(client)["body"]["data"]["nonce"]
    good = compute_hash(test_apps[TEST_APP].roles["pubsub"].secret, nonce)
    authenticate(client, "AAAAAAAAAAAAAAAAAAAAAA==")
    assert authenticate(client, good)["body"]["reason"] == "challenge_failed"


def test_non_string_hash_fails_cleanly(connect):
    client = connect(role=None)
    handshake(client)
    reply = authenticate(client, {"not": "a string"})
    assert reply["body"]["reason"] == "challenge_failed"


def test_repeated_failures_close_the_connection_with_1008(connect):
    client = connect(role=None)
    for _ in range(3):
        nonce = handshake(client)["body"]["data"]["nonce"]
        client.send(
            {
                "action": "auth/authenticate",
                "id": 9,
                "body": {"method": "role_secret", "credentials": {"hash": compute_hash("bad", nonce)}},
            }
        )
        try:
            assert client.receive()["body"]["reason"] == "challenge_failed"
        except ConnectionClosed:
            break
    with pytest.raises(ConnectionClosed) as closed:
        client.receive(timeout=5)
    assert closed.value.rcvd.code == 1008


@pytest.mark.parametrize("action", ["rtm/publish", "rtm/subscribe", "rtm/read", "admin/get_connections"])
def test_actions_before_authentication_need_authentication(connect, action):
    client = connect(role=None)
    reply = client.request(action, {"channel": "c", "message": 1}, check=False)
    assert reply["action"] == f"{action}/error"
    assert reply["body"]["error"] == f'action "{action}" needs authentication'
    assert reply["body"]["code"] == "not_authenticated"


def test_new_handshake_resets_to_unauthenticated(connect):
    client = connect()
    assert client.publish("c", 1)["channels"] == ["c"]
    handshake(client)
    reply = client.request("rtm/publish", {"channel": "c", "message": 1}, check=False)
    assert reply["body"]["code"] == "not_authenticated"
