"""PROTOCOL §12 end to end: aggregated views over real sockets, shared by subscribers, on two brokers.

Windows are aligned to the wall clock, so a burst of publishes may straddle a window boundary on a loaded
machine: the tests add up COUNT/SUM/MIN/MAX over every window they receive (those combine exactly), rather
than assuming one window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from tests.conftest import TEST_APP
from tests.integration.test_cbor import CborClient
from tests.integration.test_cli_subscribers import client_flags, start_cli, stop

VIEW = (
    "SELECT device.model, COUNT(*) AS n, SUM(data.fps) AS total, MIN(data.fps) AS lo, MAX(data.fps) AS hi,"
    " AVG(data.fps) AS fps FROM `{channel}` WHERE data.fps > 0 GROUP BY device.model"
)
FRAMES = [("pixel", 60), ("pixel", 30), ("iphone", 60), ("pixel", 0), ("iphone", 15), ("galaxy", 30)] * 5


def publish_frames(client: Any, channel: str) -> str:
    position = ""
    for model, fps in FRAMES:
        position = client.publish(channel, {"device": {"model": model}, "data": {"fps": fps}})["position"]
    return position


def windows_until(client: Any, last_position: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The view's pushes until one covers ``last_position`` (the last message published)."""
    pushes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        push = client.next_push(max(0.1, deadline - time.monotonic()))
        assert push["action"] == "rtm/subscription/data", push
        pushes.append(push["body"])
        if push["body"]["position"] == last_position:
            return pushes


def totals(pushes: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    combined: dict[Any, dict[str, Any]] = defaultdict(lambda: {"n": 0, "total": 0, "lo": None, "hi": None})
    for body in pushes:
        models = [row["device.model"] for row in body["messages"]]
        assert models == sorted(models), "rows are ordered by group key"
        for row in body["messages"]:
            assert row["fps"] == row["total"] / row["n"]  # AVG is a float over the same numbers
            entry = combined[row["device.model"]]
            entry["n"] += row["n"]
            entry["total"] += row["total"]
            entry["lo"] = row["lo"] if entry["lo"] is None else min(entry["lo"], row["lo"])
            entry["hi"] = row["hi"] if entry["hi"] is None else max(entry["hi"], row["hi"])
    return dict(combined)


EXPECTED = {
    "galaxy": {"n": 5, "total": 150, "lo": 30, "hi": 30},
    "iphone": {"n": 10, "total": 375, "lo": 15, "hi": 60},
    "pixel": {"n": 10, "total": 450, "lo": 30, "hi": 60},
}


def test_subscribers_sharing_a_view_get_the_same_rows_per_window(connect, channel):
    subscribers = [connect() for _ in range(3)]
    for index, subscriber in enumerate(subscribers):
        reply = subscriber.subscribe(
            filter=VIEW.format(channel=channel), subscription_id=f"v{index}", period=1
        )
        assert reply["subscription_id"] == f"v{index}"
    last = publish_frames(connect(), channel)
    received = [windows_until(subscriber, last) for subscriber in subscribers]
    for pushes in received:
        for body in pushes:
            body.pop("subscription_id")
    assert received[0] == received[1] == received[2]
    assert totals(received[0]) == EXPECTED
    assert all(isinstance(body["messages"][0]["n"], int) for body in received[0])


def test_a_view_without_period_uses_one_second_windows(connect, channel):
    subscriber = connect()
    subscriber.subscribe(filter=f"SELECT COUNT(*) AS n FROM `{channel}`")
    publisher = connect()
    started = time.time()
    last = publisher.publish(channel, {"x": 1})["position"]
    (body,) = windows_until(subscriber, last)
    assert body["messages"] == [{"n": 1}]
    assert time.time() - started < 10  # generous: the point is that a window ended without a period


def test_two_brokers_give_the_same_rows(connect, channel, broker_factory):
    other = broker_factory()
    here, there = connect(), connect(target=other)
    for client in (here, there):
        client.subscribe(filter=VIEW.format(channel=channel), period=2)
    last = publish_frames(connect(), channel)
    mine, theirs = windows_until(here, last), windows_until(there, last)
    assert totals(mine) == totals(theirs) == EXPECTED
    if len(mine) == len(theirs) == 1:  # the usual case: one window on both sides, then it is identical
        assert mine[0]["messages"] == theirs[0]["messages"]


def test_view_with_position_or_history_aggregates_live_only_and_says_so(connect, channel):
    publisher = connect()
    publisher.publish(channel, {"v": 100})  # in history: must not be aggregated
    subscriber = connect()
    view = f"SELECT COUNT(*) AS n, SUM(v) AS s FROM `{channel}`"
    reply = subscriber.subscribe(filter=view, position="0-0", subscription_id="a")
    assert reply["aggregates_live_only"] is True
    reply = subscriber.subscribe(filter=view, history={"count": 10}, subscription_id="b")
    assert reply["aggregates_live_only"] is True
    plain = subscriber.subscribe(filter=view, subscription_id="c")
    assert "aggregates_live_only" not in plain
    last = publisher.publish(channel, {"v": 1})["position"]
    seen: dict[str, list[Any]] = defaultdict(list)
    deadline = time.monotonic() + 20
    while len(seen) < 3 or any(bodies[-1]["position"] != last for bodies in seen.values()):
        push = subscriber.next_push(max(0.1, deadline - time.monotonic()))
        seen[push["body"]["subscription_id"]].append(push["body"])
    for bodies in seen.values():
        assert [body["messages"] for body in bodies] == [[{"n": 1, "s": 1}]]


def test_misuse_of_aggregates_is_invalid_filter_with_a_position(connect, channel):
    client = connect()
    for sql in (
        f"SELECT device.model, COUNT(*) FROM `{channel}`",
        f"SELECT COUNT(*) FROM `{channel}` WHERE COUNT(x) > 1",
        f"SELECT SUM(MAX(x)) FROM `{channel}`",
        f"SELECT MEDIAN(x) FROM `{channel}`",
    ):
        reply = client.request("rtm/subscribe", {"filter": sql}, check=False)
        assert reply["action"] == "rtm/subscribe/error", reply
        assert reply["body"]["code"] == "invalid_filter"
        assert "at position" in reply["body"]["reason"]
    assert client.publish(channel, 1)["channels"] == [channel]  # the connection stays


def test_group_overflow_reports_dropped_groups(broker_factory, connect, channel):
    small = broker_factory(env={"COBRA_MAX_GROUPS": "2"})
    subscriber = connect(target=small)
    subscriber.subscribe(filter=f"SELECT k, COUNT(*) AS n FROM `{channel}` GROUP BY k", period=3)
    publisher = connect(target=small)
    last = ""
    for k in ["a", "b", "c", "a", "d"]:
        last = publisher.publish(channel, {"k": k})["position"]
    pushes = windows_until(subscriber, last)
    counted = sum(row["n"] for body in pushes for row in body["messages"])
    dropped = sum(body.get("dropped_groups", 0) for body in pushes)
    assert counted + dropped == 5 and dropped >= 2
    assert all(len(body["messages"]) <= 2 for body in pushes)


def test_cbor_client_gets_the_same_rows(broker, test_apps, connect, channel):
    cbor = CborClient(broker.endpoint)
    try:
        cbor.authenticate("pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        reply = cbor.request("rtm/subscribe", {"filter": VIEW.format(channel=channel), "period": 2})
        assert reply["action"] == "rtm/subscribe/ok", reply
        json_client = connect()
        json_client.subscribe(filter=VIEW.format(channel=channel), period=2)
        last = publish_frames(connect(), channel)
        bodies = []
        while not bodies or bodies[-1]["position"] != last:
            bodies.append(cbor.next_data(20)["body"])
        assert totals(bodies) == totals(windows_until(json_client, last)) == EXPECTED
    finally:
        cbor.close()


def test_cli_subscribe_prints_each_window_as_a_table_or_json_lines(broker, test_apps, connect, channel):
    view = f"SELECT device.model, COUNT(*) AS n FROM `{channel}` GROUP BY device.model"
    flags = client_flags(broker, test_apps)
    table, table_out, table_err = start_cli(
        "subscribe", *flags, "--filter", view, "--period", "1", "--count", "2"
    )
    lines, json_out, json_err = start_cli("subscribe", *flags, "--filter", view, "--json", "--count", "2")
    try:
        table_err.wait_for(lambda line: line.startswith("subscribed to"))
        json_err.wait_for(lambda line: line.startswith("subscribed to"))
        publisher = connect()
        for model in ("pixel", "iphone", "pixel"):
            publisher.publish(channel, {"device": {"model": model}})
        header = table_out.wait_for(lambda line: line.startswith("device.model"))
        assert header.split() == ["device.model", "n"]
        assert table_out.wait_for(lambda line: True).startswith("------------")
        first = json_out.wait_for(lambda line: True)
        assert first.startswith("{") and '"device.model"' in first
        assert table.wait(20) == 0 and lines.wait(20) == 0
    finally:
        stop(table)
        stop(lines)
