"""After a real failover, the admin panel's shard page and ``shards list`` show when it happened.

Neither the panel nor the CLI follows a failover itself: the brokers do, and each writes its shards'
topology with its stats document. One master, two replicas, three Sentinels (Redis 7 from /usr/bin), a
plain shard beside it, a running broker; SIGKILL the master; the panel's page, read over HTTP as an
operator reads it, names the new master and a last-failover time no earlier than the kill. The same for a
Redis Cluster shard (three masters, a replica each) whose master is killed.
"""

from __future__ import annotations

import calendar
import html
import re
import time

import pytest

from admin.users import set_password
from app.models import Shard
from tests.support.panel_http import PanelBrowser
from tests.support.processes import wait_until
from tests.support.redis_cluster import RedisCluster
from tests.support.sentinel import SentinelDeployment
from tests.support.sharded import ShardedCluster

OPERATOR, PASSWORD = "operator", "a long enough password"
WHEN = re.compile(r'<span class="last-failover">([^<]+)</span>')


def with_broker(base, ha, shard_name):
    """(brokers' cluster with a plain shard ``s0`` and the HA deployment ``ha`` as ``shard_name``, ``ha``,
    one running broker), the HA deployment stopped afterwards."""
    cluster = ShardedCluster(base, shard_count=1)
    try:
        cluster.start()
        cluster.store.set_shards([*cluster.shard_list(), Shard(shard_name, ha.url)])
        set_password(cluster.store, OPERATOR, PASSWORD)
        broker = cluster.broker({"COBRA_SHARD_PROBE_INTERVAL": "0.5"})
        yield cluster, ha, broker
    finally:
        cluster.stop()
        ha.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("topology-panel")
    yield from with_broker(base, SentinelDeployment(base / "ha").start(), "ha")


def shard_row(browser: PanelBrowser, name: str) -> str:
    """The row of shard ``name`` on the panel's shard page, as HTML."""
    status, _headers, page = browser.request("GET", "/admin/shards/")
    assert status == 200, page[:500]
    match = re.search(rf'<tr data-shard="{re.escape(name)}">(.*?)</tr>', page, re.DOTALL)
    assert match, f"no row for shard {name}"
    return html.unescape(match.group(1))


def test_the_shard_page_shows_kind_topology_and_the_time_of_the_last_failover(deployment):
    cluster, sentinel, broker = deployment
    browser = PanelBrowser(broker.port)
    assert browser.login(OPERATOR, PASSWORD) == 302
    old = wait_until(sentinel.master_port, timeout=30, message="the Sentinels agree on a master")

    def reported() -> str | None:
        row = shard_row(browser, "ha")
        return row if "1 of 1 broker(s) connected" in row else None

    row = wait_until(reported, timeout=60, interval=0.5, message="the broker reports shard ha")
    assert '<td class="shard-kind">sentinel</td>' in row
    assert f"master 127.0.0.1:{old}" in row
    replicas = sorted(f"127.0.0.1:{port}" for port in sentinel.nodes if port != old)
    assert f"replicas {', '.join(replicas)}" in row
    assert WHEN.findall(row) == ["never"]
    plain = shard_row(browser, "s0")
    assert '<td class="shard-kind">single</td>' in plain and WHEN.findall(plain) == ["never"]

    killed_at = time.time()
    sentinel.nodes[old].kill()
    new = wait_until(
        lambda: (port := sentinel.master_port()) not in (None, old) and port,
        timeout=60,
        interval=0.2,
        message="the Sentinels promote a replica",
    )

    def after_failover() -> str | None:
        row = shard_row(browser, "ha")
        followed = WHEN.findall(row) != ["never"] and f"master 127.0.0.1:{new}" in row
        return row if followed and "1 of 1 broker(s) connected" in row else None

    row = wait_until(after_failover, timeout=60, interval=0.5, message="the page shows the failover")
    [when] = WHEN.findall(row)
    seen = calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))
    assert int(killed_at) <= seen <= time.time()  # broker wall clock: after the kill, not after now
    assert "followed)" in row
    assert WHEN.findall(shard_row(browser, "s0")) == ["never"]  # the plain shard never failed over
    # The killed master is no replica that is up: once Sentinel flags it down, the page leaves it out.
    wait_until(
        lambda: f"127.0.0.1:{old}" not in shard_row(browser, "ha"),
        timeout=60,
        interval=0.5,
        message="the killed master is left out of the replicas",
    )

    # The CLI reads the same reports.
    listing = cluster.cli("shards", "list")
    assert listing.returncode == 0, listing.stderr
    [line] = [row for row in listing.stdout.splitlines() if row.startswith("ha ")]
    assert line.split()[1] == "sentinel"
    assert f"master 127.0.0.1:{new}" in line
    cli_when = re.search(r"last failover (\S+?)[ ,\]]", line)
    assert cli_when, line
    # the same time, or a later one when Sentinel moved the master once more in between
    assert calendar.timegm(time.strptime(cli_when.group(1), "%Y-%m-%dT%H:%M:%SZ")) >= seen
    [plain_line] = [row for row in listing.stdout.splitlines() if row.startswith("s0 ")]
    assert plain_line.split()[1] == "single" and "[brokers: 1 of 1 connected]" in plain_line


@pytest.fixture(scope="module")
def cluster_deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("topology-panel-cluster")
    yield from with_broker(base, RedisCluster(base / "cluster", masters=3, replicas=1).start(), "cl")


def test_the_shard_page_shows_a_cluster_failover_and_the_promoted_master(cluster_deployment):
    cluster, redis_cluster, broker = cluster_deployment
    browser = PanelBrowser(broker.port)
    assert browser.login(OPERATOR, PASSWORD) == 302

    def reported() -> str | None:
        row = shard_row(browser, "cl")
        return row if "1 of 1 broker(s) connected" in row else None

    row = wait_until(reported, timeout=60, interval=0.5, message="the broker reports shard cl")
    assert '<td class="shard-kind">cluster</td>' in row
    assert "cluster of 3 masters (1+1+1 replicas)" in row
    victim = redis_cluster.masters()[0]
    assert f"master {victim.address} (replicas 127.0.0.1:" in row
    assert WHEN.findall(row) == ["never"]

    killed_at = time.time()
    victim.kill()
    redis_cluster.wait_healthy(timeout=60)  # a replica of the victim took its slots

    def after_failover() -> str | None:
        row = shard_row(browser, "cl")
        promoted = f"master {victim.address}" not in row and "cluster of 3 masters" in row
        return row if promoted and WHEN.findall(row) != ["never"] else None

    row = wait_until(after_failover, timeout=60, interval=0.5, message="the page shows the failover")
    [when] = WHEN.findall(row)
    assert int(killed_at) <= calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ")) <= time.time()
    [line] = [r for r in cluster.cli("shards", "list").stdout.splitlines() if r.startswith("cl ")]
    assert line.split()[1] == "cluster" and "last failover never" not in line and "followed)" in line
