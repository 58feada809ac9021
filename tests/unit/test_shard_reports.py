"""The brokers' shard reports folded per shard: the latest failover any broker saw, the most followed."""

from __future__ import annotations

from app.shard_reports import format_failover, shard_reports


def document(**shards: dict) -> dict:
    return {"ts": 1.0, "data": {"shards": shards}}


def sentinel(master: str, failovers: int, last: float | None, up: int = 1) -> dict:
    return {
        "up": up,
        "queued": 0,
        "kind": "sentinel",
        "master": master,
        "replicas": ["127.0.0.1:2"],
        "failovers": failovers,
        "last_failover": last,
    }


def test_the_latest_failover_any_broker_saw_wins_and_failovers_are_not_summed():
    reports = shard_reports(
        {
            "a": document(ha=sentinel("127.0.0.1:7001", 2, 1000.0)),
            "b": document(ha=sentinel("127.0.0.1:7001", 1, 1500.0)),  # started later, saw only the last
        }
    )
    report = reports["ha"]
    assert report.kind == "sentinel"
    assert report.last_failover == 1500.0
    assert report.failovers == 2
    assert (report.brokers, report.connected) == (2, 2)
    assert report.masters == ("127.0.0.1:7001",)


def test_a_shard_that_never_failed_over_reports_none_and_reads_never():
    single = {"up": 1, "queued": 0, "kind": "single", "master": "h:1"}
    report = shard_reports({"a": document(s0=single)})["s0"]
    assert report.last_failover is None and report.failovers == 0
    assert format_failover(report.last_failover) == "never"


def test_brokers_naming_different_masters_are_all_listed_and_down_links_counted():
    reports = shard_reports(
        {
            "a": document(ha=sentinel("127.0.0.1:7001", 1, 10.0)),
            "b": document(ha=sentinel("127.0.0.1:7000", 0, None, up=0)),
        }
    )
    assert reports["ha"].masters == ("127.0.0.1:7000", "127.0.0.1:7001")
    assert reports["ha"].connected == 1
    assert reports["ha"].replicas == ("127.0.0.1:2",)


def test_malformed_documents_are_skipped_not_fatal():
    reports = shard_reports(
        {
            "old": {"ts": 1.0},
            "odd": {"data": {"shards": ["not", "a", "mapping"]}},
            "bad": {"data": {"shards": {"x": "nope", "ha": {"failovers": "many", "last_failover": "soon"}}}},
        }
    )
    assert list(reports) == ["ha"]
    assert reports["ha"].failovers == 0 and reports["ha"].last_failover is None


def test_failover_times_print_in_utc():
    assert format_failover(0.0) == "1970-01-01T00:00:00Z"
    assert format_failover(1_796_000_000.0) == "2026-11-30T00:53:20Z"
