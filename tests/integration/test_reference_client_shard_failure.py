"""The reference ``cobras`` subscriber, unchanged, lives through a shard kill and restart (PROTOCOL §7 MUST).

The ``cobras`` client hands every ``rtm/subscription/*`` PDU to the subscription's data handler: it reads
``body["messages"]`` and asserts ``body["position"]``. The ``rtm/subscription/error`` a shard outage sends
must carry both, or the subscriber dies on the first outage and never sees the channel come back.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from app.client import CobraError
from app.config_store import dump_apps_yaml
from tests.support.processes import wait_until
from tests.support.reference import install_reference_cli, reference_env
from tests.support.sharded import APP, SECRET, Collector, ShardedCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_cli() -> Path:
    return install_reference_cli()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployment = ShardedCluster(tmp_path_factory.mktemp("reference-shards")).start(history_max_length=1000)
    yield deployment
    deployment.stop()


def received_numbers(log: Path) -> list[int]:
    """The ``n`` of every message the cobras subscriber logged (``{'n': 3} at position ...``)."""
    return [int(n) for n in re.findall(r"\{'n': (\d+)\} at position ", log.read_text())]


def test_the_reference_subscriber_keeps_receiving_through_a_shard_kill_and_restart(
    cluster, reference_cli, tmp_path
):
    broker = cluster.broker({"COBRA_SHARD_PROBE_INTERVAL": "0.5"})
    channel = cluster.channels_on("s1", 1, prefix="reference")[0]
    apps_yaml = tmp_path / "apps.yaml"
    apps_yaml.write_text(dump_apps_yaml(cluster.store.list_apps().values()))
    log = tmp_path / "subscribe.log"
    with open(log, "w") as out:
        subscriber = subprocess.Popen(
            [
                str(reference_cli),
                "--verbose",
                "subscribe",
                f"--endpoint=ws://127.0.0.1:{broker.port}",
                f"--appkey={APP}",
                "--rolename=pubsub",
                f"--rolesecret={SECRET}",
                f"--channel={channel}",
                "--disable_debug_memory",
            ],
            env=reference_env(apps_yaml),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "rtm/subscribe/ok" in log.read_text(), timeout=30, message="subscribe/ok")
        publisher = cluster.client(broker, timeout=30)
        observer = cluster.client(broker, timeout=30)  # tells us when the outage PDU went out
        observer.subscribe(channel)
        collector = Collector(observer)
        publisher.publish(channel, {"n": 1})
        wait_until(lambda: received_numbers(log) == [1], timeout=30, message="the first message")

        server = cluster.shards["s1"]
        server.stop(kill=True)
        try:
            wait_until(lambda: "shard_unavailable" in collector.error_codes(), timeout=30, message="told")
            [error] = collector.errors
            assert error["body"]["messages"] == [] and error["body"]["position"]
            # The cobras subscriber got the same PDU at the same moment (it does not log it); a malformed
            # one kills it at once, so a second is ample for it to have died.
            time.sleep(1.0)
            assert subscriber.poll() is None, log.read_text()
        finally:
            server.start()

        acked = [1]
        n = 1

        def publish_next() -> bool:
            nonlocal n
            n += 1
            try:
                publisher.publish(channel, {"n": n})
                acked.append(n)
            except CobraError:
                pass
            return len(acked) >= 11

        wait_until(publish_next, timeout=60, interval=0.05, message="publishing again")
        wait_until(
            lambda: len(received_numbers(log)) >= len(acked) or subscriber.poll() is not None,
            timeout=30,
            message="the cobras subscriber catching up",
        )
        assert subscriber.poll() is None, log.read_text()
        assert received_numbers(log) == acked  # everything acknowledged, once, in order, no resubscribe
        collector.stop()
    finally:
        subscriber.terminate()
        subscriber.wait(10)
