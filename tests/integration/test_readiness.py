"""Liveness and readiness: ``/health/`` never touches Redis; ``/ready/`` (also ``/health/ready/``) answers
503, saying why, while the config store or any shard is unreachable, and 200 again once it is back."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from app.config_store import ConfigStore
from app.models import Shard
from tests.conftest import make_test_apps
from tests.support.processes import BrokerProcess, RedisProcess, wait_until


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def sharded(tmp_path):
    """A broker on its own config Redis (which is also shard ``one``) plus a second shard ``two``."""
    config, second = RedisProcess(tmp_path / "config"), RedisProcess(tmp_path / "two")
    config.start()
    second.start()
    store = ConfigStore.from_url(config.url)
    store.put_apps(make_test_apps())
    store.ensure_well_known_apps()
    store.set_shards([Shard("one", config.url), Shard("two", second.url)])
    broker = BrokerProcess(config.url, tmp_path).start()
    yield broker, config, second
    broker.stop()
    second.stop()
    config.stop()


@pytest.mark.parametrize("path", ["/ready/", "/health/ready/"])
def test_ready_when_the_config_store_and_every_shard_answer(sharded, path):
    broker, _, _ = sharded
    assert wait_until(lambda: get(broker.http + path) == (200, "ready\n"), message="ready")


def test_a_dead_shard_turns_readiness_red_until_it_is_back(sharded):
    broker, _, second = sharded
    wait_until(lambda: get(broker.http + "/ready/")[0] == 200, message="ready")
    second.stop(kill=True)
    _, body = wait_until(
        lambda: (answer := get(broker.http + "/ready/"))[0] == 503 and answer, message="not ready"
    )
    assert body.startswith("not ready\n")
    assert "shard two" in body and "config store" not in body
    assert get(broker.http + "/health/") == (200, "OK\n")  # liveness is not readiness
    second.start()
    wait_until(lambda: get(broker.http + "/ready/") == (200, "ready\n"), timeout=30, message="ready again")


def test_an_unreachable_config_store_turns_readiness_red(sharded):
    broker, config, _ = sharded
    wait_until(lambda: get(broker.http + "/ready/")[0] == 200, message="ready")
    config.stop(kill=True)
    _, body = wait_until(
        lambda: (answer := get(broker.http + "/ready/"))[0] == 503 and answer, message="not ready"
    )
    assert "config store: unreachable" in body
    assert get(broker.http + "/health/") == (200, "OK\n")
    config.start()
    wait_until(lambda: get(broker.http + "/ready/") == (200, "ready\n"), timeout=30, message="ready again")
