"""The config store against a real Redis: compare-and-set of the shard list."""

from __future__ import annotations

import pytest

from app.config_store import ConfigError, ConfigStore
from app.models import Shard
from tests.support.processes import RedisProcess


@pytest.fixture
def fresh_store(tmp_path):
    server = RedisProcess(tmp_path / "r")
    server.start()
    yield ConfigStore.from_url(server.url)
    server.stop()


def test_shard_list_change_based_on_a_stale_read_is_refused(fresh_store):
    a, b = Shard("a", "redis://127.0.0.1:1/0"), Shard("b", "redis://127.0.0.1:2/0")
    seen = list(fresh_store.shards())  # what an operator looked at
    fresh_store.set_shards([a], expected=seen)  # someone else saves first
    with pytest.raises(ConfigError, match="changed meanwhile"):
        fresh_store.set_shards([b], expected=seen)
    assert fresh_store.shards() == (a,)
    fresh_store.set_shards([a, b], expected=[a])
    assert fresh_store.shards() == (a, b)


def test_every_change_bumps_the_version(fresh_store):
    before = fresh_store.version()
    fresh_store.set_shards([])
    assert fresh_store.version() == before + 1
