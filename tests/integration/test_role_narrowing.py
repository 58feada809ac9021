"""Issue 14: narrowing a role (fewer permissions, fewer channel patterns) ends the live subscriptions it
no longer allows, on every broker process; the connections stay open."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from app.client import CobraClient
from app.models import App, Role
from tests.support.processes import can_authenticate, wait_until

SECRET = "narrow-secret-0123456789abcdefghij"
PUBLISHER_SECRET = "narrow-publisher-0123456789abcdefg"


@pytest.fixture
def narrowed_app(store):
    key = f"narrow-{uuid.uuid4().hex[:8]}"
    app = App(
        key=key,
        roles={
            "player": Role(
                name="player", secret=SECRET, permissions=("publish", "subscribe", "unsubscribe", "read")
            ),
            "backend": Role(name="backend", secret=PUBLISHER_SECRET),
        },
    )
    store.put_app(app)
    yield app
    store.delete_app(key)


def _data_or_error(client: CobraClient, subscription_id: str, timeout: float = 20.0) -> dict:
    """The next push of ``subscription_id`` (data or error), skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        push = client.next_push(timeout=max(0.1, deadline - time.monotonic()))
        if push["body"].get("subscription_id") == subscription_id:
            return push


def test_narrowing_a_role_ends_the_subscriptions_it_no_longer_allows_on_every_process(
    broker, broker_factory, store, narrowed_app
):
    second = broker_factory()
    key = narrowed_app.key
    for process in (broker, second):
        wait_until(lambda p=process: can_authenticate(p, key, "player", SECRET), message="app known")
    players = [CobraClient(process.endpoint, key, "player", SECRET) for process in (broker, second)]
    backend = CobraClient(broker.endpoint, key, "backend", PUBLISHER_SECRET)
    for player in players:
        player.subscribe("game.1")
        player.subscribe("chat")
    chat_position = backend.publish("chat", {"n": 1})["position"]
    backend.publish("game.1", {"n": 1})
    for player in players:
        assert _data_or_error(player, "chat")["body"]["messages"] == [{"n": 1}]
        assert _data_or_error(player, "game.1")["body"]["messages"] == [{"n": 1}]

    # Fewer channel patterns: "chat" leaves them.
    store.update_app(
        key,
        lambda app: replace(
            app, roles={**app.roles, "player": replace(app.roles["player"], channels=("game.*",))}
        ),
    )
    for player in players:
        error = _data_or_error(player, "chat")
        assert error["action"] == "rtm/subscription/error"
        assert error["body"]["code"] == "permission_denied"
        assert error["body"]["messages"] == [] and error["body"]["position"] == chat_position
    backend.publish("chat", {"n": 2})
    backend.publish("game.1", {"n": 2})
    for player in players:
        # Nothing more on "chat"; "game.1" goes on; the connection is open and answers.
        push = _data_or_error(player, "game.1")
        assert push["action"] == "rtm/subscription/data" and push["body"]["messages"] == [{"n": 2}]
        assert not [p for p in player.pushes if p["body"].get("subscription_id") == "chat"]
        reply = player.request("rtm/unsubscribe", {"subscription_id": "chat"}, check=False)
        assert reply["body"]["code"] == "not_subscribed"  # removed, not merely silenced
        assert player.publish("game.2", 1)["channels"] == ["game.2"]

    # Fewer permissions: no "subscribe" at all.
    store.update_app(
        key,
        lambda app: replace(
            app, roles={**app.roles, "player": replace(app.roles["player"], permissions=("publish",))}
        ),
    )
    for player in players:
        error = _data_or_error(player, "game.1")
        assert error["action"] == "rtm/subscription/error"
        assert error["body"]["code"] == "permission_denied" and error["body"]["messages"] == []
        assert error["body"]["position"]
        assert player.publish("game.1", 3)["channels"] == ["game.1"]  # still connected, still publishing
    for player in [*players, backend]:
        player.close()


def test_widening_or_unchanged_roles_keep_their_subscriptions(broker, store, narrowed_app):
    key = narrowed_app.key
    wait_until(lambda: can_authenticate(broker, key, "player", SECRET), message="app known")
    player = CobraClient(broker.endpoint, key, "player", SECRET)
    backend = CobraClient(broker.endpoint, key, "backend", PUBLISHER_SECRET)
    player.subscribe("chat")
    store.update_app(
        key,
        lambda app: replace(
            app, roles={**app.roles, "player": replace(app.roles["player"], channels=("chat", "x.*"))}
        ),
    )
    # Wait until the change reached the broker: a subscribe on "y" is refused from then on.
    wait_until(
        lambda: (
            player.request("rtm/subscribe", {"channel": "y"}, check=False)["body"].get("code")
            == "permission_denied"
        ),
        message="the change applied",
    )
    backend.publish("chat", {"n": 1})
    push = _data_or_error(player, "chat")
    assert push["action"] == "rtm/subscription/data" and push["body"]["messages"] == [{"n": 1}]
    player.close()
    backend.close()
