"""A Sentinel-managed shard loses its master (SIGKILL): the brokers follow the failover without a restart.

One master, two replicas, three Sentinels; a plain single-node shard next to it; two brokers. Acked
publishers and subscribers on channels of both shards while the master is killed:

- publishing resumes on the new master; the plain shard never stops;
- with ``durability: replicated`` every acknowledged message is in the new master's history and reached
  every subscriber exactly once, in order (subscribers are told at most once, and caught up from history);
- the old master comes back as a replica and nothing breaks;
- with ``durability: leader`` acknowledged writes of the last moments may be lost: the test counts them.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace

import pytest
import redis

from app.channels import channel_key
from app.client import CobraError
from app.models import Shard
from app.shards import ShardRing
from tests.support.processes import wait_until
from tests.support.sentinel import SentinelDeployment
from tests.support.sharded import APP, Blaster, Collector, ShardedCluster, make_app

LEADER_APP = "leaderapp"


class HACluster(ShardedCluster):
    """The sharded deployment of the other shard tests (config Redis, one plain shard ``s0``), plus the
    Sentinel shard ``ha``."""

    def __init__(self, tmp_path, sentinel: SentinelDeployment) -> None:
        super().__init__(tmp_path, shard_count=1)
        self.sentinel = sentinel

    def shard_list(self) -> list[Shard]:
        return [*super().shard_list(), Shard("ha", self.sentinel.url)]


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    base = tmp_path_factory.mktemp("sentinel")
    sentinel = SentinelDeployment(base / "ha").start()
    cluster = HACluster(base, sentinel)
    try:
        cluster.start(history_max_length=100_000)
        cluster.store.update_app(APP, lambda app: replace(app, durability="replicated"))
        cluster.store.put_app(make_app(LEADER_APP, history_max_length=100_000))
        yield cluster
    finally:
        cluster.stop()
        sentinel.stop()


@pytest.fixture(scope="module")
def brokers(ha):
    env = {"COBRA_SHARD_PROBE_INTERVAL": "0.5"}
    return ha.broker(env), ha.broker(env)


def master_client(ha: HACluster) -> redis.Redis:
    port = wait_until(ha.sentinel.master_port, timeout=30, message="Sentinels agree on a master")
    return redis.Redis(port=port, socket_timeout=5)


def kill_master(ha: HACluster) -> int:
    """SIGKILL the current master; wait until the Sentinels name another one. Returns the killed port."""
    old = wait_until(ha.sentinel.master_port, timeout=30, message="a master")
    ha.sentinel.nodes[old].kill()
    wait_until(lambda: ha.sentinel.master_port() not in (None, old), timeout=60, message="failover")
    return old


def bring_back(ha: HACluster, port: int) -> None:
    """Restart a killed master on its port, empty (no persistence); Sentinel makes it a replica."""
    node = ha.sentinel.nodes[port]
    node.start()

    def is_replica() -> bool:
        client = node.client()
        try:
            info = client.info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    wait_until(is_replica, timeout=60, interval=0.2, message="the old master is a replica again")


def readiness_line(broker) -> str:
    """The ``shard ha (sentinel): master …, replicas …`` line of a broker's /ready ("" when absent)."""
    try:
        with urllib.request.urlopen(broker.http + "/ready/", timeout=10) as response:
            body = response.read().decode()
    except OSError:
        return ""
    return next((row for row in body.splitlines() if row.startswith("shard ha (sentinel)")), "")


def history_positions(ha: HACluster, app: str, channel: str) -> list[str]:
    client = master_client(ha)
    try:
        return [entry_id.decode() for entry_id, _fields in client.xrange(channel_key(app, channel))]
    finally:
        client.close()


def channel_on(ha: HACluster, shard: str, app: str, prefix: str) -> str:
    ring = ShardRing([s.name for s in ha.shard_list()])
    names = (f"{prefix}-{i}" for i in range(10_000))
    return next(name for name in names if ring.node_for(channel_key(app, name)) == shard)


def assert_in_order_once(delivered: list[int], acked: list[int], failed: set[int]) -> None:
    """Every acknowledged message exactly once and in order; anything else delivered is a publish whose
    answer was an error (stored on the old master, its acknowledgement lost with the connection)."""
    assert delivered == sorted(set(delivered)), "a duplicate or a message out of order"
    missing = sorted(set(acked) - set(delivered))
    assert missing == [], f"acknowledged and never delivered: {missing}"
    assert set(delivered) - set(acked) <= failed


def test_replicated_publishes_survive_a_master_kill_and_the_plain_shard_never_stops(ha, brokers):
    ha_channels = ha.channels_on("ha", 2, prefix="ha")
    # The plain shard has no replica: a replicated app's publish there is refused (README, Durability),
    # so its traffic comes from an app with durability leader.
    plain = channel_on(ha, "s0", LEADER_APP, "plain")
    with pytest.raises(CobraError) as refused:
        ha.client(brokers[0]).publish(ha.channels_on("s0", 1, prefix="plain")[0], {"n": 0})
    assert refused.value.code == "not_replicated"
    subscribers = [ha.client(broker, timeout=30) for broker in brokers]
    plain_subscribers = [ha.client(broker, app=LEADER_APP, timeout=30) for broker in brokers]
    for client in subscribers:
        for channel in ha_channels:
            client.subscribe(channel)
    for client in plain_subscribers:
        client.subscribe(plain)
    collectors = [Collector(client) for client in subscribers]
    plain_collectors = [Collector(client) for client in plain_subscribers]
    ha_blaster = Blaster(ha.client(brokers[0], timeout=30), ha_channels, pause=0.005)
    plain_blaster = Blaster(ha.client(brokers[1], app=LEADER_APP, timeout=30), [plain], pause=0.005)
    ha_blaster.start()
    plain_blaster.start()
    try:
        wait_until(lambda: ha_blaster.rounds >= 100, timeout=60, message="100 rounds before the kill")
        plain_at_kill = len(plain_blaster.acked[plain])
        killed = kill_master(ha)
        # From the kill until the Sentinels named a new master, the plain shard kept acknowledging.
        plain_during_failover = len(plain_blaster.acked[plain]) - plain_at_kill
        resumed_at = len(ha_blaster.acked[ha_channels[0]])
        wait_until(
            lambda: len(ha_blaster.acked[ha_channels[0]]) >= resumed_at + 50,
            timeout=60,
            message="publishing resumed on the new master",
        )
        bring_back(ha, killed)
        for broker in brokers:  # the topology the brokers show has the old master among the replicas
            wait_until(
                lambda b=broker: f"127.0.0.1:{killed}" in readiness_line(b).partition("replicas")[2],
                timeout=60,
                message="/ready lists the old master as a replica",
            )
        after_return = len(ha_blaster.acked[ha_channels[0]])
        wait_until(
            lambda: len(ha_blaster.acked[ha_channels[0]]) >= after_return + 50,
            timeout=60,
            message="publishing goes on with the old master back as a replica",
        )
    finally:
        ha_blaster.stop()
        plain_blaster.stop()

    assert plain_blaster.errors == [], "the plain shard stopped"
    assert plain_during_failover > 0, "no publish to the plain shard was acknowledged during the failover"
    failed = {int(error.split("#")[1].split(":")[0]) for error in ha_blaster.errors}
    assert {error.split(": ")[1] for error in ha_blaster.errors} <= {"shard_unavailable", "not_replicated"}
    for channel in ha_channels:
        acked = ha_blaster.acked[channel]
        # Every acknowledged message is in the new master's history.
        stored = set(history_positions(ha, APP, channel))
        assert [position for _n, position in acked if position not in stored] == []
        numbers = [n for n, _position in acked]
        for collector in collectors:
            wait_until(lambda c=collector, ch=channel, ns=numbers: set(ns) <= set(c.numbers(ch)), timeout=60)
            assert_in_order_once(collector.numbers(channel), numbers, failed)
    plain_numbers = [n for n, _position in plain_blaster.acked[plain]]
    for collector in plain_collectors:
        wait_until(lambda c=collector: len(c.numbers(plain)) >= len(plain_numbers), timeout=60)
        assert collector.numbers(plain) == plain_numbers
        assert collector.errors == []
        collector.stop()
    for broker, collector in zip(brokers, collectors, strict=True):
        # Sentinel may itself move the master twice in a row (a promotion that does not finish in time
        # is retried with another replica): "once per failover" counts the moves the broker followed.
        moves = broker.output().count("shard ha: master of") - 1  # the first line is the discovery
        assert moves >= 1
        per_subscription = [e["body"].get("subscription_id") for e in collector.errors]
        for channel in ha_channels:  # told once per failover at most (PROTOCOL §7)
            assert per_subscription.count(channel) <= moves
        for notice in collector.errors:
            body = notice["body"]
            assert notice["action"] in ("rtm/subscription/error", "rtm/subscription/info"), notice
            assert body.get("messages") == [] and body.get("position"), notice
            if notice["action"] == "rtm/subscription/error":
                assert body["code"] == "shard_unavailable", notice
        collector.stop()
    for broker in brokers:
        assert broker.process.poll() is None


def test_leader_durability_may_lose_the_last_acknowledged_writes_and_says_how_many(ha, brokers, capsys):
    ha.sentinel.wait_sentinels_agree(wait_until(ha.sentinel.master_port, timeout=30), replicas=2, timeout=60)
    channel = ha.channels_on("ha", 1, prefix="leader")[0]
    blaster = Blaster(ha.client(brokers[0], app=LEADER_APP, timeout=30), [channel])
    subscriber = ha.client(brokers[1], app=LEADER_APP, timeout=30)
    subscriber.subscribe(channel)
    collector = Collector(subscriber)
    blaster.start()
    try:
        wait_until(lambda: blaster.rounds >= 200, timeout=60, message="200 rounds before the kill")
        killed_round = blaster.rounds
        killed = kill_master(ha)
        resumed_at = len(blaster.acked[channel])
        wait_until(lambda: len(blaster.acked[channel]) >= resumed_at + 50, timeout=60, message="resumed")
    finally:
        blaster.stop()
    stored = set(history_positions(ha, LEADER_APP, channel))
    lost = [n for n, position in blaster.acked[channel] if position not in stored]
    with capsys.disabled():
        print(f"\nleader durability: {len(lost)} of {len(blaster.acked[channel])} acknowledged writes lost")
    # Only writes of the last moments before the kill can be lost: none after the failover.
    assert all(n <= killed_round + 1 for n in lost)
    numbers = [n for n, _position in blaster.acked[channel]]
    wait_until(lambda: set(numbers) - set(lost) <= set(collector.numbers(channel)), timeout=60)
    assert collector.numbers(channel) == sorted(set(collector.numbers(channel)))  # no duplicate, in order
    collector.stop()
    bring_back(ha, killed)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_shards_list_ready_and_metrics_show_master_replicas_and_the_last_failover(ha, brokers):
    master = f"127.0.0.1:{wait_until(ha.sentinel.master_port, timeout=30)}"
    listing = ha.cli("shards", "list")
    assert listing.returncode == 0, listing.stderr
    [line] = [row for row in listing.stdout.splitlines() if row.startswith("ha ")]
    assert "reachable" in line and f"master {master}" in line and "replicas 127.0.0.1:" in line

    def ready_line() -> str | None:
        status, body = get(brokers[0].http + "/ready/")
        lines = [row for row in body.splitlines() if row.startswith("shard ha (sentinel)")]
        return lines[0] if status == 200 and lines and f"master {master}" in lines[0] else None

    line = wait_until(ready_line, timeout=30, message="/ready names the new master")
    assert "last failover never" not in line and "failovers 0" not in line

    def failovers_metric() -> bool:
        _status, body = get(brokers[1].http + "/metrics")
        return (
            any(
                row.startswith("cobra_shard_failovers{") and 'shard="ha"' in row and not row.endswith(" 0.0")
                for row in body.splitlines()
            )
            and f'master="{master}"' in body
        )

    wait_until(failovers_metric, timeout=30, message="/metrics shows the failovers and the master")
