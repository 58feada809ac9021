"""``history: {count, age}`` on subscribe over real sockets and a real Redis (PROTOCOL §5): the last N and/or
the last S seconds before live, with no gap and no duplicate at the switch-over, even while publishing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from app.client import CobraClient, CobraError


def numbers(client: CobraClient, until: int, timeout: float = 10.0) -> list[int]:
    """The ``n`` of every message pushed to ``client`` up to and including ``until``."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while not got or got[-1] != until:
        push = client.next_push(max(0.05, deadline - time.monotonic()))
        if push["action"] == "rtm/subscription/data":
            got.extend(m["n"] for m in push["body"]["messages"])
    return got


def test_history_count_replays_the_last_n_then_live(connect, channel):
    publisher, subscriber = connect(), connect()
    for n in range(6):
        publisher.publish(channel, {"n": n})
    reply = subscriber.request("rtm/subscribe", {"channel": channel, "history": {"count": 2}})
    assert reply["action"] == "rtm/subscribe/ok"
    publisher.publish(channel, {"n": 6})
    assert numbers(subscriber, 6) == [4, 5, 6]


def test_history_age_replays_only_the_last_seconds(connect, channel):
    publisher, subscriber = connect(), connect()
    publisher.publish(channel, {"n": 0})
    time.sleep(2.2)  # {"n": 0} is then more than 2 s old
    publisher.publish(channel, {"n": 1})
    subscriber.request("rtm/subscribe", {"channel": channel, "history": {"age": 2, "count": 10}})
    publisher.publish(channel, {"n": 2})
    assert numbers(subscriber, 2) == [1, 2]


@pytest.mark.parametrize("history", [[], {"count": -1}, {"age": "1"}, {"count": 2.5}])
def test_bad_history_is_refused_with_invalid_history(connect, channel, history):
    with pytest.raises(CobraError) as refused:
        connect().request("rtm/subscribe", {"channel": channel, "history": history})
    assert refused.value.code == "invalid_history"


def test_history_switches_to_live_without_gap_or_duplicate_while_publishing(connect, channel):
    publisher, subscriber = connect(), connect()
    for n in range(50):
        publisher.publish(channel, {"n": n})
    stop = threading.Event()
    last: dict[str, Any] = {"n": 49}

    def blast() -> None:
        n = 50
        while not stop.is_set() and n < 2000:
            publisher.publish(channel, {"n": n})
            last["n"] = n
            n += 1

    thread = threading.Thread(target=blast, daemon=True)
    thread.start()
    time.sleep(0.05)
    subscriber.request("rtm/subscribe", {"channel": channel, "history": {"count": 20}})
    time.sleep(0.2)
    stop.set()
    thread.join(10)
    got = numbers(subscriber, last["n"], timeout=30)
    assert got == list(range(got[0], last["n"] + 1))  # contiguous: no gap, no duplicate
    assert got[0] >= 30  # no more than the last 20 at the subscribe, plus what followed
