"""The optional ``shards`` list of an apps.yaml: any shard kind, names once, nothing else."""

from __future__ import annotations

import pytest

from app.config_store import ConfigError, read_apps_yaml
from app.models import Shard

APPS = "apps: {}\n"


def test_a_file_without_shards_leaves_the_list_alone():
    assert read_apps_yaml(APPS).shards is None


def test_every_shard_kind_is_taken_in_order():
    parsed = read_apps_yaml(
        APPS
        + "shards:\n"
        + "  - {name: s0, url: 'redis://127.0.0.1:6379/0'}\n"
        + "  - {name: ha, url: 'redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster'}\n"
        + "  - {name: cl, url: 'redis+cluster://127.0.0.1:7000,127.0.0.1:7001'}\n"
    )
    assert parsed.shards == (
        Shard("s0", "redis://127.0.0.1:6379/0"),
        Shard("ha", "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster"),
        Shard("cl", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
    )


def test_an_empty_list_means_the_config_redis_alone():
    assert read_apps_yaml(APPS + "shards: []\n").shards == ()


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ("{s0: 'redis://h'}", "must be a list"),
        ("[{name: s0}]", "exactly 'name' and 'url'"),
        ("[{name: s0, url: 'redis://h', weight: 2}]", "exactly 'name' and 'url'"),
        ("[{name: s0, url: 'http://h'}]", "shard 1 ('s0')"),
        ("[{name: ha, url: 'redis+sentinel://127.0.0.1:26379'}]", "shard 1 ('ha')"),
        ("[{name: a, url: 'redis://h'}, {name: a, url: 'redis://i'}]", "listed twice"),
    ],
)
def test_malformed_shard_lists_are_refused_with_the_entry_named(shards, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_apps_yaml(APPS + f"shards: {shards}\n")
