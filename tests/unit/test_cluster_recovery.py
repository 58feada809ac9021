"""The per-channel recovery events a cluster shard link reports (one master lost, a slot moved), without
Redis: only the channels named are interrupted, told at most once, and filled in once live again."""

from __future__ import annotations

from app.engine.links import LinkOptions
from app.engine.recovery import Recovery
from app.engine.router import Router
from app.models import Shard
from app.subscription import Subscription
from tests.unit.test_links import Events, InstantLink, Sink


def setup(*keys: str):
    router = Router()
    recovery = Recovery(router)
    link = InstantLink(Shard("cl", "redis://h:1/0"), Events(), LinkOptions())
    sinks = {}
    for key in keys:
        sinks[key] = Sink()
        router.add(Subscription(sinks[key], key, key, key, None), link)
    return router, recovery, link, sinks


def test_a_lost_master_interrupts_only_its_channels_and_tells_them_once():
    router, recovery, link, sinks = setup("app::a", "app::b")
    router.routes[b"app::a"].last_position = "5-0"
    recovery.on_channels_down(link, [b"app::a"])
    recovery.on_channels_down(link, [b"app::a"])  # the reader fails again while the node is dead
    a, b = router.routes[b"app::a"], router.routes[b"app::b"]
    assert a.needs_fill and a.down and not b.needs_fill and not b.down
    assert len(sinks["app::a"].payloads) == 1 and b"shard_unavailable" in bytes(sinks["app::a"].payloads[0])
    assert sinks["app::b"].payloads == []


def test_channels_of_another_link_are_not_touched():
    router, recovery, _link, sinks = setup("app::a")
    other = InstantLink(Shard("x", "redis://h:2/0"), Events(), LinkOptions())
    recovery.on_channels_down(other, [b"app::a"])
    recovery.on_channels_moving(other, [b"app::a"])
    assert not router.routes[b"app::a"].needs_fill and sinks["app::a"].payloads == []


def test_a_moving_slot_is_filled_in_without_telling_anyone():
    router, recovery, link, sinks = setup("app::a", "app::new")
    router.routes[b"app::a"].last_position = "5-0"
    recovery.on_channels_moving(link, [b"app::a", b"app::new"])
    assert router.routes[b"app::a"].needs_fill and not router.routes[b"app::a"].down
    # Never live yet: its subscribe reads the tail once live, a fill from 0-0 would replay everything.
    assert not router.routes[b"app::new"].needs_fill
    assert sinks["app::a"].payloads == [] and sinks["app::new"].payloads == []
