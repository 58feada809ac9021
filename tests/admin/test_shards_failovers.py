"""The shard page's Failovers column: what the live brokers report in their stats documents.

The documents are written to the real config Redis the way a broker writes them
(:func:`app.cluster.store_node_stats`), so the panel reads them as in production; the failover itself is
tested end to end in ``tests/integration/test_shard_topology_panel.py``."""

from __future__ import annotations

import html
import re
import time

import orjson

from app.cluster import NODE_TTL, store_node_stats
from app.config_store import ConfigStore
from app.models import Shard
from app.shard_reports import format_failover


def report(store: ConfigStore, node: str, ts: float, **shards: dict) -> None:
    store_node_stats(store.redis, node, orjson.dumps({"node": node, "ts": ts, "data": {"shards": shards}}))


def row(client, name: str) -> str:
    page = client.get("/shards/").get_data(as_text=True)
    match = re.search(rf'<tr data-shard="{name}">(.*?)</tr>', page, re.DOTALL)
    assert match, page
    return html.unescape(match.group(1))


def entry(master: str, failovers: int, last: float | None, up: int = 1) -> dict:
    return {
        "up": up,
        "kind": "sentinel",
        "master": master,
        "replicas": [],
        "failovers": failovers,
        "last_failover": last,
    }


def test_the_latest_failover_of_the_live_brokers_is_shown_with_how_many_followed(own, private_redis):
    client, store = own
    store.set_shards([Shard("main", private_redis.url)])
    now = time.time()
    report(store, "a", now, main=entry("127.0.0.1:1", 3, now - 100))
    report(store, "b", now, main=entry("127.0.0.1:1", 1, now - 10))
    report(store, "dead", now - NODE_TTL - 5, main=entry("127.0.0.1:9", 9, now))  # stopped beating
    shown = row(client, "main")
    assert f'<span class="last-failover">{format_failover(now - 10)}</span>' in shown
    assert "(3 followed)" in shown
    assert "2 of 2 broker(s) connected" in shown
    assert "disagree" not in shown
    assert '<td class="shard-kind">single</td>' in shown  # the kind its URL names


def test_brokers_naming_different_masters_are_pointed_out(own, private_redis):
    client, store = own
    store.set_shards([Shard("main", private_redis.url)])
    now = time.time()
    report(store, "a", now, main=entry("127.0.0.1:1", 1, now - 5))
    report(store, "b", now, main=entry("127.0.0.1:2", 0, None, up=0))
    shown = row(client, "main")
    assert "1 of 2 broker(s) connected" in shown
    assert "brokers disagree on the master: 127.0.0.1:1, 127.0.0.1:2" in shown


def test_without_a_live_broker_the_page_says_so(own, private_redis):
    client, store = own
    store.set_shards([Shard("main", private_redis.url)])
    assert "no live broker reports it" in row(client, "main")
    assert 'class="last-failover"' not in row(client, "main")
