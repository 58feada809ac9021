"""``python -m app admin-user`` and the first admin that ``python -m app run`` creates and prints once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from admin.users import check_credentials, ensure_first_admin
from app.config_store import ConfigStore
from tests.support.processes import ROOT, BrokerProcess


def admin_user(redis_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_")}
    env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "app", "admin-user", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        # No controlling terminal: getpass falls back to reading stdin, as it does in a pipeline.
        start_new_session=True,
    )


def test_creating_then_resetting_a_user(private_redis):
    store = ConfigStore.from_url(private_redis.url)
    created = admin_user(private_redis.url, "carol", "--password", "first password 1")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created admin user carol"
    reset = admin_user(private_redis.url, "carol", "--password", "second password 2")
    assert reset.stdout.strip() == "reset the password of admin user carol"
    assert check_credentials(store, "carol", "second password 2") is not None
    assert check_credentials(store, "carol", "first password 1") is None


def test_the_password_is_prompted_for_when_not_given(private_redis):
    result = admin_user(private_redis.url, "dave", stdin="typed password 1\ntyped password 1\n")
    assert result.returncode == 0, result.stderr
    assert check_credentials(ConfigStore.from_url(private_redis.url), "dave", "typed password 1") is not None
    assert "typed password 1" not in result.stdout + result.stderr


def test_prompted_passwords_must_match(private_redis):
    result = admin_user(private_redis.url, "erin", stdin="typed password 1\ntyped password 2\n")
    assert result.returncode == 1
    assert "the passwords differ" in result.stderr
    assert ConfigStore.from_url(private_redis.url).admin_user("erin") is None


def test_weak_passwords_and_bad_names_are_refused(private_redis):
    short = admin_user(private_redis.url, "frank", "--password", "short")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    bad = admin_user(private_redis.url, "not/a name", "--password", "long enough password")
    assert bad.returncode == 1 and "user name must be" in bad.stderr


def test_the_first_admin_is_created_once(private_redis):
    store = ConfigStore.from_url(private_redis.url)
    name, password = ensure_first_admin(store)
    assert name == "admin" and len(password) >= 16
    assert check_credentials(store, name, password) is not None
    assert ensure_first_admin(store) is None


def test_run_prints_the_first_admin_once(private_redis, tmp_path):
    broker = BrokerProcess(private_redis.url, tmp_path).start()
    try:
        output = broker.output()
    finally:
        broker.stop()
    match = re.search(r"First admin user\s+: admin / (\S+)", output)
    assert match, output
    password = match.group(1)
    assert check_credentials(ConfigStore.from_url(private_redis.url), "admin", password) is not None
    assert output.count(password) == 1  # printed in the banner, nowhere else
    again = BrokerProcess(private_redis.url, tmp_path).start()
    try:
        assert "First admin user" not in again.output()
    finally:
        again.stop()
