"""Every CLI failure ends with one line on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

import pytest

from app.cli import build_parser
from app.cli.errors import EXIT_CODES, FAILED, USAGE
from app.embedded_redis import free_port
from tests.conftest import TEST_APP
from tests.integration.test_cli import cli

# Each client command, with what it needs besides the connection flags.
COMMANDS = {
    "publish": ["publish", "--channel", "c", "--data", "1"],
    "subscribe": ["subscribe", "--channel", "c", "--timeout", "5"],
    "health": ["health", "--timeout", "5"],
    "monitor": ["monitor", "--source", "channel", "--once"],
}


def assert_one_error_line(result, code: int, *fragments: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, result.stderr
    assert result.returncode == code, result.stderr
    return last


def test_the_exit_codes_are_documented_in_the_help():
    epilog = build_parser().format_help()
    for code, _meaning in EXIT_CODES:
        assert f"  {code} " in epilog


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_app_key_is_named_not_a_traceback(broker, command):
    result = cli(
        *COMMANDS[command], "--endpoint", broker.endpoint, "--appkey", "no-such-app", "--rolesecret", "x" * 20
    )
    assert_one_error_line(result, FAILED, "refused app key 'no-such-app' (HTTP 403)")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_http_endpoint_is_a_usage_error(broker, command):
    result = cli(*COMMANDS[command], "--endpoint", broker.http + "/v2", "--rolesecret", "x" * 20)
    assert_one_error_line(result, USAGE, "is not a WebSocket URL", "ws://")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_connection_says_so(command):
    endpoint = f"ws://127.0.0.1:{free_port()}/v2"
    result = cli(*COMMANDS[command], "--endpoint", endpoint, "--rolesecret", "x" * 20)
    assert_one_error_line(result, FAILED, f"cannot connect to {endpoint}: connection refused")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_secret_is_an_authentication_failure(broker, command):
    role = "stats" if command == "monitor" else "pubsub"
    app = "_stats" if command == "monitor" else TEST_APP
    result = cli(
        *COMMANDS[command],
        *("--endpoint", broker.endpoint, "--appkey", app, "--rolename", role, "--rolesecret", "wrong" * 5),
    )
    assert_one_error_line(result, FAILED, "authentication failed", broker.endpoint)


def test_health_says_which_store_its_secret_came_from_and_that_it_may_not_be_the_brokers(broker, tmp_path):
    # A local state folder whose _health secret is not the one of the broker's config store: the situation
    # of `python -m app health` on a host that runs a gunicorn deployment with its own REDIS_URL.
    state = tmp_path / "state"
    assert cli("init", "--state-dir", str(state)).returncode == 0
    result = cli("health", "--endpoint", broker.endpoint, "--state-dir", str(state))
    line = assert_one_error_line(result, FAILED, "unhealthy", "authentication failed")
    assert "secret of role 'health' read from the config store at redis://127.0.0.1:" in line
    assert str(state) in line
    assert "may not be the broker's" in line and "--rolesecret" in line


def test_health_with_the_brokers_own_store_is_healthy_and_names_the_store(broker):
    result = cli("health", "--endpoint", broker.endpoint, redis_url=broker.redis_url)
    assert result.returncode == 0, result.stderr
    assert f"secret of role 'health' read from the config store at {broker.redis_url}" in result.stderr
    assert result.stdout.startswith("OK: ")


def test_a_role_missing_from_the_store_is_one_line(broker):
    result = cli(
        "publish",
        "--channel",
        "c",
        "--data",
        "1",
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolename",
        "nobody",
        redis_url=broker.redis_url,
    )
    assert_one_error_line(result, FAILED, "no role 'nobody' in app 'testapp'", "--rolesecret")


def test_an_unreachable_config_redis_is_one_line():
    result = cli("export-config", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert_one_error_line(result, FAILED, "the config Redis did not answer")


def test_a_message_that_is_not_json_is_one_line(broker, test_apps):
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    result = cli(
        "publish",
        "--channel",
        "c",
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolesecret",
        secret,
        stdin='{"n": 1}\nnot json\n',
    )
    assert_one_error_line(result, FAILED, "message 2 is not JSON")


def test_a_refused_publish_is_one_line(broker, test_apps):
    secret = test_apps[TEST_APP].roles["subscriber"].secret
    result = cli(
        "publish",
        "--channel",
        "c",
        "--data",
        "1",
        "--endpoint",
        broker.endpoint,
        "--appkey",
        TEST_APP,
        "--rolename",
        "subscriber",
        "--rolesecret",
        secret,
    )
    assert_one_error_line(result, FAILED, "rtm/publish/error")
