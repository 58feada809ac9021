"""PROTOCOL §4: each action needs its permission; channel patterns restrict roles; apps are isolated."""

from __future__ import annotations

import pytest

from tests.conftest import OTHER_APP


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("rtm/subscribe", {"channel": "c"}),
        ("rtm/read", {"channel": "c"}),
        ("rtm/write", {"channel": "c", "message": 1}),
        ("rtm/delete", {"channel": "c"}),
        ("admin/get_connections", {}),
    ],
)
def test_action_without_its_permission_is_denied(connect, action, body):
    client = connect("publisher")
    reply = client.request(action, body, check=False)
    assert reply["action"] == f"{action}/error"
    assert reply["body"]["error"] == f'action "{action}": permission denied'
    assert reply["body"]["code"] == "permission_denied"


def test_publish_needs_publish_permission(connect):
    reply = connect("subscriber").request("rtm/publish", {"channel": "c", "message": 1}, check=False)
    assert reply["body"]["code"] == "permission_denied"


def test_role_with_permission_may_act(connect):
    assert connect("publisher").publish("c", {"ok": True})["channels"] == ["c"]


def test_channel_patterns_admit_matching_channels(connect):
    client = connect("limited")
    assert client.publish("allowed-1", 1)["channels"] == ["allowed-1"]
    assert client.publish("exact", 1)["channels"] == ["exact"]


def test_channel_patterns_refuse_other_channels(connect):
    client = connect("limited")
    reply = client.request("rtm/publish", {"channel": "forbidden", "message": 1}, check=False)
    assert reply["body"]["code"] == "permission_denied"
    reply = client.request("rtm/subscribe", {"channel": "exactly-not"}, check=False)
    assert reply["body"]["code"] == "permission_denied"


def test_apps_do_not_see_each_others_messages(connect, channel):
    listener = connect("pubsub", app=OTHER_APP)
    listener.subscribe(channel)
    connect("pubsub").publish(channel, {"from": "testapp"})
    witness = connect("pubsub", app=OTHER_APP)
    witness.publish(channel, {"from": "otherapp"})
    push = listener.next_push()
    assert push["body"]["messages"] == [{"from": "otherapp"}]
