"""Reaching the config store from a shell, and saying which store that was."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from ..config_store import ConfigStore, wait_for_redis
from ..embedded_redis import EmbeddedRedis, find_running
from ..settings import add_settings_arguments, settings_from_args

STORE_SETTINGS = ["redis_url", "state_dir"]


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, STORE_SETTINGS)


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[ConfigStore]:
    with open_described_store(args) as (store, _where):
        yield store


@contextmanager
def open_described_store(args: argparse.Namespace) -> Iterator[tuple[ConfigStore, str]]:
    """The config store named by REDIS_URL; else the embedded Redis of a running broker; else an
    embedded Redis started just for this command (its data persists under the state folder).

    Also yields where that is, in words: a secret read from a local state folder may belong to another
    deployment than the broker a command talks to (a gunicorn one with its own REDIS_URL), and the user
    needs to know which store answered to see that."""
    settings = settings_from_args(args)
    embedded = None
    if settings.redis_url:
        url = settings.redis_url
        where = f"the config store at {_hide_password(url)} (REDIS_URL or --redis-url)"
    elif found := find_running(settings.state_path):
        url = found
        where = (
            f"the config store at {url}, the embedded Redis of the broker running on {settings.state_path}"
        )
    else:
        embedded = EmbeddedRedis(settings.state_path)
        url = embedded.start()
        where = (
            f"the config store at {url} (an embedded Redis started on the state folder {settings.state_path})"
        )
    store = ConfigStore.from_url(url)
    try:
        wait_for_redis(store.redis, 10.0, "the config Redis")
        yield store, where
    finally:
        store.redis.close()
        if embedded is not None:
            embedded.stop()


def _hide_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
