"""The session without a transport: the publish rate bucket, auth state, the live permissions view."""

from __future__ import annotations

from app.models import App, ConfigSnapshot, Role
from app.services import ConfigView
from app.session import Session, TokenBucket
from app.settings import Settings
from tests.unit.actions.support import Clock


def test_a_fresh_bucket_allows_a_burst_of_rate_times_burst_seconds():
    bucket = TokenBucket(Clock())
    assert [bucket.take(5.0, 2.0) for _ in range(11)] == [True] * 10 + [False]


def test_a_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(clock)
    while bucket.take(4.0, 1.0):
        pass
    clock.advance(0.5)  # two tokens at 4/s
    assert [bucket.take(4.0, 1.0) for _ in range(3)] == [True, True, False]


def test_a_refused_take_costs_nothing():
    clock = Clock()
    bucket = TokenBucket(clock)
    while bucket.take(1.0, 1.0):
        pass
    for _ in range(5):
        assert not bucket.take(1.0, 1.0)
    clock.advance(1.0)
    assert bucket.take(1.0, 1.0)


def test_a_long_idle_bucket_holds_no_more_than_its_capacity():
    clock = Clock()
    bucket = TokenBucket(clock)
    bucket.take(2.0, 1.0)
    clock.advance(3600)
    assert [bucket.take(2.0, 1.0) for _ in range(3)] == [True, True, False]


def test_a_lowered_rate_caps_the_bucket_at_once():
    clock = Clock()
    bucket = TokenBucket(clock)
    assert bucket.take(100.0, 1.0)  # 99 left at the old rate
    assert [bucket.take(1.0, 2.0) for _ in range(3)] == [True, True, False]


def _view(*roles: Role) -> ConfigView:
    return ConfigView(Settings(), ConfigSnapshot(1, {"app": App("app", {r.name: r for r in roles})}), "n")


def test_the_role_is_looked_up_as_currently_configured():
    view = _view(Role("writer", "secret", permissions=("publish",)))
    session = Session("c1", "app", "10.0.0.1", view)
    assert session.role is None  # not authenticated yet
    session.authenticated("writer")
    assert session.role is not None and session.role.permissions == ("publish",)
    view.update(ConfigSnapshot(2, {"app": App("app", {"writer": Role("writer", "secret", ("read",))})}))
    assert session.role.permissions == ("read",)  # an admin's change applies to the live session
    view.update(ConfigSnapshot(3, {"app": App("app", {})}))
    assert session.role is None  # revoked
    view.update(ConfigSnapshot(4, {}))
    assert session.app is None and session.role is None  # app deleted


def test_a_handshake_unauthenticates_and_its_nonce_answers_one_attempt():
    session = Session("c1", "app", "10.0.0.1", _view(Role("r", "secret")))
    session.authenticated("r")
    session.auth_failures = 2
    session.begin_handshake("other", "nonce-1")
    assert session.role_name is None and session.role is None
    assert session.take_nonce() == ("nonce-1", "other")
    assert session.take_nonce() == (None, "other")
    session.authenticated("r")
    assert session.auth_failures == 0


def test_taking_the_subscriptions_empties_the_session():
    session = Session("c1", "app", "10.0.0.1", _view())
    session.subscriptions["a"] = session.subscriptions["b"] = object()  # type: ignore[assignment]
    assert len(session.take_subscriptions()) == 2 and session.subscriptions == {}


def test_info_is_the_cluster_registry_entry():
    session = Session("c1", "app", "10.0.0.1", _view(Role("r", "secret")), connected_at=123.0)
    session.authenticated("r")
    assert session.info() == {
        "id": "c1",
        "app": "app",
        "role": "r",
        "remote_addr": "10.0.0.1",
        "connected_at": 123.0,
        "subscriptions": 0,
    }
