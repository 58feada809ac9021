"""The command line: init, import-config / export-config, publish and subscribe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import TEST_APP
from tests.support.processes import ROOT, RedisProcess


def cli(*args: str, redis_url: str | None = None, stdin: str | None = None, timeout: float = 60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_init_creates_the_well_known_apps_and_prints_them(tmp_path):
    redis = RedisProcess(tmp_path / "r")
    redis.start()
    try:
        result = cli("init", redis_url=redis.url)
        assert result.returncode == 0, result.stderr
        apps = yaml.safe_load(result.stdout)["apps"]
        assert set(apps) == {"_health", "_pubsub", "_stats", "_admin"}
        for key, app in apps.items():
            role = key.lstrip("_")
            assert list(app["roles"]) == [role]
            assert len(app["roles"][role]["secret"]) == 32
            assert set(app["roles"][role]["permissions"]) == {
                "publish",
                "subscribe",
                "unsubscribe",
                "read",
                "write",
                "delete",
                "admin",
            }
        again = yaml.safe_load(cli("init", redis_url=redis.url).stdout)["apps"]
        assert again == apps  # init never overwrites
        fresh = yaml.safe_load(cli("init", "--force", redis_url=redis.url).stdout)["apps"]
        assert fresh["_pubsub"]["roles"]["pubsub"]["secret"] != apps["_pubsub"]["roles"]["pubsub"]["secret"]
    finally:
        redis.stop()


def test_init_without_redis_url_uses_an_embedded_redis_in_the_state_dir(tmp_path):
    result = cli("init", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    exported = cli("export-config", "--state-dir", str(tmp_path / "state"))
    assert yaml.safe_load(exported.stdout) == yaml.safe_load(result.stdout)


COBRA_APPS_YAML = """
apps:
  abcd1234:
    roles:
      game:
        secret: 0123456789abcdef0123456789abcdef
        permissions: [publish, subscribe]
      dashboards:
        secret: fedcba9876543210fedcba9876543210
        permissions: [subscribe]
"""


def test_import_then_export_round_trips_a_cobra_apps_yaml(tmp_path):
    redis = RedisProcess(tmp_path / "r")
    redis.start()
    try:
        path = tmp_path / "apps.yaml"
        path.write_text(COBRA_APPS_YAML)
        result = cli("import-config", str(path), redis_url=redis.url)
        assert result.returncode == 0, result.stderr
        assert "abcd1234" in result.stdout
        exported = yaml.safe_load(cli("export-config", redis_url=redis.url).stdout)
        assert exported == yaml.safe_load(COBRA_APPS_YAML)
    finally:
        redis.stop()


def test_import_of_a_broken_file_fails_clearly(tmp_path):
    path = tmp_path / "apps.yaml"
    path.write_text("apps: [this, is, not, a, mapping]")
    result = cli("import-config", str(path), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    assert "error:" in result.stderr and "apps" in result.stderr


def test_apps_config_env_var_is_loaded_at_start_up(broker_factory, tmp_path):
    path = tmp_path / "apps.yaml"
    path.write_text(COBRA_APPS_YAML)
    broker = broker_factory(env={"COBRA_APPS_CONFIG": str(path)})
    from app.client import CobraClient

    with CobraClient(broker.endpoint, "abcd1234", "game", "0123456789abcdef0123456789abcdef") as client:
        assert client.publish("c", 1)["channels"] == ["c"]


def test_publish_and_subscribe_commands(broker, test_apps, channel):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    common = [
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolename",
        "pubsub",
        "--rolesecret",
        secret,
    ]
    subscriber = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "subscribe",
            *common,
            "--filter",
            f"select n from `{channel}` where n > 1",
            "--count",
            "2",
            "--timeout",
            "30",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert subscriber.stderr.readline().startswith("subscribed to")  # blocks until the subscription is live
    lines = "\n".join(json.dumps({"n": n}) for n in range(4))
    result = cli("publish", *common, "--channel", channel, stdin=lines)
    assert result.returncode == 0, result.stderr
    out, err = subscriber.communicate(timeout=30)
    assert subscriber.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"n": 2}, {"n": 3}]
