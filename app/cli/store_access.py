"""Helpers shared by the command families: reaching the config store from a shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..config_store import ConfigStore, wait_for_redis
from ..embedded_redis import EmbeddedRedis, find_running
from ..settings import Settings, add_settings_arguments, settings_from_args

STORE_SETTINGS = ["redis_url", "state_dir"]


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, STORE_SETTINGS)


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[ConfigStore]:
    """The config store named by REDIS_URL; else the embedded Redis of a running broker; else an
    embedded Redis started just for this command (its data persists under the state folder)."""
    settings = settings_from_args(args)
    url = settings.redis_url or find_running(settings.state_path)
    embedded = None
    if not url:
        embedded = EmbeddedRedis(settings.state_path)
        url = embedded.start()
    store = ConfigStore.from_url(url)
    try:
        wait_for_redis(store.redis, 10.0, "the config Redis")
        yield store
    finally:
        store.redis.close()
        if embedded is not None:
            embedded.stop()


def settings_of(args: argparse.Namespace) -> Settings:
    return settings_from_args(args)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
