"""Soak: nothing acknowledged is lost while shards are killed and restarted, one at a time.

Publishers (real WebSocket clients) publish numbered messages to channels spread over the three shards and
record every ``rtm/publish/ok`` and every refusal. Subscribers on both broker processes collect what they
receive: two rely on the broker alone (it keeps their subscriptions through an outage and catches them up
from history), one behaves like a cautious client and resubscribes from its last position whenever it is
told ``rtm/subscription/error``. Meanwhile the shards are killed (SIGKILL) or stopped (SIGTERM) in turn and
restarted on the same port with the same data directory: append-only file, fsynced before every reply
(``appendfsync always``), so what Redis acknowledged survives even a SIGKILL. Between two restarts another
shard keeps dropping the brokers' Pub/Sub connections for a moment while it goes on taking publishes.

At the end every acknowledged message must have reached a subscriber or be in its channel's history, read
from the shard's stream directly; beyond that, as documented, every one must be in the history and have
reached every subscriber. The run lasts ``SOAK_SECONDS`` (``COBRA_SOAK_SECONDS`` lengthens it;
``COBRA_SOAK_SEED`` replays the same random outage lengths).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from app.channels import channel_key
from app.client import CobraClient, CobraError
from app.positions import parse_position
from tests.support.sharded import APP, ShardedCluster

SOAK_SECONDS = float(os.environ.get("COBRA_SOAK_SECONDS") or 60)
CHANNELS_PER_SHARD = 3
PUBLISH_PAUSE = 0.003  # seconds between two publishes of one publisher: a steady load, not a flood
DOWN_SECONDS = (1.0, 3.5)  # how long a shard stays down, drawn at random per round
UP_SECONDS = (2.0, 4.5)  # how long all shards stay up between two rounds
FLAP_SECONDS = 0.5  # how long a shard keeps dropping the brokers' Pub/Sub connections, once per round
CATCH_UP_SECONDS = 60.0  # at most, after the last restart, for subscribers to receive what was acked
EXPECTED_CODES = {"shard_unavailable"}  # the only refusal / subscription error a shard outage may cause

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(180, int(SOAK_SECONDS) + 120))]


# --------------------------------------------------------------------------- the actors
class Publisher(threading.Thread):
    """Publishes ``{"pub": index, "n": n}`` (n unique per publisher) to each channel in turn, waiting for
    each reply: ``acked`` holds (channel, n, position), ``refused`` holds (channel, n, code)."""

    def __init__(self, index: int, client: CobraClient, channels: list[str]) -> None:
        super().__init__(daemon=True, name=f"publisher-{index}")
        self.index = index
        self.client = client
        self.channels = channels
        self.acked: list[tuple[str, int, str]] = []
        self.refused: list[tuple[str, int, str | None]] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            for channel in self.channels:
                n += 1
                try:
                    body = self.client.publish(channel, {"pub": self.index, "n": n})
                except CobraError as exc:
                    self.refused.append((channel, n, exc.code))
                except Exception as exc:  # a closed connection, no reply at all: never acceptable
                    self.failures.append(f"{channel}#{n}: {exc!r}")
                    return
                else:
                    if body.get("channels") != [channel]:
                        self.failures.append(f"{channel}#{n}: unexpected reply {body!r}")
                    self.acked.append((channel, n, body["position"]))
                time.sleep(PUBLISH_PAUSE)


class Subscriber(threading.Thread):
    """Follows ``channels`` (subscription id = channel) on one connection and keeps every message received.

    With ``resume``, an ``rtm/subscription/error`` makes it resubscribe (``force``) from the newest position
    it had received on that channel when it was told, retrying until the broker accepts, as a careful client
    would (what the broker delivers between the error and the resubscribe may then come twice). Without, it
    leaves recovery to the broker."""

    def __init__(self, name: str, client: CobraClient, channels: list[str], resume: bool) -> None:
        super().__init__(daemon=True, name=name)
        self.client = client
        self.channels = channels
        self.resume = resume
        self.received: dict[str, list[tuple[str, Any]]] = {c: [] for c in channels}
        self.newest: dict[str, str] = {}  # the newest position received, per channel
        self.resume_from: dict[str, str] = {}
        self.error_pushes: list[dict[str, Any]] = []
        self.refused_resubscribes: list[str | None] = []
        self.resubscribes = 0
        self.failures: list[str] = []
        self.pending: set[str] = set()  # channels to resubscribe (resume mode)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        for channel in channels:
            self.newest[channel] = client.subscribe(channel)["position"]

    def run(self) -> None:
        next_attempt = 0.0
        try:
            while not self.stopping.is_set():
                if self.pending and time.monotonic() >= next_attempt:
                    self._resubscribe()
                    next_attempt = time.monotonic() + 0.3
                try:
                    push = self.client.next_push(0.2)
                except TimeoutError:
                    continue
                self._handle(push)
        except Exception as exc:  # the connection closed under us: never acceptable
            if not self.stopping.is_set():
                self.failures.append(repr(exc))

    def _handle(self, push: dict[str, Any]) -> None:
        body = push.get("body") or {}
        channel = body.get("subscription_id")
        if push.get("action") == "rtm/subscription/data":
            with self.lock:
                self.received[channel].extend((body["position"], m) for m in body["messages"])
                if parse_position(body["position"]) > parse_position(self.newest[channel]):
                    self.newest[channel] = body["position"]
        elif push.get("action") == "rtm/subscription/error":
            with self.lock:
                self.error_pushes.append(push)
            if self.resume and channel not in self.pending:
                self.resume_from[channel] = self.newest[channel]
                self.pending.add(channel)
        else:
            self.failures.append(f"unexpected push {push!r}")

    def _resubscribe(self) -> None:
        for channel in sorted(self.pending):
            reply = self.client.request(
                "rtm/subscribe",
                {
                    "channel": channel,
                    "subscription_id": channel,
                    "position": self.resume_from[channel],
                    "force": True,
                },
                check=False,
            )
            if reply["action"] == "rtm/subscribe/ok":
                self.pending.discard(channel)
                self.resubscribes += 1
            else:  # still down: the old subscription is gone (force), so try again shortly
                self.refused_resubscribes.append(reply["body"].get("code"))

    def seen(self, channel: str) -> set[tuple[int, int]]:
        """(publisher, n) of every message received on ``channel``."""
        with self.lock:
            return {(m["pub"], m["n"]) for _position, m in self.received[channel]}

    def error_codes(self) -> set[str | None]:
        with self.lock:
            return {e["body"].get("code") for e in self.error_pushes}

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


# --------------------------------------------------------------------------- the deployment
@pytest.fixture
def cluster(tmp_path) -> Iterator[ShardedCluster]:
    deployment = ShardedCluster(tmp_path)
    for server in deployment.shards.values():
        # Fsync the append-only file before replying: an acknowledged publish survives a SIGKILL.
        server.extra_args = ["--appendfsync", "always"]
    deployment.start(history_max_length=1_000_000, history_max_age=24 * 3600)
    yield deployment
    deployment.stop()


def read_history(cluster: ShardedCluster, channel: str) -> dict[str, Any]:
    """The channel's whole stream on its shard: position → message."""
    client = redis.Redis.from_url(cluster.shards[cluster.shard_name_for(channel)].url)
    try:
        found: dict[str, Any] = {}
        start = "-"
        while True:
            entries = client.xrange(channel_key(APP, channel), min=start, max="+", count=10_000)
            for entry_id, fields in entries:
                found[entry_id.decode()] = orjson.loads(fields[b"m"])
            if len(entries) < 10_000:
                return found
            start = "(" + entries[-1][0].decode()
    finally:
        client.close()


# --------------------------------------------------------------------------- the test
def test_nothing_acknowledged_is_lost_while_shards_die_and_come_back(cluster):
    env = {"COBRA_SHARD_PROBE_INTERVAL": "0.5"}
    brokers = [cluster.broker(env), cluster.broker(env)]
    channels = [c for name in sorted(cluster.shards) for c in cluster.channels_on(name, CHANNELS_PER_SHARD)]
    assert {cluster.shard_name_for(c) for c in channels} == set(cluster.shards)

    subscribers = [
        Subscriber("passive-0", cluster.client(brokers[0], timeout=30), channels, resume=False),
        Subscriber("passive-1", cluster.client(brokers[1], timeout=30), channels, resume=False),
        Subscriber("resuming-1", cluster.client(brokers[1], timeout=30), channels, resume=True),
    ]
    publishers = [
        Publisher(i, cluster.client(brokers[i % 2], timeout=30), channels[i:] + channels[:i])
        for i in range(3)
    ]
    for actor in [*subscribers, *publishers]:
        actor.start()

    # The chaos runs in this thread: a redis-server dies with the thread that started it (PDEATHSIG).
    rng = random.Random(int(os.environ.get("COBRA_SOAK_SEED") or time.time()))
    rounds: list[tuple[str, str]] = []
    pubsub_drops = 0
    names = sorted(cluster.shards)
    started = time.monotonic()
    deadline = started + SOAK_SECONDS
    time.sleep(UP_SECONDS[0])
    while time.monotonic() + DOWN_SECONDS[1] + UP_SECONDS[0] < deadline:
        name = names[len(rounds) % len(names)]
        mode = "SIGKILL" if len(rounds) % 2 == 0 else "SIGTERM"
        server = cluster.shards[name]
        server.stop(kill=mode == "SIGKILL")
        time.sleep(rng.uniform(*DOWN_SECONDS))
        server.start(timeout=30)  # same port, same data directory
        rounds.append((name, mode))
        up = min(rng.uniform(*UP_SECONDS), max(0.0, deadline - time.monotonic()))
        time.sleep(up / 2)
        # Half-way, another shard drops the brokers' Pub/Sub connections over and over for a moment (a
        # flapping link) and stays up: publishing there goes on, and only the broker's catch-up from
        # history can give its subscribers what they missed.
        other = cluster.shards[names[(len(rounds) + 1) % len(names)]]
        with redis.Redis.from_url(other.url) as client:
            flapping_until = time.monotonic() + FLAP_SECONDS
            while time.monotonic() < flapping_until:
                pubsub_drops += client.client_kill_filter(_type="pubsub")
                time.sleep(0.05)
        time.sleep(up / 2)
    for publisher in publishers:
        publisher.stopping.set()
    for publisher in publishers:
        publisher.join(60)
        assert not publisher.is_alive(), f"{publisher.name} did not stop"
    chaos_seconds = time.monotonic() - started

    acked = {(p.index, n): (channel, position) for p in publishers for channel, n, position in p.acked}
    refused = [(p.index, n, code) for p in publishers for _channel, n, code in p.refused]
    wanted: dict[str, set[tuple[int, int]]] = {c: set() for c in channels}
    for key, (channel, _position) in acked.items():
        wanted[channel].add(key)

    def missing(subscriber: Subscriber) -> int:
        return sum(len(wanted[c] - subscriber.seen(c)) for c in channels)

    # Every subscriber catches up (or the wait ends and the check below says what is missing).
    catch_up_deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < catch_up_deadline:
        if all(missing(s) == 0 and not s.pending for s in subscribers):
            break
        time.sleep(0.2)
    for subscriber in subscribers:
        subscriber.stop()

    history = {c: read_history(cluster, c) for c in channels}
    delivered: dict[str, set[tuple[int, int]]] = {c: set() for c in channels}
    delivered_at: dict[tuple[int, int], set[str]] = {}
    for subscriber in subscribers:
        for channel in channels:
            for position, message in subscriber.received[channel]:
                key = (message["pub"], message["n"])
                delivered[channel].add(key)
                delivered_at.setdefault(key, set()).add(position)

    lost, live, history_only, in_history, misplaced = [], 0, 0, 0, []
    for key, (channel, position) in sorted(acked.items()):
        kept = history[channel].get(position) == {"pub": key[0], "n": key[1]}
        in_history += kept
        if key in delivered[channel]:
            live += 1
            if delivered_at[key] != {position}:  # delivered, but not where it was acknowledged
                misplaced.append((channel, key, position, sorted(delivered_at[key])))
        elif kept:
            history_only += 1
        else:
            lost.append((channel, key, position))
    known = set(acked) | {(pub, n) for pub, n, _code in refused}
    phantoms = [(c, m) for c in channels for m in history[c].values() if (m["pub"], m["n"]) not in known]
    per_subscriber = {s.name: missing(s) for s in subscribers}
    duplicates = {
        s.name: sum(len(s.received[c]) - len({p for p, _m in s.received[c]}) for c in channels)
        for s in subscribers
    }

    print(
        f"\nsoak: {chaos_seconds:.0f}s, {len(rounds)} shard restart(s) {rounds}, "
        f"{pubsub_drops} Pub/Sub connection(s) dropped\n"
        f"soak: acked {len(acked)}, refused {len(refused)}, delivered to a subscriber {live}, "
        f"found in history only {history_only}, lost {len(lost)} (acked and in history: {in_history})\n"
        f"soak: acked messages missing per subscriber {per_subscriber}, duplicates {duplicates}; "
        f"resubscribes {subscribers[2].resubscribes} "
        f"({len(subscribers[2].refused_resubscribes)} refused while the shard was down)"
    )

    # Nothing acknowledged is lost, nothing is delivered at another position than acknowledged, and
    # nothing appears that nobody published.
    assert lost == [], f"{len(lost)} acknowledged message(s) lost, e.g. {lost[:10]}"
    assert misplaced == [], misplaced[:10]
    assert phantoms == [], phantoms[:10]
    # Stronger, as documented: Redis acknowledged only what its fsynced AOF holds, so the history has
    # every acknowledged message; and every subscriber got all of them. Those relying on the broker alone
    # got them exactly once and in stream order (the resuming one may get some twice: what the broker
    # delivered between telling it and its resubscribe comes again).
    assert in_history == len(acked), f"{len(acked) - in_history} acknowledged message(s) not in history"
    assert per_subscriber == {s.name: 0 for s in subscribers}, per_subscriber
    for subscriber in subscribers[:2]:
        for channel in channels:
            positions = [parse_position(p) for p, _m in subscriber.received[channel]]
            assert all(a < b for a, b in itertools.pairwise(positions)), (subscriber.name, channel)
    # The only trouble anyone saw was the documented one.
    assert {code for _pub, _n, code in refused} <= EXPECTED_CODES
    for subscriber in subscribers:
        assert subscriber.failures == [], (subscriber.name, subscriber.failures[:5])
        assert subscriber.error_codes() <= EXPECTED_CODES, (subscriber.name, subscriber.error_codes())
        assert set(subscriber.refused_resubscribes) <= EXPECTED_CODES
    for publisher in publishers:
        assert publisher.failures == [], (publisher.name, publisher.failures[:5])
    # The brokers lived through it, and nothing unexpected was logged.
    for broker in brokers:
        output = broker.output()
        assert broker.process.poll() is None, output[-3000:]
        assert "Traceback" not in output, output[-5000:]
        errors = [line for line in output.splitlines() if " ERROR " in line or " CRITICAL " in line]
        assert errors == [], errors[:10]
    # Not vacuous: real volume, real outages, and publishes that really hit a dead shard.
    assert len(rounds) >= 2 and {mode for _name, mode in rounds} == {"SIGKILL", "SIGTERM"}
    assert pubsub_drops >= 1
    assert len(acked) >= 500
    assert refused, "no publish ever hit a dead shard"
    assert any(s.error_pushes for s in subscribers), "no subscriber was ever told of an outage"
