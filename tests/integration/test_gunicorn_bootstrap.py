"""Settings mean the same under gunicorn as under ``python -m app run`` (issue: COBRA_APPS_CONFIG was ignored
by gunicorn workers, and nothing created the first admin there)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import AppSettings
from tests.integration.test_cli import cli
from tests.support.gunicorn import GunicornProcess
from tests.support.processes import RedisProcess

SECRET = "migrated-secret-0123456789abcdef"
APPS_YAML = (
    f"apps:\n  migrated:\n    roles:\n      game: {{secret: {SECRET}, permissions: [publish, subscribe]}}\n"
)

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def audit_of(store: ConfigStore, actor: str) -> list[dict[str, str]]:
    return [entry for _, entry in store.audit_entries(500) if entry["user"] == actor]


def test_gunicorn_workers_load_cobra_apps_yaml_once_and_keep_later_settings(own_redis, tmp_path):
    path = tmp_path / "apps.yaml"
    path.write_text(APPS_YAML)
    env = {"COBRA_APPS_CONFIG": str(path)}
    store = ConfigStore.from_url(own_redis.url)

    first = GunicornProcess(own_redis.url, tmp_path, workers=2, env=env).start()
    try:
        with CobraClient(first.endpoint, "migrated", "game", SECRET, timeout=5) as client:
            assert client.publish("c", {"hello": 1})["position"]
        assert "loaded 1 app(s) from" in first.output()
        assert len(audit_of(store, f"apps-config:{path}")) == 1  # two workers, one import
        assert "python -m app init --admin" in first.output()  # nothing made an admin user: say how
    finally:
        first.stop()

    # An admin changes a per-app setting; a restart with the same file must not wipe it.
    store.update_app("migrated", lambda app: replace(app, settings=AppSettings(history_max_length=7)))
    second = GunicornProcess(own_redis.url, tmp_path, workers=2, env=env).start()
    try:
        with CobraClient(second.endpoint, "migrated", "game", SECRET, timeout=5):
            pass
        assert "already loaded" in second.output()
    finally:
        second.stop()
    assert store.get_app("migrated").settings.history_max_length == 7

    # An edited file is imported again: its roles replace the stored ones, the settings stay.
    path.write_text(APPS_YAML.replace(SECRET, SECRET + "-v2"))
    third = GunicornProcess(own_redis.url, tmp_path, workers=1, env=env).start()
    try:
        with CobraClient(third.endpoint, "migrated", "game", SECRET + "-v2", timeout=5):
            pass
    finally:
        third.stop()
    assert store.get_app("migrated").settings.history_max_length == 7


def test_init_admin_creates_the_first_admin_once_and_prints_its_password(own_redis):
    result = cli("init", "--admin", redis_url=own_redis.url)
    assert result.returncode == 0, result.stderr
    assert "first admin user: admin / " in result.stderr
    password = result.stderr.split("first admin user: admin / ")[1].split()[0]
    assert len(password) >= 12
    assert "admin" in ConfigStore.from_url(own_redis.url).admin_users()
    again = cli("init", "--admin", redis_url=own_redis.url)
    assert again.returncode == 0 and "none created" in again.stderr and password not in again.stderr
