"""Apps with settings of their own, put in the config store for one test and removed after it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import InvalidStatus

from app.client import CobraClient
from app.models import App, AppSettings, Role
from tests.support.processes import wait_until

# configure(broker, **settings) -> the app's key
Configure = Callable[..., str]


def wait_app_known(broker: Any, key: str, secret: str, role: str = "r") -> None:
    """Until ``broker`` accepts a connection of app ``key`` (it reads new apps from the store)."""

    def known() -> bool:
        try:
            with CobraClient(broker.endpoint, key, role, secret, timeout=2):
                return True
        except (InvalidStatus, OSError):
            return False

    wait_until(known, message="app visible to the broker")


@contextmanager
def configured_apps(store: Any, prefix: str, secret: str, fresh_key: bool = True) -> Iterator[Configure]:
    """A function that puts an app with role ``r`` (``secret``) and the given settings in the store and
    waits until ``broker`` accepts its connections; each call makes a new app unless ``fresh_key`` is
    False (then every call rewrites the same one). The apps are deleted when the block ends."""
    created: list[str] = []
    shared_key = f"{prefix}-{uuid.uuid4().hex[:8]}"

    def configure(broker: Any, **settings: Any) -> str:
        key = f"{prefix}-{uuid.uuid4().hex[:8]}" if fresh_key else shared_key
        app = App(key=key, roles={"r": Role(name="r", secret=secret)}, settings=AppSettings(**settings))
        store.put_app(app)
        created.append(key)
        wait_app_known(broker, key, secret)
        return key

    try:
        yield configure
    finally:
        for key in created:
            store.delete_app(key)
