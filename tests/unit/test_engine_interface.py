"""The Redis engine offers every method of the engine interface, with the interface's signature: the
broker and the handlers are written against EngineAPI and may be handed either engine."""

from __future__ import annotations

import inspect

import pytest

from app.engine import Engine, EngineAPI

METHODS = [
    name for name, value in vars(EngineAPI).items() if inspect.isfunction(value) and not name.startswith("_")
]


def test_the_interface_has_the_methods_the_broker_relies_on():
    assert {"publish", "subscribe", "replay", "drain", "shard_statuses", "ping_shards"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_the_redis_engine_implements_it_with_the_same_signature(name):
    wanted = inspect.signature(getattr(EngineAPI, name))
    offered = inspect.signature(getattr(Engine, name))
    assert list(offered.parameters) == list(wanted.parameters)
    assert [p.default for p in offered.parameters.values()] == [p.default for p in wanted.parameters.values()]
