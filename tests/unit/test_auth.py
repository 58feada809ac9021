"""PROTOCOL §3/§4 without a socket: the challenge hash, rotation grace, permissions, channel patterns."""

from __future__ import annotations

import time

import pytest

from app import auth
from app.models import Role


def test_hmac_md5_vector_1():
    assert auth.compute_hash("secret-key", "nonce") == "G12A8Dt0RdjHNx8P0lci9w=="


def test_hmac_md5_vector_2():
    secret, nonce = "e3Ae82633cd59b22daea958bbb82ac92", "MTc3MDAwMDUyMjExNzk1NDA0NDk="
    assert auth.compute_hash(secret, nonce) == "cxalcUZqHQU/gB2a+Ko9gA=="


def test_hash_is_24_characters():
    assert len(auth.compute_hash("s", "n")) == 24


def test_nonce_is_an_ascii_string_and_never_repeats():
    nonces = {auth.new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(isinstance(n, str) and n.isascii() for n in nonces)


def test_connection_id_is_12_hex_characters():
    cid = auth.new_connection_id()
    assert len(cid) == 12 and int(cid, 16) >= 0


def role(**kwargs) -> Role:
    return Role(name="r", secret="current-secret", **kwargs)


def test_challenge_accepts_the_current_secret():
    assert auth.verify_challenge(role(), "n", auth.compute_hash("current-secret", "n"), time.time())


def test_challenge_refuses_another_secret():
    assert not auth.verify_challenge(role(), "n", auth.compute_hash("other", "n"), time.time())


def test_challenge_refuses_a_hash_for_another_nonce():
    assert not auth.verify_challenge(role(), "n1", auth.compute_hash("current-secret", "n2"), time.time())


@pytest.mark.parametrize("candidate", [None, 42, ["x"], {"h": 1}, "", "é" * 24])
def test_challenge_refuses_non_hashes(candidate):
    assert not auth.verify_challenge(role(), "n", candidate, time.time())


def test_previous_secret_authenticates_during_the_grace_period():
    now = time.time()
    rotated = role().rotated("new-secret", grace_seconds=60, now=now)
    assert auth.verify_challenge(rotated, "n", auth.compute_hash("current-secret", "n"), now + 30)
    assert auth.verify_challenge(rotated, "n", auth.compute_hash("new-secret", "n"), now + 30)


def test_previous_secret_stops_authenticating_after_the_grace_period():
    now = time.time()
    rotated = role().rotated("new-secret", grace_seconds=60, now=now)
    assert not auth.verify_challenge(rotated, "n", auth.compute_hash("current-secret", "n"), now + 61)
    assert auth.verify_challenge(rotated, "n", auth.compute_hash("new-secret", "n"), now + 61)


def test_rotation_without_grace_forgets_the_previous_secret():
    rotated = role().rotated("new-secret", grace_seconds=0, now=time.time())
    assert rotated.previous_secret is None


@pytest.mark.parametrize(
    ("action", "permission"),
    [
        ("rtm/publish", "publish"),
        ("rtm/subscribe", "subscribe"),
        ("rtm/unsubscribe", "unsubscribe"),
        ("rtm/read", "read"),
        ("rtm/write", "write"),
        ("rtm/delete", "delete"),
        ("admin/get_connections", "admin"),
        ("admin/close_connection", "admin"),
    ],
)
def test_each_action_needs_its_permission(action, permission):
    assert auth.required_permission(action) == permission


def test_default_channel_pattern_admits_everything():
    assert auth.channel_allowed(role(), "anything/at:all")


def test_channel_patterns_are_globs():
    limited = role(channels=("game-*", "exact", "room-?"))
    assert auth.channel_allowed(limited, "game-fps")
    assert auth.channel_allowed(limited, "exact")
    assert auth.channel_allowed(limited, "room-1")
    assert not auth.channel_allowed(limited, "room-12")
    assert not auth.channel_allowed(limited, "exactly")
    assert not auth.channel_allowed(limited, "other")


def test_channel_patterns_are_case_sensitive():
    assert not auth.channel_allowed(role(channels=("Game-*",)), "game-1")
