"""Shared fixtures: real redis-server processes, real broker processes, real WebSocket clients."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import PERMISSIONS, App, AppSettings, Role
from tests.support.processes import BrokerProcess, RedisProcess

TEST_APP = "testapp"
OTHER_APP = "otherapp"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis-config"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def store(redis_server: RedisProcess) -> ConfigStore:
    return ConfigStore.from_url(redis_server.url)


def make_test_apps() -> list[App]:
    def role(
        name: str, permissions: tuple[str, ...] = PERMISSIONS, channels: tuple[str, ...] = ("*",)
    ) -> Role:
        return Role(
            name=name, secret=f"secret-of-{name}-0123456789abcdef", permissions=permissions, channels=channels
        )

    return [
        App(
            key=TEST_APP,
            roles={
                "pubsub": role("pubsub"),
                "publisher": role("publisher", ("publish",)),
                "subscriber": role("subscriber", ("subscribe", "unsubscribe")),
                "reader": role("reader", ("read",)),
                "limited": role("limited", channels=("allowed-*", "exact")),
                "admin": role("admin"),
            },
            settings=AppSettings(history_max_length=100),
        ),
        App(key=OTHER_APP, roles={"pubsub": role("pubsub"), "admin": role("admin")}),
    ]


@pytest.fixture(scope="session")
def test_apps(store: ConfigStore) -> dict[str, App]:
    apps = make_test_apps()
    store.put_apps(apps)
    store.ensure_well_known_apps()
    return {app.key: app for app in apps}


@pytest.fixture(scope="session")
def broker(
    redis_server: RedisProcess, test_apps: dict[str, App], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    process = BrokerProcess(redis_server.url, tmp_path_factory.mktemp("broker")).start()
    yield process
    process.stop()


@pytest.fixture
def broker_factory(
    tmp_path: Path, redis_server: RedisProcess, test_apps: dict[str, App]
) -> Iterator[Callable[..., BrokerProcess]]:
    """Start extra brokers with their own settings (env vars / flags); all are stopped after the test."""
    started: list[BrokerProcess] = []

    def start(
        env: dict[str, str] | None = None, args: list[str] | None = None, redis_url: str | None = None
    ) -> BrokerProcess:
        process = BrokerProcess(redis_url or redis_server.url, tmp_path, env=env, args=args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def connect(broker: BrokerProcess, test_apps: dict[str, App]) -> Iterator[Callable[..., CobraClient]]:
    """``connect(role="pubsub", app=TEST_APP, broker=None, **client_options)`` → an authenticated client."""
    clients: list[CobraClient] = []

    def open_client(
        role: str | None = "pubsub",
        app: str = TEST_APP,
        target: BrokerProcess | None = None,
        **options: object,
    ) -> CobraClient:
        endpoint = (target or broker).endpoint
        secret = test_apps[app].roles[role].secret if role else None
        client = CobraClient(endpoint, app, role, secret, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        try:
            client.close()
        except Exception:
            pass


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """A channel name no other test uses."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
