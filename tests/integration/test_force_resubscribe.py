"""``force: true`` (PROTOCOL §5) over real sockets and Redis: replacing a subscription's filter while a
publisher publishes continuously loses and repeats nothing that keeps matching."""

from __future__ import annotations

import threading
import time

FILTERS = ("select * from `{c}` where n >= 0", "select n from `{c}`")


def test_every_matching_message_arrives_exactly_once_across_forced_replacements(connect, channel):
    subscriber, publisher = connect(), connect()
    subscriber.subscribe(channel, subscription_id="s", filter=FILTERS[0].format(c=channel))
    total = 600
    done = threading.Event()

    def publish() -> None:
        for n in range(total):
            publisher.publish(channel, {"n": n})
        done.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    replacements = 0
    while not done.is_set() and replacements < 8:
        time.sleep(0.02)
        replacements += 1
        body = {"subscription_id": "s", "filter": FILTERS[replacements % 2].format(c=channel), "force": True}
        subscriber.request("rtm/subscribe", body)
    thread.join(30)
    assert done.is_set() and replacements >= 3  # the replacements happened while messages were flowing
    received: list[int] = []
    push_ids: list[int] = []
    while total - 1 not in received:
        push = subscriber.next_push(5.0)
        if push["action"] == "rtm/subscription/data":
            push_ids.append(push["id"])
            received.extend(m["n"] for m in push["body"]["messages"])
    assert received == list(range(total))
    assert push_ids == list(range(len(push_ids)))  # replaced in place: one sequence of push ids
