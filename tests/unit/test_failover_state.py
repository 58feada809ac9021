"""The Sentinel failover state machine (app/engine/failover.py), without I/O."""

from __future__ import annotations

import pytest

from app.engine.failover import (
    OUTAGE_POLL,
    SETTLED_POLL,
    FailoverState,
    Switch,
    format_address,
    parse_master_reply,
    parse_rows,
)

SENTINELS = (("s1", 26379), ("s2", 26379), ("s3", 26379))


def test_the_first_master_is_a_discovery_not_a_failover():
    state = FailoverState("m", SENTINELS)
    assert state.on_master(("a", 1), now=10.0) == Switch(None, ("a", 1), failover=False)
    assert (state.failovers, state.last_failover) == (0, None)


def test_the_same_master_again_changes_nothing():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    assert state.on_master(("a", 1), 11.0) is None


def test_a_new_master_is_a_failover_counted_and_timestamped():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    assert state.on_master(("b", 2), 20.0) == Switch(("a", 1), ("b", 2), failover=True)
    assert (state.master, state.failovers, state.last_failover) == (("b", 2), 1, 20.0)


def test_switch_master_of_our_master_moves_it():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    switch = state.on_notification(b"+switch-master", b"m a 1 b 2", 20.0)
    assert switch == Switch(("a", 1), ("b", 2), failover=True)


def test_a_notification_and_the_poll_that_follows_count_one_failover():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    state.on_notification(b"+switch-master", b"m a 1 b 2", 20.0)
    assert state.on_master(("b", 2), 21.0) is None
    assert state.failovers == 1


def test_other_masters_and_other_events_are_not_ours():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    assert state.on_notification(b"+switch-master", b"other a 1 b 2", 20.0) is None
    assert state.on_notification(b"+sdown", b"master m a 1", 20.0) is None
    assert state.on_notification(b"+switch-master", b"m a 1 b", 20.0) is None  # malformed
    assert state.master == ("a", 1)


def test_replicas_that_are_down_are_not_listed_nor_the_master():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    state.on_replicas(
        [
            {"ip": "c", "port": "3", "flags": "slave"},
            {"ip": "d", "port": "4", "flags": "s_down,slave"},
            {"ip": "e", "port": "5", "flags": "slave,disconnected"},
            {"ip": "a", "port": "1", "flags": "slave"},
        ]
    )
    assert state.replicas == (("c", 3),)


def test_the_sentinel_that_answered_is_asked_first_next_time():
    state = FailoverState("m", SENTINELS)
    state.answered(("s3", 26379))
    assert state.sentinels[0] == ("s3", 26379)
    assert sorted(state.sentinels) == sorted(SENTINELS)


def test_polls_are_frequent_while_the_master_cannot_be_reached():
    state = FailoverState("m", SENTINELS)
    assert state.poll_interval(link_available=True) == OUTAGE_POLL  # no master known yet
    state.on_master(("a", 1), 10.0)
    assert state.poll_interval(link_available=True) == SETTLED_POLL
    assert state.poll_interval(link_available=False) == OUTAGE_POLL


def test_sentinel_replies_are_parsed():
    assert parse_master_reply([b"10.0.0.1", b"6379"]) == ("10.0.0.1", 6379)
    assert parse_master_reply(None) is None
    assert parse_rows([[b"ip", b"h", b"port", b"1", b"flags", b"slave"]]) == [
        {"ip": "h", "port": "1", "flags": "slave"}
    ]


def test_a_switch_back_to_the_first_master_is_a_second_failover():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    state.on_master(("b", 2), 20.0)
    assert state.on_master(("a", 1), 30.0) == Switch(("b", 2), ("a", 1), failover=True)
    assert (state.failovers, state.last_failover) == (2, 30.0)


def test_a_notification_before_any_discovery_is_a_discovery():
    state = FailoverState("m", SENTINELS)
    assert state.on_notification(b"+switch-master", b"m a 1 b 2", 5.0) == Switch(None, ("b", 2), False)
    assert state.failovers == 0


def test_a_repeated_notification_counts_once_and_a_stale_one_still_names_the_new_master():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    assert state.on_notification(b"+switch-master", b"m a 1 b 2", 20.0) is not None
    assert state.on_notification(b"+switch-master", b"m a 1 b 2", 20.5) is None  # another Sentinel's copy
    assert state.failovers == 1
    # Whatever "old" says, the new address is where writes go now.
    assert state.on_notification(b"+switch-master", b"m x 9 c 3", 30.0) == Switch(("b", 2), ("c", 3), True)


def test_a_notification_with_a_bad_port_or_an_ipv6_master():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    assert state.on_notification(b"+switch-master", b"m a 1 b port", 20.0) is None
    assert state.on_notification(b"+switch-master", b"m a 1 ::1 7000", 20.0) == Switch(
        ("a", 1), ("::1", 7000), True
    )
    assert format_address(state.master) == "[::1]:7000"


def test_the_promoted_replica_leaves_the_replicas_and_the_old_master_joins_when_sentinel_lists_it():
    state = FailoverState("m", SENTINELS)
    state.on_master(("a", 1), 10.0)
    state.on_replicas(
        [{"ip": "b", "port": "2", "flags": "slave"}, {"ip": "c", "port": "3", "flags": "slave"}]
    )
    state.on_master(("b", 2), 20.0)
    assert state.replicas == (("c", 3),)  # at once, before Sentinel is asked again
    state.on_replicas(
        [
            {"ip": "a", "port": "1", "flags": "slave"},
            {"ip": "c", "port": "3", "flags": "slave"},
            {"ip": "x", "port": "no", "flags": "slave"},  # unreadable rows are skipped
            {"port": "4", "flags": "slave"},
        ]
    )
    assert state.replicas == (("a", 1), ("c", 3))


def test_a_sentinel_that_is_not_in_the_list_does_not_join_it_and_none_is_refused():
    state = FailoverState("m", SENTINELS)
    state.answered(("elsewhere", 1))
    assert state.sentinels == list(SENTINELS)
    with pytest.raises(ValueError):
        FailoverState("m", ())


def test_master_replies_that_are_not_an_address():
    assert parse_master_reply([b"h"]) is None
    assert parse_master_reply([b"h", b"x"]) is None
    assert parse_master_reply("ERR") is None
    assert parse_master_reply(["h", 1]) == ("h", 1)
    assert parse_rows(None) == [] and parse_rows([b"junk"]) == []
