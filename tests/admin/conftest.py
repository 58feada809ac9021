"""Fixtures of the admin panel tests: a panel per test on the real session Redis, logged-in test clients
that carry CSRF tokens like a browser does, and unique apps and users so tests never collide."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import app.resp
from admin import create_admin_app
from admin.users import set_password
from app.config_store import ConfigStore
from app.engine import Engine
from app.live_tail import LiveTail
from app.models import PERMISSIONS, App, Role, Shard
from app.settings import Settings
from tests.support.processes import RedisProcess

META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PASSWORD = "a long enough password"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class PanelClient:
    """A Flask test client speaking to the panel under /admin/, posting forms with a CSRF token taken
    from the page (as the browser does) unless told not to."""

    def __init__(self, client: FlaskClient, base_url: str = "http://localhost") -> None:
        self.client = client
        self.base_url = base_url

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get("/admin" + path, base_url=self.base_url, **kwargs)

    def csrf_token(self) -> str:
        page = self.get("/login")
        if page.status_code == 302:  # logged in: any page has the token
            page = self.get("/config/")
        match = META_TOKEN.search(page.get_data(as_text=True))
        assert match, "no CSRF token in the page"
        return match.group(1)

    def post(
        self, path: str, data: dict[str, Any] | None = None, csrf: bool = True, **kwargs: Any
    ) -> TestResponse:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        if self.base_url.startswith(
            "https:"
        ):  # Flask-WTF checks the Referer of HTTPS posts, as browsers send it
            kwargs.setdefault("headers", {}).setdefault("Referer", self.base_url + "/admin" + path)
        return self.client.post("/admin" + path, data=data, base_url=self.base_url, **kwargs)

    def login(self, name: str, password: str = PASSWORD) -> TestResponse:
        return self.post("/login", {"username": name, "password": password})


def new_panel(redis_url: str, live_tail: LiveTail | None = None, **config: Any) -> Flask:
    return create_admin_app(
        Settings.from_env({}), redis_url, {"TESTING": True, **config}, live_tail=live_tail
    )


@pytest.fixture
def make_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Engine]]:
    """``make_engine(shards, default_url, **options)``: a Redis engine in this test process, as the
    broker's, for the live tail. ``python -m app run`` monkey-patches sockets so the engine's greenlets
    share the event loop; this process is not patched, so only the engine's own RESP sockets are gevent's
    (its greenlets then run whenever the test waits through gevent, as the panel's tail does)."""
    monkeypatch.setattr(app.resp, "socket", gevent.socket)
    engines: list[Engine] = []

    def make(shards: tuple[Shard, ...], default_url: str, **options: Any) -> Engine:
        engine = Engine(**options)
        engines.append(engine)
        engine.configure(shards, default_url)
        return engine

    yield make
    for engine in engines:
        engine.stop(1.0)


def wait_green(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    """``wait_until`` for a test that runs engine greenlets: polls with gevent's sleep, so they run."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        gevent.sleep(0.05)
    return value


def random_ip() -> str:
    part = uuid.uuid4().int
    return f"10.{part % 250 + 1}.{(part >> 8) % 250 + 1}.{(part >> 16) % 250 + 1}"


@pytest.fixture
def panel_app(redis_server: RedisProcess) -> Flask:
    return new_panel(redis_server.url)


@pytest.fixture
def make_client(panel_app: Flask) -> Callable[..., PanelClient]:
    """Each client comes from its own IP address, so login throttling in one test never spills over."""

    def make(app: Flask | None = None, ip: str | None = None, https: bool = False) -> PanelClient:
        test_client = (app or panel_app).test_client()
        test_client.environ_base["REMOTE_ADDR"] = ip or random_ip()
        return PanelClient(test_client, "https://localhost" if https else "http://localhost")

    return make


@pytest.fixture
def client(make_client: Callable[..., PanelClient]) -> PanelClient:
    return make_client()


@pytest.fixture
def admin_user(store: ConfigStore) -> Iterator[str]:
    name = unique("user")
    set_password(store, name, PASSWORD)
    yield name
    store.delete_admin_user(name)


@pytest.fixture
def panel(client: PanelClient, admin_user: str) -> PanelClient:
    """A client logged in as a fresh admin user."""
    response = client.login(admin_user)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def app_key(store: ConfigStore) -> Iterator[str]:
    """A fresh app with one all-permission role ``pubsub``."""
    key = unique("app")
    store.put_app(App(key=key, roles={"pubsub": Role("pubsub", "s" * 32, PERMISSIONS)}))
    yield key
    store.delete_app(key)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of its own, for tests that change global config (shards) or need an empty store."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own(
    private_redis: RedisProcess, make_client: Callable[..., PanelClient]
) -> tuple[PanelClient, ConfigStore]:
    """(a panel client logged in on a private config Redis, that Redis's store): for shard pages."""
    store = ConfigStore.from_url(private_redis.url)
    name = unique("user")
    set_password(store, name, PASSWORD)
    client = make_client(new_panel(private_redis.url))
    assert client.login(name).status_code == 302
    return client, store


def audit_entries(store: ConfigStore, user: str) -> list[dict[str, str]]:
    return [entry for _, entry in store.audit_entries(500) if entry.get("user") == user]
