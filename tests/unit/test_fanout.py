"""Fan-out in the engine's routing table, without Redis: one filter evaluation and one serialisation per
message, however many subscriptions share them (PROTOCOL §2 and §6)."""

from __future__ import annotations

import dataclasses
import json

from app import protocol
from app.engine.router import Router
from app.engine.routes import Route
from app.stream_sql import compile_filter
from app.subscription import Subscription


class Collector:
    def __init__(self):
        self.payloads = []

    def send_payload(self, payload):
        self.payloads.append(payload)

    def send_push(self, counter, subscription_part, tail):
        self.payloads.append(b"".join((protocol.PUSH_HEAD, b"%d" % counter, subscription_part, tail)))


def counting(stream_filter, calls):
    """The same compiled filter, with its apply() counted."""

    def apply(message):
        calls.append(message)
        return stream_filter.apply(message)

    return dataclasses.replace(stream_filter, apply=apply)


def engine_with_route(key: bytes) -> tuple[Router, Route]:
    engine = Router()
    route = engine.routes[key] = Route(key, link=None)  # type: ignore[arg-type]
    return engine, route


def subscribe(route, stream_filter, n, prefix="s"):
    sinks = []
    for i in range(n):
        sink = Collector()
        route.add(Subscription(sink, f"{prefix}{i}", "ch", "app::ch", stream_filter))
        sinks.append(sink)
    return sinks


def test_identical_filter_text_compiles_to_one_object():
    text = "select n from `ch` where n > 1"
    assert compile_filter(text) is compile_filter(text)


def test_subscriptions_sharing_a_filter_cost_one_evaluation_per_message():
    engine, route = engine_with_route(b"app::ch")
    calls = []
    shared = counting(compile_filter("select n from `ch` where n > 1"), calls)
    sinks = subscribe(route, shared, 1000)
    engine.route_message(None, b"app::ch", b'5-0 {"n": 2}')
    engine.route_message(None, b"app::ch", b'6-0 {"n": 0}')
    assert len(calls) == 2  # one per message, not one per subscriber
    assert all(len(s.payloads) == 1 for s in sinks)
    push = json.loads(sinks[0].payloads[0])
    assert push["body"] == {"subscription_id": "s0", "position": "5-0", "messages": [{"n": 2}]}


def test_distinct_filters_are_each_evaluated_once():
    engine, route = engine_with_route(b"app::ch")
    calls_a, calls_b = [], []
    subscribe(route, counting(compile_filter("select * from `ch` where n > 1"), calls_a), 10, "a")
    subscribe(route, counting(compile_filter("select * from `ch` where n < 1"), calls_b), 10, "b")
    subscribe(route, None, 10, "plain")
    engine.route_message(None, b"app::ch", b'1-0 {"n": 3}')
    assert (len(calls_a), len(calls_b)) == (1, 1)


def test_the_message_is_parsed_once_for_all_filters(monkeypatch):
    import app.engine.router as router

    parses = []
    real_loads = router._loads
    monkeypatch.setattr(router, "_loads", lambda raw: parses.append(raw) or real_loads(raw))
    engine, route = engine_with_route(b"app::ch")
    subscribe(route, compile_filter("select * from `ch` where n > 1"), 5, "a")
    subscribe(route, compile_filter("select n from `ch`"), 5, "b")
    engine.route_message(None, b"app::ch", b'1-0 {"n": 3}')
    assert len(parses) == 1


def test_unfiltered_pushes_embed_the_published_bytes_unchanged():
    engine, route = engine_with_route(b"app::ch")
    [sink] = subscribe(route, None, 1)
    engine.route_message(None, b"app::ch", b'7-1 {"a":[1,2,{"b":null}]}')
    assert sink.payloads[0].endswith(b'"position":"7-1","messages":[{"a":[1,2,{"b":null}]}]}}')


def test_messages_for_channels_without_local_subscribers_are_ignored():
    engine, _route = engine_with_route(b"app::ch")
    engine.route_message(None, b"app::other", b'1-0 {"n": 1}')  # no error, nothing to do
