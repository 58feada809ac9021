"""Shards: health of each node, validation (unique names, a Redis URL, answers PING), the preview of how
many channels move, and saving. These tests use a config Redis of their own: the shard list is global."""

from __future__ import annotations

import re
from pathlib import Path

import gevent
import pytest

import app.shards as app_shards
from admin.shards import mask_url
from app.embedded_redis import free_port
from app.models import Shard
from app.shards import ShardRing, predicted_move_fraction
from app.shards import predicted_shard_move_fraction as moved_fraction
from tests.support.processes import RedisProcess


@pytest.fixture
def extra_redis(tmp_path: Path):
    servers = []

    def start(password: str | None = None) -> RedisProcess:
        server = RedisProcess(tmp_path / f"shard-{len(servers)}", password=password)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def shard_form(*shards: tuple[str, str], action: str = "preview") -> dict[str, str]:
    data = {"action": action}
    for index, (name, url) in enumerate(shards):
        data[f"shards-{index}-name"] = name
        data[f"shards-{index}-url"] = url
    return data


def test_without_a_list_the_config_redis_is_shown_with_its_health(own, private_redis):
    client, _ = own
    html = client.get("/shards/").get_data(as_text=True)
    assert "(config Redis)" in html
    assert f"redis://127.0.0.1:{private_redis.port}/0" in html
    assert 'class="status ok">up' in html
    assert "Redis 6." in html or "Redis 7." in html


def test_preview_then_save_a_new_shard(own, private_redis, extra_redis):
    client, store = own
    second = extra_redis()
    proposed = shard_form(("main", private_redis.url), ("second", second.url))
    preview = client.post("/shards/", proposed)
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    # "main" is the config Redis itself: only the channels the ring gives to "second" change node.
    ring = ShardRing(["main", "second"])
    expected = sum(ring.node_for(f"app{i % 97}::channel-{i}") == "second" for i in range(20_000)) / 200
    assert f'id="move-fraction">{expected:.1f}%' in html
    assert 'id="save-shards"' in html
    assert store.shards() == ()  # a preview changes nothing
    saved = client.post("/shards/", proposed | {"action": "save"})
    assert saved.status_code == 302
    assert store.shards() == (Shard("main", private_redis.url), Shard("second", second.url))
    entry = next(e for _, e in store.audit_entries(10) if e["action"] == "shards.save")
    assert "second=" in entry["details"] and "moved=" in entry["details"]
    page = client.get("/shards/").get_data(as_text=True)
    assert page.count('class="status ok">up') == 2


def test_the_preview_estimates_the_moved_fraction(own, private_redis, extra_redis):
    client, store = own
    second, third = extra_redis(), extra_redis()
    store.set_shards([Shard("a", private_redis.url), Shard("b", second.url)])
    preview = client.post(
        "/shards/", shard_form(("a", private_redis.url), ("b", second.url), ("c", third.url))
    )
    shown = float(re.search(r'id="move-fraction">([0-9.]+)%', preview.get_data(as_text=True)).group(1))
    expected = predicted_move_fraction(["a", "b"], ["a", "b", "c"]) * 100
    assert shown == pytest.approx(expected, abs=0.1)
    assert 20 < shown < 50  # about a third of the channels go to the new node


def test_reordering_moves_nothing(own, private_redis, extra_redis):
    client, store = own
    second = extra_redis()
    store.set_shards([Shard("a", private_redis.url), Shard("b", second.url)])
    preview = client.post("/shards/", shard_form(("b", second.url), ("a", private_redis.url)))
    assert 'id="move-fraction">0.0%' in preview.get_data(as_text=True)
    client.post("/shards/", shard_form(("b", second.url), ("a", private_redis.url), action="save"))
    assert [s.name for s in store.shards()] == ["b", "a"]


def test_a_new_address_under_the_same_name_moves_that_shard():
    old = [Shard("a", "redis://h1:1/0"), Shard("b", "redis://h2:1/0")]
    new = [Shard("a", "redis://h1:1/0"), Shard("b", "redis://h3:1/0")]
    assert 0.3 < moved_fraction(old, new, "redis://config/0") < 0.7
    assert moved_fraction(old, old, "redis://config/0") == 0.0


def test_naming_the_config_redis_as_the_only_shard_moves_nothing():
    config = "redis://config:6379/0"
    assert moved_fraction([], [Shard("main", config)], config) == 0.0
    assert moved_fraction([Shard("main", config)], [], config) == 0.0
    assert moved_fraction([], [Shard("elsewhere", "redis://other:1/0")], config) == 1.0


def test_a_shard_that_does_not_answer_is_refused(own, private_redis):
    client, store = own
    dead = f"redis://127.0.0.1:{free_port()}/0"
    response = client.post("/shards/", shard_form(("main", private_redis.url), ("dead", dead), action="save"))
    assert response.status_code == 400
    assert "Does not answer PING" in response.get_data(as_text=True)
    assert store.shards() == ()


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ((("a", "http://x"),), "a shard URL starts with redis://"),
        ((("bad name", "redis://127.0.0.1:1/0"),), "shard name must be 1-64 characters"),
        ((("a", "redis://127.0.0.1:1/0"), ("a", "redis://127.0.0.1:2/0")), "Shard names must be unique."),
        ((("a", ""),), "This field is required."),
    ],
)
def test_invalid_lists_are_refused(own, shards, message):
    client, store = own
    response = client.post("/shards/", shard_form(*shards, action="save"))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert store.shards() == ()


def test_an_empty_list_goes_back_to_the_config_redis(own, private_redis):
    client, store = own
    store.set_shards([Shard("a", private_redis.url)])
    assert client.post("/shards/", {"action": "save"}).status_code == 302
    assert store.shards() == ()


def test_passwords_in_shard_urls_are_masked_and_kept(own, private_redis, extra_redis):
    client, store = own
    guarded = extra_redis(password="shard-password-123")
    store.set_shards([Shard("main", private_redis.url), Shard("guarded", guarded.url)])
    html = client.get("/shards/").get_data(as_text=True)
    assert "shard-password-123" not in html
    masked = mask_url(guarded.url)
    assert masked in html and "********" in masked
    # The masked URL sent back unchanged keeps the stored password.
    response = client.post(
        "/shards/", shard_form(("guarded", masked), ("main", private_redis.url), action="save")
    )
    assert response.status_code == 302
    assert store.shards() == (Shard("guarded", guarded.url), Shard("main", private_redis.url))
    assert not any("shard-password-123" in str(e) for _, e in store.audit_entries(50))


def test_a_cold_preview_does_not_stall_the_event_loop(own, private_redis, extra_redis):
    # The panel shares its process with the broker's WebSocket clients: while the page computes channel
    # shares and the move fraction (uncached: a list never seen before), other greenlets keep running.
    client, store = own
    second, third = extra_redis(), extra_redis()
    store.set_shards([Shard("a", private_redis.url), Shard("b", second.url)])
    app_shards._shard_move_fraction.cache_clear()
    app_shards._channel_shares.cache_clear()
    ticks = []

    def ticker():
        while True:
            gevent.sleep(0.01)
            ticks.append(1)

    background = gevent.spawn(ticker)
    gevent.sleep(0)
    try:
        form = shard_form(("a", private_redis.url), ("b", second.url), ("c", third.url), ("d", third.url))
        preview = client.post("/shards/", form)
    finally:
        background.kill()
    assert 'id="move-fraction">' in preview.get_data(as_text=True)
    assert app_shards._shard_move_fraction.cache_info().misses == 1  # it was computed, not remembered
    assert len(ticks) >= 2
