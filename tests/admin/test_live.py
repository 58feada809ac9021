"""Live views: the dashboard's JSON, the connection list of every broker process with its disconnect
button, and the live tail (Server-Sent Events from the channel's shard, optionally filtered)."""

from __future__ import annotations

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from admin.live_stats import summarize
from admin.tail import tail_events
from app.channels import channel_key
from app.client import CobraClient
from app.embedded_redis import free_port
from app.live_tail import LiveTail
from app.models import ConfigSnapshot, Shard
from tests.support.processes import wait_until

from .conftest import audit_entries, new_panel, wait_green
from .test_roles import authenticates

SECRET = "s" * 32


@pytest.fixture
def connected(broker, app_key):
    """A client of the fresh app, connected to the session broker."""
    wait_until(lambda: authenticates(broker, app_key, "pubsub", SECRET), message="the broker knows the app")
    client = CobraClient(broker.endpoint, app_key, "pubsub", SECRET)
    yield client
    client.close()


def test_the_dashboard_page_loads_its_script(panel):
    html = panel.get("/").get_data(as_text=True)
    assert 'data-stats-url="/admin/live/stats.json"' in html
    assert '<script src="/admin/static/dashboard.js"' in html
    assert panel.get("/static/dashboard.js").status_code == 200


def test_stats_count_connections_per_app(panel, connected, app_key):
    def app_row():
        stats = panel.get("/live/stats.json").get_json()
        return next((a for a in stats["apps"] if a["app"] == app_key and a["connections"] == 1), None)

    wait_until(app_row, message="the connection is counted")
    stats = panel.get("/live/stats.json").get_json()
    assert stats["live_nodes"] >= 1
    assert stats["totals"]["connections"] >= 1


def test_stats_show_publish_and_delivery_rates(panel, connected, app_key, channel):
    connected.subscribe(channel)

    def rates():
        connected.publish(channel, {"n": 1})
        connected.next_push()
        stats = panel.get("/live/stats.json").get_json()
        row = next((a for a in stats["apps"] if a["app"] == app_key), None)
        busy = [c for c in stats["channels"] if c["app"] == app_key and c["channel"] == channel]
        return stats["has_stats"] and row and row["publishes_per_second"] > 0 and busy and stats

    stats = wait_until(rates, timeout=20, interval=0.2, message="rates reported")
    assert stats["totals"]["publishes_per_second"] > 0


def test_without_brokers_there_are_no_stats(private_redis, make_client, store):
    from admin.users import set_password
    from app.config_store import ConfigStore

    from .conftest import PASSWORD

    own = ConfigStore.from_url(private_redis.url)
    set_password(own, "solo", PASSWORD)
    client = make_client(new_panel(private_redis.url))
    client.login("solo")
    stats = client.get("/live/stats.json").get_json()
    assert stats["has_stats"] is False
    assert stats["totals"] == {
        "nodes": 0,
        "connections": 0,
        "publishes_per_second": 0,
        "deliveries_per_second": 0,
    }


def test_summaries_add_up_nodes_apps_and_channels():
    def document(node, app_rate, channel_rate):
        return {
            "node": node,
            "data": {
                "cobra": {
                    "published_count_per_second": {"r": app_rate},
                    "subscribed_count_per_second": {"r": 1},
                },
                "channel_data": {
                    "published_count_per_second": {"a::c1": channel_rate, "b::c2": 1.0},
                    "subscribed_count_per_second": {"a::c1": 2.0},
                },
                "system": {"connections": 3, "uptime": "0:01:00"},
                "apps": {
                    "a": {"published_count_per_second": app_rate, "delivered_count_per_second": 2.0},
                    "b": {"published_count_per_second": 1.0, "delivered_count_per_second": 0},
                },
            },
        }

    summary = summarize(
        {"n1": document("n1", 5.0, 4.0), "n2": document("n2", 7.0, 6.0)},
        [{"app": "a"}, {"app": "a"}, {"app": "c"}],
    )
    assert summary["has_stats"] is True
    assert summary["totals"] == {
        "nodes": 2,
        "connections": 3,
        "publishes_per_second": 12.0,
        "deliveries_per_second": 2.0,
    }
    apps = {a["app"]: a for a in summary["apps"]}
    assert apps["a"] == {
        "app": "a",
        "connections": 2,
        "publishes_per_second": 12.0,
        "deliveries_per_second": 4.0,
    }
    assert apps["c"]["connections"] == 1 and apps["c"]["publishes_per_second"] == 0
    assert summary["channels"][0] == {
        "app": "a",
        "channel": "c1",
        "publishes_per_second": 10.0,
        "deliveries_per_second": 4.0,
    }


def test_summaries_survive_odd_documents():
    summary = summarize({"x": {"data": "nonsense"}, "y": {"data": {"cobra": [], "system": None}}}, [])
    assert summary["has_stats"] is True
    assert summary["totals"]["publishes_per_second"] == 0
    assert summarize({}, [])["has_stats"] is False


def test_the_connection_list_shows_every_connection(panel, connected, app_key):
    def listed():
        html = panel.get(f"/connections/?app={app_key}").get_data(as_text=True)
        return connected.connection_id in html and html

    html = wait_until(listed, message="the connection is listed")
    assert "pubsub" in html and "Disconnect" in html


def test_disconnecting_closes_the_connection(panel, connected, app_key, store, admin_user):
    wait_until(
        lambda: connected.connection_id in panel.get("/connections/").get_data(as_text=True),
        message="the connection is listed",
    )
    response = panel.post(f"/connections/{connected.connection_id}/close?app={app_key}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/connections/?app={app_key}"
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            connected.receive(timeout=15)
    assert closed.value.rcvd.code == 1000
    entry = next(e for e in audit_entries(store, admin_user) if e["action"] == "connection.close")
    assert entry["target"] == connected.connection_id and entry["app"] == app_key


def test_disconnecting_a_gone_connection_says_so(panel):
    response = panel.post("/connections/000000000000/close")
    assert response.status_code == 302
    assert "already gone" in panel.get("/connections/").get_data(as_text=True)


# ---------------------------------------------------------------- live tail
def events(response):
    """Parse the SSE stream as it arrives: yields (event, data) and keepalive comments as (None, None)."""
    buffer = b""
    for chunk in response.response:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(b": ", 1)
                for line in block.split(b"\n")
                if b": " in line and not line.startswith(b":")
            )
            if b"event" in fields:
                yield fields[b"event"].decode(), orjson.loads(fields[b"data"])
            else:
                yield None, None


@pytest.fixture
def tail_panel(redis_server, make_client, admin_user, store, make_engine):
    """A panel whose tail subscribes through an engine of this process, on the session's config Redis
    (no shard list), like the broker's engine next to its panel."""
    live_tail = LiveTail(make_engine((), redis_server.url), store.snapshot)

    def make(**config):
        client = make_client(new_panel(redis_server.url, live_tail, ADMIN_TAIL_KEEPALIVE=0.2, **config))
        client.login(admin_user)
        return client

    return make


def open_tail(client, **query):
    response = client.client.get("/admin/tail/stream", query_string=query, buffered=False)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    return response


def next_event(stream, wanted):
    for event, data in stream:
        if event == wanted:
            return data
        assert event in (None, "ready"), (event, data)
    raise AssertionError("stream ended")


def test_the_tail_streams_published_messages(tail_panel, connected, app_key, channel, store):
    response = open_tail(tail_panel(), app=app_key, channel=channel)
    stream = events(response)
    ready = next_event(stream, "ready")
    assert ready == {"app": app_key, "channel": channel, "shard": "(config Redis)"}
    key = channel_key(app_key, channel)
    assert store.redis.pubsub_numsub(key)[0][1] == 1
    published = connected.publish(channel, {"hello": "<b>world</b>"})
    data = next_event(stream, "message")
    assert data["message"] == {"hello": "<b>world</b>"}
    assert data["position"] == published.get("position", data["position"])
    response.close()  # the browser goes away: the subscription is released
    wait_green(lambda: store.redis.pubsub_numsub(key)[0][1] == 0, message="the subscription is released")


def test_the_tail_applies_a_streamsql_filter(tail_panel, connected, app_key, channel):
    query = f"select data.fps as fps from `{channel}` where data.fps < 30"
    response = open_tail(tail_panel(), app=app_key, filter=query)
    stream = events(response)
    assert next_event(stream, "ready")["channel"] == channel
    for fps in (60, 20):
        connected.publish(channel, {"data": {"fps": fps}})
    assert next_event(stream, "message")["message"] == {"fps": 20}
    response.close()


def test_the_tail_ends_after_its_message_limit(tail_panel, connected, app_key, channel):
    response = open_tail(tail_panel(ADMIN_TAIL_MAX_MESSAGES=2), app=app_key, channel=channel)
    stream = events(response)
    next_event(stream, "ready")
    for n in range(3):
        connected.publish(channel, n)
    assert [next_event(stream, "message")["message"] for _ in range(2)] == [0, 1]
    assert "message limit" in next_event(stream, "end")["reason"]
    assert list(stream) == []


def test_the_tail_ends_after_its_time_limit(tail_panel, app_key, channel):
    response = open_tail(tail_panel(ADMIN_TAIL_MAX_SECONDS=0.5), app=app_key, channel=channel)
    assert "time limit" in next_event(events(response), "end")["reason"]


def test_an_unreachable_shard_is_reported(make_engine):
    shards = (Shard("s", f"redis://127.0.0.1:{free_port()}/0"),)
    engine = make_engine(shards, "redis://127.0.0.1:1/0", subscribe_timeout=1.0)
    live_tail = LiveTail(engine, lambda: ConfigSnapshot(shards=shards))
    stream = tail_events(live_tail, "a", "b", None, max_seconds=5, max_messages=5, keepalive=1)
    event = next(stream)
    assert event.startswith(b"event: failure")
    assert b"cannot subscribe on shard s" in event
    assert live_tail.streams == set()


def test_without_the_broker_the_tail_does_not_stream(panel, app_key):
    response = panel.client.get("/admin/tail/stream", query_string={"app": app_key, "channel": "c"})
    assert response.mimetype == "text/event-stream"
    assert next_event(events(response), "failure") == {
        "error": "the live tail needs a broker in this process"
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"app": "no-such-app", "channel": "c"}, "Not a valid choice"),
        ({"channel": "c"}, "This field is required"),
        ({"app": "APP", "filter": "select from"}, "Invalid StreamSQL"),
        ({"app": "APP"}, "Name a channel"),
    ],
)
def test_invalid_tails_are_refused(panel, app_key, query, message):
    query = {k: v.replace("APP", app_key) for k, v in query.items()}
    response = panel.client.get("/admin/tail/stream", query_string=query)
    assert response.status_code == 400
    assert message in str(response.get_json()["fields"])
    page = panel.client.get("/admin/tail/", query_string=query)
    assert page.status_code == 400
    assert message in page.get_data(as_text=True)


def test_the_tail_page_starts_the_stream_and_escapes_what_it_echoes(panel, app_key):
    hostile = "<script>alert(1)</script>"
    html = panel.client.get("/admin/tail/", query_string={"app": app_key, "channel": hostile}).get_data(
        as_text=True
    )
    assert hostile not in html
    assert "&lt;script&gt;" in html
    assert 'data-stream-url="/admin/tail/stream?app=' in html


def test_the_tail_shows_an_aggregated_view_as_one_window_of_rows(tail_panel, connected, app_key, channel):
    query = (
        f"select device.model, count(*) as n, max(data.fps) as top from `{channel}` "
        "where data.fps > 0 group by device.model"
    )
    response = open_tail(tail_panel(), app=app_key, filter=query)
    stream = events(response)
    assert next_event(stream, "ready")["channel"] == channel
    frames = [("pixel", 60), ("iphone", 30), ("pixel", 15), ("iphone", 0)]
    for model, fps in frames:
        connected.publish(channel, {"device": {"model": model}, "data": {"fps": fps}})
    totals: dict[str, int] = {}
    tops: dict[str, int] = {}
    while sum(totals.values()) < 3:  # the publishes may straddle a window boundary: add windows up
        window = next_event(stream, "window")
        assert window["period"] == 1 and window["dropped_groups"] == 0
        assert window["end"] % 1 == 0 and window["position"]
        models = [row["device.model"] for row in window["rows"]]
        assert models == sorted(models)  # one row per group, ordered by group key
        for row in window["rows"]:
            totals[row["device.model"]] = totals.get(row["device.model"], 0) + row["n"]
            tops[row["device.model"]] = max(tops.get(row["device.model"], 0), row["top"])
    assert totals == {"iphone": 1, "pixel": 2}  # the frame at 0 fps was filtered out by WHERE
    assert tops == {"iphone": 30, "pixel": 60}
    response.close()


def test_a_tail_over_max_groups_reports_dropped_groups(
    redis_server, make_client, admin_user, make_engine, connected, app_key, channel
):
    live_tail = LiveTail(make_engine((), redis_server.url), lambda: ConfigSnapshot(), max_groups=1)
    client = make_client(new_panel(redis_server.url, live_tail, ADMIN_TAIL_KEEPALIVE=0.2))
    client.login(admin_user)
    query = f"select data.kind, count(*) as n from `{channel}` group by data.kind"
    response = open_tail(client, app=app_key, filter=query)
    stream = events(response)
    next_event(stream, "ready")
    counted = dropped = 0
    for kind in ("a", "b", "b"):
        connected.publish(channel, {"data": {"kind": kind}})
    while counted + dropped < 3:
        window = next_event(stream, "window")
        assert len(window["rows"]) == 1  # one group kept per window, the others' messages dropped
        counted += window["rows"][0]["n"]
        dropped += window["dropped_groups"]
    assert dropped >= 1 and counted + dropped == 3
    response.close()
