"""``import-config`` (and its ``--check``) and the panel's import refuse weak or odd input with a message that
points at it: short or huge secrets, duplicate app keys and role names, invalid republish rules."""

from __future__ import annotations

import pytest

from app.config_store import ConfigStore
from tests.integration.test_cli import cli
from tests.support.processes import RedisProcess

GOOD = "g" * 20
CASES = {
    "short secret": (
        "apps:\n  weak:\n    roles:\n      r: {secret: abc, permissions: [publish]}\n",
        "app 'weak' (line 2): role 'r' (line 4): its secret is 3 characters, fewer than 16",
    ),
    "huge secret": (
        "apps:\n  huge:\n    roles:\n      r: {secret: " + "x" * 5000 + ", permissions: [publish]}\n",
        "app 'huge' (line 2): role 'r' (line 4): its secret is 5000 characters, more than 256",
    ),
    "duplicate app key": (
        f"apps:\n  twice:\n    roles: {{r: {{secret: {GOOD}}}}}\n  twice:\n    roles: {{}}\n",
        "duplicate app key 'twice' at line 4 (first at line 2)",
    ),
    "duplicate role": (
        f"apps:\n  dup:\n    roles:\n      r: {{secret: {GOOD}}}\n      r: {{secret: {GOOD}}}\n",
        "duplicate role 'r' in app 'dup' at line 5 (first at line 4)",
    ),
    "invalid rule": (
        "apps:\n  rules:\n    settings:\n"
        "      republish_rules: [{expression: 'select nonsense from where', target: t}]\n",
        "republish rule 1 ('select nonsense from where'): 'where' at position 21 is a StreamSQL keyword",
    ),
}


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = RedisProcess(tmp_path_factory.mktemp("import-checks"))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("check_only", [False, True], ids=["import", "check only"])
@pytest.mark.parametrize("case", CASES)
def test_import_config_refuses_with_a_pointed_message(private_redis, tmp_path, case, check_only):
    text, reason = CASES[case]
    path = tmp_path / "apps.yaml"
    path.write_text(text)
    store = ConfigStore.from_url(private_redis.url)
    before = store.version()
    result = cli(
        "import-config", *(["--check"] if check_only else []), str(path), "--redis-url", private_redis.url
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"error: {path}: ") and reason in last, result.stderr
    assert "x" * 100 not in last  # a refused secret is never echoed
    assert store.version() == before


def test_legacy_secrets_import_only_with_the_flag_and_a_warning(private_redis, tmp_path):
    path = tmp_path / "apps.yaml"
    path.write_text(CASES["short secret"][0])
    result = cli("import-config", "--allow-legacy-secrets", str(path), "--redis-url", private_redis.url)
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "accepted as a legacy secret" in result.stderr
    assert "abc" not in result.stderr.replace("(", " ").split()  # the secret is not printed
    assert ConfigStore.from_url(private_redis.url).get_app("weak").roles["r"].secret == "abc"


def test_a_role_without_permissions_is_imported_with_a_warning(private_redis, tmp_path):
    path = tmp_path / "apps.yaml"
    path.write_text(f"apps:\n  idle:\n    roles:\n      r: {{secret: {GOOD}, permissions: []}}\n")
    result = cli("import-config", str(path), "--redis-url", private_redis.url)
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "role 'r' has no permissions" in result.stderr
    assert ConfigStore.from_url(private_redis.url).get_app("idle").roles["r"].permissions == ()
