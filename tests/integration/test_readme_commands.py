"""The README cannot drift: every command it shows is run here, or by the named test that runs it.

Commands are taken from its shell blocks and from inline code that starts like a command. The tour and the
front-door command run here as written (with the test broker's endpoint added); the others are matched to
the test that exercises them, and that test must exist.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.processes import ROOT, BrokerProcess, free_port

README = (ROOT / "README.md").read_text()
COMMAND_START = re.compile(
    r"(python -m (app|bench)\b|scripts/|bench/|\.venv/bin/|gunicorn |REDIS_URL=|COBRA_\w+=)"
)

# command pattern → the test that runs it ("ci" for the CI command itself: .ci/run runs scripts/test.sh)
EXERCISED_BY: list[tuple[str, str]] = [
    (
        r"^scripts/run\.sh",
        "tests/integration/test_readme_commands.py::test_scripts_run_sh_prints_urls_and_the_first_admin",
    ),
    (r"^scripts/test\.sh", "ci"),
    (
        r"^scripts/install-sdks\.sh$",
        "tests/integration/test_satori_sdks.py::test_the_installer_is_a_quick_no_op_once_installed",
    ),
    (r"^\.venv/bin/ruff check \. && \.venv/bin/ruff format --check \.$", "ci"),
    (
        r"^COBRA_SCREENSHOTS=docs/screenshots \.venv/bin/python -m pytest -m browser$",
        "tests/admin/test_browser.py",
    ),
    (
        r"^python -m app subscribe --period 1 --filter \"select .* group by",
        "tests/integration/test_views.py::test_cli_subscribe_prints_each_window_as_a_table_or_json_lines",
    ),
    (
        r"^python -m app apps republish \S+ add \"select .* group by .*\" \S+$",
        "tests/integration/test_view_rules.py::test_one_process_aggregates_a_view_rule_and_another_takes_it_over",
    ),
    (r"^python -m app health$", "tests/integration/test_readme_commands.py::test_the_tour_runs_as_written"),
    (
        r"^python -m app subscribe --filter",
        "tests/integration/test_readme_commands.py::test_the_tour_runs_as_written",
    ),
    (
        r"^echo .* \| python -m app publish --channel",
        "tests/integration/test_readme_commands.py::test_the_tour_runs_as_written",
    ),
    (
        r"^python -m app export-config$",
        "tests/integration/test_readme_commands.py::test_the_tour_runs_as_written",
    ),
    (
        r"^python -m app run$",
        "tests/integration/test_run_command.py::test_run_without_redis_url_starts_an_embedded_redis_and_passes_health",
    ),
    (
        r"^python -m app settings$",
        "tests/integration/test_readme_commands.py::test_settings_and_bench_list_run",
    ),
    (r"^python -m app$", "tests/integration/test_readme_commands.py::test_settings_and_bench_list_run"),
    (
        r"^python -m app init( --admin)?$",
        "tests/integration/test_cli.py::test_init_creates_the_well_known_apps_and_prints_them",
    ),
    (
        r"^REDIS_URL=\S+ python -m app init --admin$",
        "tests/integration/test_gunicorn_bootstrap.py::test_init_admin_creates_the_first_admin_once_and_prints_its_password",
    ),
    (
        r"^python -m app import-config apps\.yaml$",
        "tests/integration/test_cli.py::test_import_then_export_round_trips_a_cobra_apps_yaml",
    ),
    (
        r"^python -m app shards (list|add|remove)",
        "tests/integration/test_shards.py::test_shards_list_shows_each_shard_and_that_it_answers",
    ),
    (
        r"^python -m app apps (show|set|republish)",
        "tests/integration/test_cli_audit.py::test_every_cli_change_is_audited_with_the_os_user",
    ),
    (
        r"^python -m app monitor( --once)?( +#.*)?$",
        "tests/integration/test_stats.py::test_monitor_once_prints_every_node_role_and_channel",
    ),
    (
        r"^python -m app monitor --source channel",
        "tests/integration/test_stats.py::test_monitor_reads_the_stats_channel_like_cobra_monitor",
    ),
    (
        r"^python -m app publish --http",
        "tests/integration/test_http_publish.py::test_cli_publish_over_http_sends_every_line_in_batches",
    ),
    (
        r"^python -m bench( list)?$",
        "tests/integration/test_readme_commands.py::test_settings_and_bench_list_run",
    ),
    (
        r"^python -m bench run --target",
        "tests/integration/test_readme_commands.py::test_settings_and_bench_list_run",
    ),
    (r"^bench/race\.sh", "tests/integration/test_readme_commands.py::test_race_sh_takes_the_readme_flags"),
    (
        r"^scripts/install-bench-tools\.sh",
        "tests/integration/test_bench_targets.py::test_install_script_finds_the_installed_nchan",
    ),
    (
        r"^python -m bench race --order ours,nchan-memory,nchan-redis",
        "tests/integration/test_bench_targets.py::test_nchan_target_delivers_everything_and_counts_its_cpu",
    ),
    (
        r"^python -m bench race --order gunicorn1,gunicorn2",
        "tests/integration/test_bench_targets.py::test_gunicorn_two_workers_deliver_across_workers",
    ),
    (
        r"^python -m bench run c100k",
        "tests/integration/test_bench_targets.py::test_many_connections_scenario_binds_many_sources_and_reports_its_costs",
    ),
    (
        r"^python -m bench run .*--half-load",
        "tests/unit/test_bench_harness.py::test_half_load_is_open_loop_at_half_the_rate_reached",
    ),
    (r"^python -m bench\.\w+", "tests/integration/test_readme_commands.py::test_settings_and_bench_list_run"),
    (
        r"^REDIS_URL=\S+ gunicorn -c gunicorn\.conf\.py wsgi:application$",
        "tests/integration/test_gunicorn.py::test_every_worker_is_a_broker_node_of_its_own",
    ),
    (
        r"^REDIS_URL=\S+ gunicorn -k app\.gunicorn_worker\.CobraWorker",
        "tests/integration/test_gunicorn.py::test_our_worker_command_works_without_our_config_file_and_with_preload",
    ),
    (
        r"^(body=|ts=|sig=|curl )",
        "tests/integration/test_http_publish.py::test_curl_with_an_openssl_signature_publishes",
    ),
    (
        r"^python -m app apps metrics-label ",
        "tests/admin/test_metrics_label.py::test_the_cli_sets_an_apps_metrics_label",
    ),
]


def shell_commands(block: str) -> list[str]:
    """The commands of one shell block: continuations joined, comments and blank lines dropped."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        line = re.sub(r"\s+", " ", line)
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def readme_commands() -> list[str]:
    commands = [
        c for block in re.findall(r"```(?:sh|bash)\n(.*?)```", README, re.S) for c in shell_commands(block)
    ]
    for inline in re.findall(r"`([^`\n]+)`", README):
        if (COMMAND_START.match(inline) and " " in inline) or inline in ("python -m app", "python -m bench"):
            commands.append(inline)
    return commands


def test_every_readme_command_is_exercised_by_a_test():
    unmatched = [c for c in readme_commands() if not any(re.search(p, c) for p, _ in EXERCISED_BY)]
    assert not unmatched, f"README commands no test runs (add them to EXERCISED_BY): {unmatched}"
    for _pattern, where in EXERCISED_BY:
        if where == "ci":
            assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
            continue
        path, _, name = where.partition("::")
        source = (ROOT / path).read_text()
        if name:
            names = {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}
            assert name in names, f"{where} does not exist"


def test_every_pattern_still_matches_a_readme_command():
    commands = readme_commands()
    stale = [p for p, _ in EXERCISED_BY if not any(re.search(p, c) for c in commands)]
    assert not stale, f"patterns of commands the README no longer shows: {stale}"


def _run(command: str, env: dict[str, str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _tour() -> list[str]:
    block = README[README.index("## A 60-second tour") :]
    block = block[block.index("```sh\n") + 6 :]
    return shell_commands(block[: block.index("```")])


def test_the_tour_runs_as_written(tmp_path):
    broker = BrokerProcess(None, tmp_path).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        env["COBRA_STATE_DIR"] = str(tmp_path / f"state-{broker.port}")
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
        endpoint = f" --endpoint {broker.endpoint}"
        health, subscribe, publish, export = _tour()
        result = _run(health + endpoint, env)
        assert result.returncode == 0 and result.stdout.startswith("OK"), result.stderr
        subscriber = subprocess.Popen(
            ["bash", "-c", subscribe + endpoint + " --count 1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(2.0)  # subscribed by then (the publish below is what it waits for)
            published = _run(publish + endpoint, env)
            assert published.returncode == 0, published.stderr
            out, err = subscriber.communicate(timeout=30)
        finally:
            subscriber.kill()
        assert subscriber.returncode == 0, err
        assert '"fps": 24.5' in out.replace('"fps":24.5', '"fps": 24.5') and "pixel" in out
        exported = _run(export, env)
        assert exported.returncode == 0 and "_pubsub:" in exported.stdout
    finally:
        broker.stop()


def test_scripts_run_sh_prints_urls_and_the_first_admin(tmp_path):
    """The front door: ``scripts/run.sh`` (with flags passed on, as the README says)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    process = subprocess.Popen(
        ["scripts/run.sh", "--port", str(port), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "First admin user" in line:
                break
        output = "".join(lines)
        assert f"ws://127.0.0.1:{port}/v2" in output and f"http://127.0.0.1:{port}/admin/" in output, output
        assert re.search(r"First admin user\s*: admin / \S+", output), output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_settings_and_bench_list_run():
    env = dict(os.environ)
    settings = subprocess.run(
        [sys.executable, "-m", "app", "settings"], cwd=ROOT, capture_output=True, text=True
    )
    assert settings.returncode == 0 and "| `--port` |" in settings.stdout
    usage = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 0 and "exit codes" in usage.stdout.lower()
    listing = subprocess.run(
        [sys.executable, "-m", "bench", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and "fanout1000" in listing.stdout
    run_help = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "--target" in run_help.stdout
    modules = ("bench.http_publish_bench", "bench.shards_bench", "bench.stream_sql_bench", "bench.ha_bench")
    for module in modules:
        helped = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert helped.returncode == 0, (module, helped.stderr)


@pytest.mark.parametrize("flag", ["--rounds", "--ours-rev"])
def test_race_sh_takes_the_readme_flags(flag):
    """The race itself needs the reference server and minutes (BENCHMARKS.md has its runs); here its entry
    point runs and knows the flags the README shows."""
    result = subprocess.run(["bench/race.sh", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and flag in result.stdout
