"""The lease of a view republish rule (app.view_rules), against a real Redis: one runner of several holds
each rule, gives it back on stop, loses it when another took it, and the holder publishes each window's
rows to the target as one batch. The runners run on in-memory engines (no shards needed) and are ticked by
hand, so each rule of the lease is one step."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
import redis

from app.channels import channel_key
from app.engine.history import HistoryPolicy
from app.engine.memory import MemoryEngine
from app.models import App, AppSettings, ConfigSnapshot, RepublishRule
from app.view_rules import ViewRuleRunner, lease_key
from app.windows import process_scheduler

POLICY = HistoryPolicy(10, 0)


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


@pytest.fixture
def setup(client):
    app_key = f"lease-{uuid.uuid4().hex[:8]}"
    rule = RepublishRule("select data.kind, count(*) as n from `src` group by data.kind", "summary")
    snapshot = ConfigSnapshot(apps={app_key: App(key=app_key, settings=AppSettings(republish_rules=(rule,)))})

    def runner(name: str) -> tuple[ViewRuleRunner, MemoryEngine]:
        engine = MemoryEngine()
        made = ViewRuleRunner(client, engine, lambda: snapshot, lambda _: POLICY, lambda: name, lambda: 1000)
        runners.append(made)
        return made, engine

    runners: list[ViewRuleRunner] = []
    yield app_key, rule, runner
    for made in runners:
        made.stop()


def subscribed(engine: MemoryEngine, app_key: str) -> int:
    """Subscriptions of the rule's source channel: a view's sit apart from the filter groups."""
    route = engine.router.routes.get(channel_key(app_key, "src").encode())
    return 0 if route is None else sum(len(subs) for _, subs in route.views.values())


def test_one_runner_of_two_holds_a_rule(setup, client):
    app_key, rule, runner = setup
    (first, first_engine), (second, second_engine) = runner("a"), runner("b")
    first.tick()
    second.tick()
    assert list(first.held) == [lease_key(app_key, rule)] and second.held == {}
    assert client.get(lease_key(app_key, rule)).decode().startswith("a ")
    assert client.pttl(lease_key(app_key, rule)) > 0  # it expires if nobody renews it
    assert subscribed(first_engine, app_key) == 1 and subscribed(second_engine, app_key) == 0
    second.tick()  # still held, renewed by its holder
    first.tick()
    assert second.held == {} and list(first.held) == [lease_key(app_key, rule)]


def test_a_stopped_holder_gives_the_rule_back_and_the_other_takes_it(setup, client):
    app_key, rule, runner = setup
    (first, first_engine), (second, second_engine) = runner("a"), runner("b")
    first.tick()
    first.stop()
    assert client.get(lease_key(app_key, rule)) is None
    assert subscribed(first_engine, app_key) == 0
    second.tick()
    assert list(second.held) == [lease_key(app_key, rule)] and subscribed(second_engine, app_key) == 1


def test_an_expired_lease_is_taken_over(setup, client):
    app_key, rule, runner = setup
    (first, _), (second, _) = runner("a"), runner("b")
    first.tick()  # then "dies": it never ticks again
    client.pexpire(lease_key(app_key, rule), 50)
    time.sleep(0.2)
    second.tick()
    assert list(second.held) == [lease_key(app_key, rule)]
    first.tick()  # back from a stall: its renewal fails, it stops aggregating, and does not take it back
    assert first.held == {}
    assert client.get(lease_key(app_key, rule)).decode().startswith("b ")


def test_a_lease_taken_by_another_stops_the_holder(setup, client):
    app_key, rule, runner = setup
    first, first_engine = runner("a")
    first.tick()
    client.set(lease_key(app_key, rule), "someone-else token")
    first.tick()
    assert first.held == {} and subscribed(first_engine, app_key) == 0
    assert client.get(lease_key(app_key, rule)) == b"someone-else token"  # not deleted by the loser


def test_a_removed_rule_is_released(setup, client):
    app_key, rule, runner = setup
    first, first_engine = runner("a")
    first.tick()
    first.snapshot = lambda: ConfigSnapshot()
    first.tick()
    assert first.held == {} and subscribed(first_engine, app_key) == 0
    assert client.get(lease_key(app_key, rule)) is None


def test_a_shard_down_keeps_the_lease_and_subscribes_once_it_is_back(setup, client):
    app_key, rule, runner = setup
    first, engine = runner("a")
    engine.available = False
    first.tick()
    assert list(first.held) == [lease_key(app_key, rule)] and subscribed(engine, app_key) == 0
    engine.available = True
    first.tick()
    assert subscribed(engine, app_key) == 1


def test_the_holder_publishes_each_window_as_one_batch_of_rows(setup, client):
    app_key, rule, runner = setup
    first, engine = runner("a")
    first.tick()
    for kind in ("b", "a", "b"):
        engine.publish_and_wait(channel_key(app_key, "src"), orjson.dumps({"data": {"kind": kind}}), POLICY)
    process_scheduler().run_due(time.time() + 2)  # the window ends
    message, _ = engine.read(channel_key(app_key, "summary"))
    assert orjson.loads(message) == {"messages": [{"data.kind": "a", "n": 1}, {"data.kind": "b", "n": 2}]}
    assert first.held[lease_key(app_key, rule)].published == 1
