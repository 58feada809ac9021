"""The dashboard lists every configured app, quiet ones with zeros: an app missing from it reads as a
deleted one."""

from __future__ import annotations

from admin.live_stats import summarize


def test_every_configured_app_gets_a_row_even_without_traffic():
    documents = {"n1": {"node": "n1", "data": {"apps": {"busy": {"published_count_per_second": 3}}}}}
    summary = summarize(documents, [{"app": "connected"}], ["busy", "quiet", "connected"])
    rows = {row["app"]: row for row in summary["apps"]}
    assert list(rows) == ["busy", "connected", "quiet"]
    assert rows["quiet"] == {
        "app": "quiet",
        "connections": 0,
        "publishes_per_second": 0.0,
        "deliveries_per_second": 0.0,
    }
    assert rows["busy"]["publishes_per_second"] == 3 and rows["connected"]["connections"] == 1


def test_the_stats_feed_lists_an_app_with_no_connection_and_no_traffic(panel, app_key):
    stats = panel.get("/live/stats.json").get_json()
    row = next((a for a in stats["apps"] if a["app"] == app_key), None)
    assert row == {"app": app_key, "connections": 0, "publishes_per_second": 0, "deliveries_per_second": 0}
