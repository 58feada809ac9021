"""The failover benchmark's arithmetic (bench/ha_failover.py, bench/ha_report.py), without processes."""

from __future__ import annotations

from bench.ha_failover import AckedPublisher, summarise
from bench.ha_report import failover_table


def test_only_a_publish_sent_after_the_kill_counts_as_resumed():
    publisher = AckedPublisher(port=1, app="a", channel="c", window=1)
    # (n, position, sent at, acked at): #1 was sent before the kill at t=10 and its answer came after it.
    publisher.acked = [(1, "1-0", 9.9, 10.2), (2, "2-0", 12.0, 13.5), (3, "3-0", 13.5, 13.6)]
    assert publisher.first_ack_sent_after(10.0) == 13.5
    assert publisher.first_ack_sent_after(14.0) is None


def run(failover_s, lost=0, promoted_s=1.0, errors=None):
    errors = errors or {}
    return {"failover_s": failover_s, "promoted_s": promoted_s, "lost": lost, "acked": 100, "errors": errors}


def test_summary_has_min_median_max_of_the_runs_that_resumed_and_every_runs_losses():
    summary = summarise(
        [
            run(3.0, lost=2, errors={"a": 2}),
            run(1.0, errors={"a": 1, "b": 5}),
            run(None),
            run(2.0, promoted_s=3.0),
        ]
    )
    assert (summary["failover_s_min"], summary["failover_s_median"], summary["failover_s_max"]) == (
        1.0,
        2.0,
        3.0,
    )
    assert summary["failovers"] == 4 and summary["resumed"] == 3
    assert summary["lost_per_failover"] == [2, 0, 0, 0]
    assert summary["promoted_s_median"] == 1.0
    assert summary["errors"] == {"a": 3, "b": 5}


def test_the_table_says_why_an_app_was_not_measured():
    refused = summarise([]) | {"refused": "internal_error", "shard": "cluster", "durability": "replicated"}
    measured = summarise([run(2.5)]) | {"shard": "sentinel", "durability": "leader"}
    table = failover_table([measured, refused])
    assert "| sentinel | leader | 1/1 | 2.50 / 2.50 / 2.50 |" in table and table.endswith("| none |")
    assert "| cluster | replicated | 0/0 | not measured: publishes answered internal_error |" in table
