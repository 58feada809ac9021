"""Republish rules that are aggregated views (PROTOCOL §12): with two broker processes, exactly one
aggregates each rule (a lease in the config Redis) and publishes one row set per window to the target; when
it dies, the other takes the rule over."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from app.client import CobraClient
from app.view_rules import LEASE_KEY
from tests.support.processes import can_authenticate, wait_until
from tests.support.sharded import SECRET, ShardedCluster, make_app

SOURCE = "engine_fps_id"
TARGET = "fps_summary"
RULE = (
    f"select device.model as model, count(*) as n, max(data.fps) as top from `{SOURCE}` group by device.model"
)


@pytest.fixture
def cluster(tmp_path):
    deployment = ShardedCluster(tmp_path, shard_count=2).start()
    yield deployment
    deployment.stop()


def summaries(client: CobraClient, seconds: float) -> list[dict]:
    """The messages the target's subscriber got within ``seconds`` (each one window's summary)."""
    found = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            push = client.next_push(left)
        except TimeoutError:
            break
        if push["action"] == "rtm/subscription/data":
            found.extend(push["body"]["messages"])
    return found


def counted(found: list[dict], models: set[str]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for summary in found:
        assert set(summary) == {"messages"}  # no dropped_groups under max_groups
        names = [row["model"] for row in summary["messages"]]
        assert names == sorted(names)
        for row in summary["messages"]:
            if row["model"] in models:
                totals[row["model"]] = totals.get(row["model"], 0) + row["n"]
    return totals


def publish_frames(publishers: list[CobraClient], model: str, count: int) -> None:
    for n in range(count):
        publishers[n % len(publishers)].publish(SOURCE, {"device": {"model": model}, "data": {"fps": 30 + n}})
        time.sleep(0.01)


def test_one_process_aggregates_a_view_rule_and_another_takes_it_over(cluster):
    key = f"vr-{uuid.uuid4().hex[:8]}"
    cluster.store.put_app(make_app(key))
    brokers = [cluster.broker(), cluster.broker()]
    for broker in brokers:
        wait_until(lambda b=broker: can_authenticate(b, key, "pubsub", SECRET), timeout=20, message="app")
    result = cluster.cli("apps", "republish", key, "add", RULE, TARGET)
    assert result.returncode == 0, result.stderr
    publishers = [CobraClient(b.endpoint, key, "pubsub", SECRET) for b in brokers]
    readers = [CobraClient(b.endpoint, key, "pubsub", SECRET) for b in brokers]
    cluster.clients.extend(publishers + readers)
    for reader in readers:
        reader.subscribe(TARGET)
    # A target subscriber with a filter sees each row on its own (a summary is a batch, PROTOCOL §6).
    filtered = CobraClient(brokers[0].endpoint, key, "pubsub", SECRET)
    cluster.clients.append(filtered)
    filtered.subscribe(TARGET, filter=f"select n from `{TARGET}` where model = 'pixel'")

    # The rule is taken (one lease) and running: a probe frame shows up in a summary.
    pattern = LEASE_KEY + f"{key}:*"
    wait_until(lambda: len(cluster.store.redis.keys(pattern)) == 1, timeout=20, message="one lease")

    def probed() -> bool:
        publishers[0].publish(SOURCE, {"device": {"model": "probe"}, "data": {"fps": 1}})
        return any("probe" in str(s) for s in summaries(readers[0], 1.5))

    wait_until(probed, timeout=30, message="the rule publishes summaries")
    summaries(readers[0], 2.5)  # the probes' last windows
    summaries(readers[1], 0.1)

    # Frames published through both processes: both target subscribers see each frame counted once.
    sender = threading.Thread(target=publish_frames, args=(publishers, "pixel", 60), daemon=True)
    sender.start()
    sender.join(60)
    got = [summaries(reader, 4.0) for reader in readers]
    assert counted(got[0], {"pixel"}) == {"pixel": 60}  # one aggregation: two would count 120
    assert counted(got[1], {"pixel"}) == {"pixel": 60}
    assert got[0] == got[1]  # the same single publish per window reached both
    rows = summaries(filtered, 0.5)
    assert rows and all(set(row) == {"n"} for row in rows)
    assert sum(row["n"] for row in rows) == 60
    assert all(len(summary["messages"]) >= 1 for summary in got[0])

    # Kill the holder (no clean shutdown, no lease released): the other process takes the rule over.
    leases = cluster.store.redis.keys(pattern)
    assert len(leases) == 1
    holder_port = int(cluster.store.redis.get(leases[0]).decode().split()[0].split(":")[-2])
    holder = next(b for b in brokers if b.port == holder_port)
    survivor_index = 1 - brokers.index(holder)
    holder.signal(signal.SIGKILL)

    def moved() -> bool:
        value = cluster.store.redis.get(leases[0])
        return value is not None and int(value.decode().split()[0].split(":")[-2]) != holder_port

    # The lease TTL is 3 s with renewals every second; 20 s leaves room for a loaded machine.
    wait_until(moved, timeout=20, interval=0.1, message="the lease moves to the survivor")
    survivor_pub, survivor_reader = publishers[survivor_index], readers[survivor_index]
    summaries(survivor_reader, 1.5)  # whatever the survivor's first (partial) window held
    publish_frames([survivor_pub], "iphone", 30)
    assert counted(summaries(survivor_reader, 4.0), {"iphone"}) == {"iphone": 30}
