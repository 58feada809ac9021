"""A Sentinel shard whose data nodes and Sentinels both require a password (different ones), on database 2:
the URL's password and database reach the master (publisher, reader, history reads) and
``sentinel_password`` the Sentinels; ``shards add`` refuses a wrong Sentinel password with a reason."""

from __future__ import annotations

import pytest
import redis

from app.models import Shard
from tests.support.processes import wait_until
from tests.support.sentinel import MASTER_NAME, SentinelDeployment
from tests.support.sharded import ShardedCluster, data_messages

PASSWORD = "n0de/pass:with@odd"
SENTINEL_PASSWORD = "sent1nel&pass+x"
DB = 2


def url_with_db(url: str) -> str:
    return url.replace(f"/{MASTER_NAME}", f"/{MASTER_NAME}/{DB}")


class AuthCluster(ShardedCluster):
    def __init__(self, tmp_path, sentinel: SentinelDeployment) -> None:
        super().__init__(tmp_path, shard_count=0)
        self.sentinel = sentinel

    def shard_list(self) -> list[Shard]:
        return [Shard("ha", url_with_db(self.sentinel.url))]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("sentinel-auth")
    sentinel = SentinelDeployment(
        base / "ha", replicas=1, password=PASSWORD, sentinel_password=SENTINEL_PASSWORD
    ).start()
    cluster = AuthCluster(base, sentinel)
    try:
        cluster.start(history_max_length=1000)
        yield cluster
    finally:
        cluster.stop()
        sentinel.stop()


def test_both_passwords_reach_their_nodes(deployment):
    assert "sentinel_password=" in deployment.sentinel.url and "@" in deployment.sentinel.url
    broker = deployment.broker({"COBRA_SHARD_PROBE_INTERVAL": "0.5"})
    publisher = deployment.client(broker, timeout=30)
    subscriber = deployment.client(broker, timeout=30)
    subscriber.subscribe("guarded")
    wait_until(lambda: _published(publisher, "guarded"), timeout=30, message="a publish is acknowledged")
    assert data_messages(subscriber, 1, timeout=20)[0]["message"] == {"n": 1}
    assert publisher.read("guarded")["message"] == {"n": 1}  # the history read authenticates too
    in_db = redis.Redis(port=deployment.sentinel.master.port, password=PASSWORD, db=DB)
    in_zero = redis.Redis(port=deployment.sentinel.master.port, password=PASSWORD, db=0)
    try:
        assert in_db.xlen("shardapp::guarded") >= 1  # in the URL's database, not the default one
        assert in_zero.exists("shardapp::guarded") == 0
    finally:
        in_db.close()
        in_zero.close()
    output = broker.output()
    assert PASSWORD not in output and SENTINEL_PASSWORD not in output  # logs never show a secret


def test_a_wrong_sentinel_password_is_refused_when_the_shard_is_added(deployment):
    wrong = deployment.sentinel.url.replace("sentinel_password=", "sentinel_password=not-")
    added = deployment.cli("shards", "add", "wrong", wrong)
    assert added.returncode != 0, added.stdout
    said = added.stdout + added.stderr
    assert "invalid username-password pair" in said  # the Sentinels' own answer, per Sentinel
    assert SENTINEL_PASSWORD not in said and "sentinel_password=***" in said


def _published(client, channel: str) -> bool:
    from app.client import CobraError

    try:
        client.publish(channel, {"n": 1})
        return True
    except CobraError:
        return False
