"""Long command-line operations say how far they got: bulk publish from stdin, import of a big apps.yaml."""

from __future__ import annotations

import os
import subprocess
import sys

from app.config_store import dump_apps_yaml
from app.models import App, Role
from tests.support.processes import ROOT, RedisProcess


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bulk_publish_from_stdin_counts_as_it_goes(broker, redis_server, test_apps):
    lines = "".join(f'{{"n": {n}}}\n' for n in range(2500))
    result = cli(
        *("publish", "--endpoint", broker.endpoint, "--redis-url", redis_server.url),
        *("--channel", "bulk-progress"),
        stdin=lines,
    )
    assert result.returncode == 0, result.stderr
    assert "1000 published" in result.stderr and "2000 published" in result.stderr
    assert "published 2500 message(s) to bulk-progress" in result.stderr


def test_import_of_a_big_apps_yaml_reports_each_step(tmp_path):
    apps = [App(key=f"bulk{i:04d}", roles={"r": Role(name="r", secret="s" * 32)}) for i in range(500)]
    path = tmp_path / "apps.yaml"
    path.write_text(dump_apps_yaml(apps))
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        result = cli("import-config", str(path), "--redis-url", redis.url)
    finally:
        redis.stop()
    assert result.returncode == 0, result.stderr
    assert f"parsing {path}" in result.stderr
    assert "writing 500 app(s) to the config store: done in" in result.stderr
    assert result.stdout.startswith("imported 500 app(s): bulk0000, ")
    assert result.stdout.rstrip().endswith("and 480 more")
