"""Shard kinds and the shard set, without Redis: a shard's URL scheme picks the class that links to it,
and reconfiguration keeps, replaces and moves what it should. The links here are a stand-in *kind* of
shard (what a Sentinel or Cluster link will be), not a fake of Redis: nothing below speaks RESP."""

from __future__ import annotations

import gevent.event
import pytest

from app.engine import links
from app.engine.links import LinkOptions, ShardLink, SingleNodeLink, open_link
from app.engine.recovery import Recovery
from app.engine.router import Router
from app.engine.shardset import ShardSet
from app.models import Shard
from app.shards import ShardRing
from app.subscription import Subscription


class Events:
    def on_message(self, link, channel, payload): ...
    def on_live(self, link, channel): ...
    def on_down(self, link): ...
    def on_batch_end(self): ...


class Sink:
    def __init__(self):
        self.payloads = []

    def send_payload(self, payload):
        self.payloads.append(payload)

    def send_push(self, counter, subscription_part, tail):
        self.payloads.append(tail)


class InstantLink(ShardLink):
    """A shard kind whose channels are live as soon as they are wanted."""

    made: list[InstantLink] = []

    def __init__(self, shard, events, options):
        super().__init__(shard)
        self.started = self.stopped = False
        self.channels: set[bytes] = set()
        InstantLink.made.append(self)

    def start(self):
        self.started = True

    def stop(self, timeout):
        self.stopped = True

    def subscribe(self, channel):
        self.channels.add(channel)
        ready = gevent.event.Event()
        ready.set()
        return ready

    def unsubscribe(self, channel):
        self.channels.discard(channel)


@pytest.fixture
def instant_kind(monkeypatch):
    InstantLink.made = []
    monkeypatch.setitem(links.LINK_KINDS, "redis", InstantLink)
    return InstantLink


def shard_set():
    router = Router()
    return ShardSet(router, Recovery(router), Events(), LinkOptions()), router


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/1", "unix:///tmp/redis.sock?db=2"])
def test_single_node_urls_get_a_single_node_link(url):
    link = open_link(Shard("s", url), Events(), LinkOptions())
    assert type(link) is SingleNodeLink and link.name == "s"
    link.client.close()


def test_an_unknown_scheme_is_refused():
    class Odd:
        name, url = "s", "sentinel://h:26379/mymaster"

    with pytest.raises(ValueError, match="sentinel"):
        open_link(Odd(), Events(), LinkOptions())  # type: ignore[arg-type]


def test_a_registered_kind_is_what_the_shard_set_builds(instant_kind):
    shards, _router = shard_set()
    shards.configure([Shard("a", "redis://a:6379/0"), Shard("b", "redis://b:6379/0")], "redis://config")
    assert [link.name for link in instant_kind.made] == ["a", "b"]
    assert all(link.started for link in instant_kind.made)
    ring = ShardRing(["a", "b"])
    assert shards.link_for("app::x").name == ring.node_for("app::x")


def test_an_empty_list_means_the_config_redis(instant_kind):
    shards, _router = shard_set()
    shards.configure([], "redis://config:6379/0")
    [link] = instant_kind.made
    assert link.shard.url == "redis://config:6379/0"


def test_the_same_list_again_changes_nothing(instant_kind):
    shards, _router = shard_set()
    listed = [Shard("a", "redis://a:6379/0")]
    shards.configure(listed, "redis://config")
    assert shards.configure(listed, "redis://config") == 0
    assert len(instant_kind.made) == 1


def test_a_shard_at_a_new_address_gets_a_new_link_and_its_channels_move(instant_kind):
    shards, router = shard_set()
    shards.configure([Shard("a", "redis://a:6379/0")], "redis://config")
    [old] = instant_kind.made
    router.add(Subscription(Sink(), "sid", "ch", "app::ch", None), old)
    assert shards.configure([Shard("a", "redis://elsewhere:6379/0")], "redis://config") == 1
    new = instant_kind.made[1]
    assert shards.links == {"a": new}
    assert router.routes[b"app::ch"].link is new and b"app::ch" in new.channels


def test_adding_a_shard_moves_only_the_channels_the_ring_gives_it(instant_kind):
    shards, router = shard_set()
    shards.configure([Shard("a", "redis://a:6379/0")], "redis://config")
    [a] = instant_kind.made
    keys = [f"app::ch{i}" for i in range(40)]
    for key in keys:
        router.add(Subscription(Sink(), key, key, key, None), a)
    moved = shards.configure([Shard("a", "redis://a:6379/0"), Shard("b", "redis://b:6379/0")], "redis://c")
    ring = ShardRing(["a", "b"])
    to_b = {key for key in keys if ring.node_for(key) == "b"}
    assert moved == len(to_b) > 0
    assert {key for key in keys if router.routes[key.encode()].link.name == "b"} == to_b
