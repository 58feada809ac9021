"""The reference Cobra CLI (``cobras`` 2.9.137 from PyPI), unchanged, against our broker (issue #2: "a client
written against the Cobra protocol by someone else works unchanged").

The reference client lives in its own venv (bench/reference/setup.sh: Python 3.11, websockets 10.4, and the
``format_close`` shim its ``Connection.close`` needs). The first run installs it from PyPI into .state/; later
runs reuse it. When it cannot be installed (no network), these tests are skipped with the installer's message,
except under ``CI=true``: there they fail, since this is our only test with a client written by someone else.
Each test runs the real ``cobra`` command line: ``health``, ``subscribe --stream_sql`` + ``publish``,
``write`` + ``read``, ``admin``, ``monitor``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config_store import ConfigStore, dump_apps_yaml
from app.models import App
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess, wait_until
from tests.support.reference import install_reference_cli, reference_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_cli() -> Path:
    """The ``cobra`` executable of the reference venv (installed on first use)."""
    return install_reference_cli()


@pytest.fixture(scope="module")
def apps_yaml(
    tmp_path_factory: pytest.TempPathFactory, store: ConfigStore, test_apps: dict[str, App]
) -> Path:
    """Our config exported as a Cobra apps.yaml: the reference CLI reads its default role/secret there."""
    path = tmp_path_factory.mktemp("reference") / "apps.yaml"
    path.write_text(dump_apps_yaml(store.list_apps().values()))
    return path


@pytest.fixture
def cobra(
    reference_cli: Path, apps_yaml: Path, broker: BrokerProcess, test_apps: dict[str, App]
) -> Callable[..., subprocess.CompletedProcess]:
    """``cobra(command, *flags, role="pubsub")``: the reference CLI against our broker, as TEST_APP/role."""

    def run(
        command: str, *flags: str, role: str = "pubsub", timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(reference_cli), command, *_connection_flags(broker, test_apps, role), *flags],
            env=_env(apps_yaml),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def _env(apps_yaml: Path) -> dict[str, str]:
    return reference_env(apps_yaml)


def _connection_flags(
    broker: BrokerProcess, test_apps: dict[str, App], role: str, app: str = TEST_APP
) -> list[str]:
    # The reference CLI appends "/v2?appkey=..." to the endpoint itself.
    secret = test_apps[app].roles[role].secret
    return [
        f"--endpoint=ws://127.0.0.1:{broker.port}",
        f"--appkey={app}",
        f"--rolename={role}",
        f"--rolesecret={secret}",
    ]


def test_reference_health_check_passes(cobra):
    # Publishes, subscribes from position 0-0 with a projecting StreamSQL filter, then write/read/delete,
    # and the HTTP /health/ check.
    result = cobra("health", "--http_extra_check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System is healthy" in result.stdout


def test_reference_subscribe_with_filter_gets_only_matching_messages_projected(
    cobra, reference_cli, apps_yaml, broker, test_apps, tmp_path
):
    channel = f"reference-{uuid.uuid4().hex[:8]}"
    stream_sql = f"select device.model, data.fps from `{channel}` where data.fps < 30"
    log = tmp_path / "subscribe.log"
    with open(log, "w") as out:
        subscriber = subprocess.Popen(
            [
                str(reference_cli),
                "--verbose",
                "subscribe",
                *_connection_flags(broker, test_apps, "pubsub"),
                f"--channel={channel}",
                f"--stream_sql={stream_sql}",
                "--disable_debug_memory",
            ],
            env=_env(apps_yaml),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "rtm/subscribe/ok" in log.read_text(), timeout=30, message="subscribe/ok")
        events = tmp_path / "events.jsonl"
        # `cobra publish` replays a JSON-lines file, sleeping by the difference of "timestamp" fields.
        events.write_text(
            "\n".join(
                json.dumps({"timestamp": 1, "device": {"model": model}, "data": {"fps": fps}})
                for model, fps in (("pixel", 24), ("iphone", 60), ("galaxy", 12))
            )
        )
        result = cobra("publish", f"--channel={channel}", f"--path={events}", "--delay=0")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until(lambda: "galaxy" in log.read_text(), timeout=30, message="the last matching message")
        time.sleep(0.5)  # a wrongly delivered non-matching message would have arrived by now
    finally:
        subscriber.terminate()
        subscriber.wait(10)
    output = log.read_text()
    assert "{'device.model': 'pixel', 'data.fps': 24}" in output
    assert "{'device.model': 'galaxy', 'data.fps': 12}" in output
    assert "iphone" not in output
    assert sum(" at position " in line for line in output.splitlines()) == 2  # one log line per message


def test_reference_write_then_read_round_trips(cobra):
    channel = f"reference-kv-{uuid.uuid4().hex[:8]}"
    written = cobra("write", f"--channel={channel}", '--data={"level": 7}')
    assert written.returncode == 0, written.stdout + written.stderr
    read = cobra("read", f"--channel={channel}")
    assert read.returncode == 0, read.stdout + read.stderr
    # `cobra write` sends --data as a JSON string, so the string comes back.
    assert 'handler received message {"level": 7}' in read.stdout


def test_reference_admin_lists_and_closes_connections(cobra, connect):
    victim = connect()
    listed = cobra("admin", "--action=get_connections", role="admin")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert victim.connection_id in listed.stdout
    closed = cobra("admin", "--action=disconnect", f"--connection_id={victim.connection_id}", role="admin")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert "Error" not in closed.stderr

    def victim_closed() -> bool:
        try:
            victim.receive(timeout=0.2)
        except TimeoutError:
            return False
        except Exception:
            return True
        return False

    wait_until(victim_closed, timeout=10, message="the closed connection to end")


def test_reference_monitor_reads_our_statistics_stream(reference_cli, apps_yaml, broker, store):
    stats = store.get_app("_stats")
    role_name, role = next(iter(stats.roles.items()))
    result = subprocess.run(
        [
            str(reference_cli),
            "monitor",
            f"--endpoint=ws://127.0.0.1:{broker.port}",
            "--appkey=_stats",
            f"--rolename={role_name}",
            f"--rolesecret={role.secret}",
            "--once",
        ],
        env=_env(apps_yaml),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connections" in result.stdout
