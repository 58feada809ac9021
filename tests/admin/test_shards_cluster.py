"""The shard page with a Redis Cluster shard: the form takes a redis+cluster:// URL, the page shows the
cluster's masters and replicas, and a URL no node answers for is refused."""

from __future__ import annotations

import pytest

from app.models import Shard
from tests.support.redis_cluster import RedisCluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    cluster = RedisCluster(tmp_path_factory.mktemp("panel-cluster"), masters=3, replicas=1).start()
    yield cluster
    cluster.stop()


def form(*shards: tuple[str, str], action: str) -> dict[str, str]:
    data = {"action": action}
    for index, (name, url) in enumerate(shards):
        data[f"shards-{index}-name"] = name
        data[f"shards-{index}-url"] = url
    return data


def test_a_cluster_shard_is_saved_and_shown_with_its_topology(own, private_redis, redis_cluster):
    client, store = own
    proposed = form(("main", private_redis.url), ("cl", redis_cluster.url), action="save")
    saved = client.post("/shards/", proposed)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    assert store.shards() == (Shard("main", private_redis.url), Shard("cl", redis_cluster.url))
    page = client.get("/shards/").get_data(as_text=True)
    assert page.count('class="status ok">up') == 2
    assert "cluster of 3 masters (1+1+1 replicas)" in page


def test_a_cluster_url_nobody_answers_for_is_refused(own, private_redis):
    client, store = own
    refused = client.post("/shards/", form(("cl", "redis+cluster://127.0.0.1:1"), action="save"))
    assert refused.status_code == 400
    assert "no node of the cluster answered" in refused.get_data(as_text=True)
    assert store.shards() == ()
