"""Every way a shard list comes in takes Sentinel and Cluster URLs, against real Sentinels and cluster nodes.

``shards add`` (then a broker publishes through the new shard), ``import-config`` and the panel's import
of an ``apps.yaml`` with a ``shards`` list, and the panel's shard form driven in headless Chromium. One
master with two replicas under three Sentinels, a three-master cluster with a replica each (Redis 7 from
/usr/bin), a plain shard and one broker, which also serves the panel.
"""

from __future__ import annotations

import shutil

import pytest
import redis

from admin.users import set_password
from app.channels import channel_key
from app.models import Shard
from tests.support.panel_http import META_TOKEN, PanelBrowser
from tests.support.processes import wait_until
from tests.support.redis_cluster import RedisCluster
from tests.support.sentinel import MASTER_NAME, SentinelDeployment
from tests.support.sharded import APP, SECRET, ShardedCluster, data_messages

OPERATOR, PASSWORD = "operator", "a long enough password"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("shard-urls")
    sentinel = SentinelDeployment(base / "ha").start()
    redis_cluster = RedisCluster(base / "cluster", masters=3, replicas=1).start()
    cluster = ShardedCluster(base, shard_count=1)
    try:
        cluster.start()
        set_password(cluster.store, OPERATOR, PASSWORD)
        broker = cluster.broker({"COBRA_SHARD_PROBE_INTERVAL": "0.5"})
        yield cluster, sentinel, redis_cluster, broker
    finally:
        cluster.stop()
        redis_cluster.stop()
        sentinel.stop()


@pytest.fixture
def plain_only(deployment):
    """Each test starts from the plain shard alone."""
    cluster = deployment[0]
    cluster.store.set_shards(cluster.shard_list())
    return deployment


def listed_line(cluster: ShardedCluster, name: str) -> str:
    listing = cluster.cli("shards", "list")
    assert listing.returncode == 0, listing.stderr
    [line] = [row for row in listing.stdout.splitlines() if row.startswith(f"{name} ")]
    return line


def publish_reaches_subscriber(cluster: ShardedCluster, broker, shard: str, prefix: str) -> str:
    """Publish on a channel of ``shard`` through the broker until a subscriber gets it (the broker
    picks the new list up live); the channel."""
    [channel] = cluster.channels_on(shard, 1, prefix=prefix)
    subscriber = cluster.client(broker, timeout=30)
    subscriber.subscribe(channel)
    publisher = cluster.client(broker, timeout=30)
    body = publisher.publish(channel, {"via": shard})
    [got] = data_messages(subscriber, 1, timeout=30)
    assert (got["position"], got["message"]) == (body["position"], {"via": shard})
    return channel


def test_shards_add_takes_a_sentinel_url_and_a_broker_publishes_to_its_master(plain_only):
    cluster, sentinel, _redis_cluster, broker = plain_only
    added = cluster.cli("shards", "add", "ha", sentinel.url)
    assert added.returncode == 0, added.stderr
    assert "added shard ha" in added.stdout
    assert cluster.store.shards()[-1] == Shard("ha", sentinel.url)
    master = wait_until(sentinel.master_port, timeout=30, message="the Sentinels agree on a master")
    line = listed_line(cluster, "ha")
    assert line.split()[1] == "sentinel" and "reachable" in line
    assert f"master 127.0.0.1:{master}" in line
    for port in sentinel.nodes:
        if port != master:
            assert f"127.0.0.1:{port}" in line  # its replicas

    wait_until(
        lambda: "[brokers: 1 of 1 connected" in listed_line(cluster, "ha"),
        timeout=60,
        interval=0.5,
        message="the broker connects the new shard",
    )
    channel = publish_reaches_subscriber(cluster, broker, "ha", "sentinel")
    client = redis.Redis(port=master, socket_timeout=5)
    try:
        assert client.xlen(channel_key(APP, channel)) == 1  # the history is on the Sentinels' master
    finally:
        client.close()


def test_shards_add_takes_a_cluster_url_and_a_broker_publishes_through_the_cluster(plain_only):
    cluster, _sentinel, redis_cluster, broker = plain_only
    added = cluster.cli("shards", "add", "cl", redis_cluster.url)
    assert added.returncode == 0, added.stderr
    line = listed_line(cluster, "cl")
    assert line.split()[1] == "cluster"
    assert "reachable, cluster of 3 masters (1+1+1 replicas)" in line
    wait_until(
        lambda: "[brokers: 1 of 1 connected" in listed_line(cluster, "cl"),
        timeout=60,
        interval=0.5,
        message="the broker connects the cluster shard",
    )
    publish_reaches_subscriber(cluster, broker, "cl", "cluster")


def apps_yaml(shards: list[tuple[str, str]]) -> str:
    rows = "".join(f"  - name: {name}\n    url: '{url}'\n" for name, url in shards)
    return (
        "apps:\n"
        f"  {APP}:\n"
        "    roles:\n"
        "      pubsub:\n"
        f"        secret: {SECRET}\n"
        "        permissions: [publish, subscribe, read, write, delete]\n"
        f"shards:\n{rows}"
    )


def test_import_config_takes_sentinel_and_cluster_urls(plain_only, tmp_path):
    cluster, sentinel, redis_cluster, _broker = plain_only
    plain = cluster.shard_list()[0]
    wanted = [(plain.name, plain.url), ("ha", sentinel.url), ("cl", redis_cluster.url)]
    path = tmp_path / "apps.yaml"
    path.write_text(apps_yaml(wanted))
    checked = cluster.cli("import-config", "--check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "it would set the shard list to: s0, ha, cl" in checked.stdout
    assert cluster.store.shards() == (plain,)  # --check writes nothing
    imported = cluster.cli("import-config", str(path))
    assert imported.returncode == 0, imported.stderr
    assert "shard list now: s0, ha, cl" in imported.stdout
    assert cluster.store.shards() == tuple(Shard(name, url) for name, url in wanted)

    # A Sentinel nobody answers for: the whole file is refused, nothing written.
    cluster.store.set_shards(cluster.shard_list())
    path.write_text(apps_yaml([*wanted[:1], ("dead", f"redis+sentinel://127.0.0.1:1/{MASTER_NAME}")]))
    refused = cluster.cli("import-config", str(path))
    assert refused.returncode != 0
    assert "dead" in refused.stderr and "not answering PING" in refused.stderr
    assert cluster.store.shards() == (plain,)


def test_the_panels_import_takes_sentinel_and_cluster_urls(plain_only):
    cluster, sentinel, redis_cluster, broker = plain_only
    plain = cluster.shard_list()[0]
    wanted = [(plain.name, plain.url), ("ha", sentinel.url), ("cl", redis_cluster.url)]
    browser = PanelBrowser(broker.port)
    assert browser.login(OPERATOR, PASSWORD) == 302
    token = browser.token("/admin/config/")
    status, _headers, page = browser.request(
        "POST", "/admin/config/import", {"csrf_token": token, "text": apps_yaml(wanted)}
    )
    assert status == 200, page[-2000:]
    assert 'id="import-shards"' in page and "<code>ha</code>" in page and "<code>cl</code>" in page
    assert cluster.store.shards() == tuple(Shard(name, url) for name, url in wanted)

    cluster.store.set_shards(cluster.shard_list())
    dead = apps_yaml([*wanted[:1], ("dead", "redis+cluster://127.0.0.1:1")])
    status, _headers, page = browser.request(
        "POST", "/admin/config/import", {"csrf_token": META_TOKEN.search(page).group(1), "text": dead}
    )
    assert status == 400 and "shard dead does not answer PING" in page
    assert cluster.store.shards() == (plain,)


def test_the_panels_shard_form_in_chromium_saves_a_sentinel_url_and_shows_its_master(plain_only, tmp_path):
    from tests.admin.test_browser import CHROMIUM, CHROMIUM_ARGS, browser_or_skip

    sync_playwright = browser_or_skip()
    cluster, sentinel, _redis_cluster, broker = plain_only
    master = wait_until(sentinel.master_port, timeout=30, message="the Sentinels agree on a master")
    base = broker.http + "/admin/"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=shutil.which("chromium") or CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            page.on("dialog", lambda dialog: dialog.accept())
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base)
            page.fill("#username", OPERATOR)
            page.fill("#password", PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(base)
            page.get_by_role("link", name="Shards").click()
            page.get_by_role("button", name="+ Add shard").click()
            page.locator(".shard-name").last.fill("ha")
            page.locator(".shard-url").last.fill(sentinel.url)
            page.get_by_role("button", name="Check and preview").click()
            page.locator("#move-fraction").wait_for()
            page.get_by_role("button", name="Save this list").click()
            page.get_by_text("Shard list saved").wait_for()
            row = page.locator('tr[data-shard="ha"]')
            assert row.locator(".shard-kind").inner_text() == "sentinel"
            text = row.inner_text()
            assert f"master 127.0.0.1:{master}" in text
            replicas = sorted(f"127.0.0.1:{port}" for port in sentinel.nodes if port != master)
            assert f"replicas {', '.join(replicas)}" in text

            def reported() -> bool:  # the broker reports the new shard about once a second
                page.reload()
                return "1 of 1 broker(s) connected" in row.inner_text()

            wait_until(reported, timeout=60, interval=0.5, message="the page shows the broker's report")
            assert row.locator(".last-failover").inner_text() == "never"  # no failover yet
            assert errors == [], errors
        finally:
            context.close()
    assert cluster.store.shards()[-1] == Shard("ha", sentinel.url)
