"""Changes made with the CLI, and those arriving by ``COBRA_APPS_CONFIG``, are in the panel's audit log."""

from __future__ import annotations

import getpass
import uuid

import pytest

from app.config_store import ConfigStore
from tests.integration.test_cli import cli
from tests.support.processes import RedisProcess

ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def private_redis(tmp_path):
    server = RedisProcess(tmp_path / "audit-redis")
    server.start()
    yield server
    server.stop()


def entries(store: ConfigStore, actor: str) -> list[dict[str, str]]:
    """Oldest first, only those of ``actor``."""
    return [entry for _, entry in reversed(store.audit_entries(500)) if entry["user"] == actor]


def run(redis: RedisProcess, *args: str, stdin: str | None = None) -> None:
    result = cli(*args, "--redis-url", redis.url, stdin=stdin)
    assert result.returncode == 0, result.stderr


def test_every_cli_change_is_audited_with_the_os_user(private_redis, tmp_path):
    store = ConfigStore.from_url(private_redis.url)
    path = tmp_path / "apps.yaml"
    path.write_text(
        "apps:\n  audited:\n    roles:\n"
        "      r: {secret: audited-secret-0123456789, permissions: [publish]}\n"
    )
    shard = RedisProcess(tmp_path / "shard")
    shard.start()
    try:
        run(private_redis, "init")
        run(private_redis, "import-config", str(path))
        run(private_redis, "apps", "set", "audited", "history_max_length=7", "publish_rate=default")
        run(private_redis, "apps", "republish", "audited", "add", "select a from `src` where a > 1", "dst")
        run(private_redis, "apps", "republish", "audited", "remove", "1")
        run(private_redis, "admin-user", "auditor", "--password", "long enough password")
        run(private_redis, "admin-user", "auditor", "--password", "another long password")
        run(private_redis, "shards", "add", "s1", shard.url)
        run(private_redis, "shards", "remove", "s1")
    finally:
        shard.stop()
    got = [(e["action"], e["app"], e["target"]) for e in entries(store, ACTOR)]
    assert got == [
        ("config.init", "", ""),
        ("config.import", "", ""),
        ("app.settings", "audited", ""),
        ("app.republish.add", "audited", "dst"),
        ("app.republish.remove", "audited", "dst"),
        ("user.create", "", "auditor"),
        ("user.password.reset", "", "auditor"),
        ("shards.add", "", "s1"),
        ("shards.remove", "", "s1"),
    ]
    details = [e["details"] for e in entries(store, ACTOR)]
    assert "apps=_admin,_health,_pubsub,_stats" in details[0]
    assert details[1] == "new=audited; replaced=none"
    assert "history_max_length=7" in details[2] and "publish_rate=default" in details[2]
    assert "expression=select a from `src` where a > 1" in details[3]
    assert "s1=redis://127.0.0.1:" in details[7]
    everything = str(store.audit_entries(500))
    assert "audited-secret-0123456789" not in everything and "long enough password" not in everything


def test_a_check_only_import_and_a_failed_change_are_not_audited(private_redis, tmp_path):
    store = ConfigStore.from_url(private_redis.url)
    path = tmp_path / "apps.yaml"
    path.write_text("apps:\n  checked:\n    roles:\n      r: {secret: checked-secret-0123456789}\n")
    run(private_redis, "import-config", "--check", str(path))
    assert store.get_app("checked") is None
    assert (
        cli("apps", "set", "missing", "history_max_length=1", "--redis-url", private_redis.url).returncode
        == 1
    )
    assert entries(store, ACTOR) == []


def test_apps_config_changes_are_audited_once_per_change(broker_factory, store, tmp_path):
    key = f"envapp-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "apps.yaml"
    path.write_text(f"apps:\n  {key}:\n    roles:\n      r: {{secret: env-secret-0123456789abcdef}}\n")
    actor = f"apps-config:{path}"
    broker_factory(env={"COBRA_APPS_CONFIG": str(path)})
    [entry] = entries(store, actor)
    assert (entry["action"], entry["details"]) == ("config.import", f"new={key}; replaced=none")
    broker_factory(env={"COBRA_APPS_CONFIG": str(path)})  # the same file again: nothing changed
    assert len(entries(store, actor)) == 1


def test_what_run_creates_at_first_start_is_audited(tmp_path):
    from app.embedded_redis import find_running
    from tests.support.processes import BrokerProcess

    broker = BrokerProcess(None, tmp_path).start()
    try:
        store = ConfigStore.from_url(find_running(tmp_path / f"state-{broker.port}"))
        got = [(e["action"], e["target"], e["details"]) for e in entries(store, ACTOR)]
    finally:
        broker.stop()
    assert got == [
        ("config.init", "", "apps=_admin,_health,_pubsub,_stats"),
        ("user.create", "admin", "first_admin=True"),
    ]
