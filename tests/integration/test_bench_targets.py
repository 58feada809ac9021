"""The benchmark's targets of issue 18, each run for a second or two against real processes: nginx + nchan
(skipped where it is not installed: scripts/install-bench-tools.sh), ours under gunicorn with two workers,
and the many-connections scenario with its sockets spread over 127.0.0.0/8. Numbers are not asserted (the
machine is shared); what is asserted is that every message arrived and the measurements exist."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from bench.nchan import NCHAN_MODULE
from bench.runner import run_scenario
from bench.scenarios import SCENARIOS, customise
from bench.targets import make_server


def _run(server, scenario, on_window=None):
    return run_scenario(
        scenario, server.target(), duration=1.5, warmup=0.5, run_tag="t", settle=0.5, on_window=on_window
    )


@pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not NCHAN_MODULE.exists(),
    reason="nginx + nchan not installed (scripts/install-bench-tools.sh)",
)
@pytest.mark.parametrize("kind", ["nchan-memory", "nchan-redis"])
def test_nchan_target_delivers_everything_and_counts_its_cpu(kind, tmp_path):
    with make_server(kind, tmp_path / kind, None, None) as server:
        ack = _run(server, SCENARIOS["ack"])
        fanout = _run(server, customise(SCENARIOS["fanout100"], subscribers=20))
    for result in (ack, fanout):
        assert result["server"] == kind and result["published_total"] > 0
        assert result["lost"] == 0 and result["unexpected"] == 0 and result["publish_errors"] == 0
        assert result["received_deliveries"] == result["expected_deliveries"] > 0
        assert result["broker"]["cpu_percent"] is not None and result["broker"]["rss_mb_peak"] > 0
    assert ack["ack_latency_ms"]["samples"] > 0  # the 2xx answers to the POSTs are the acks
    assert fanout["expected_deliveries"] == 20 * fanout["published_total"]
    assert (ack["redis"]["pid"] is not None) == (kind == "nchan-redis")


def test_gunicorn_two_workers_deliver_across_workers(tmp_path):
    with make_server("gunicorn2", tmp_path / "g", None, None) as server:
        workers = psutil.Process(server.process.pid).children()
        master = server.process.pid
        result = _run(server, customise(SCENARIOS["fanout100"], subscribers=40))
    assert len(workers) == 2
    assert result["lost"] == 0 and result["received_deliveries"] == result["expected_deliveries"] > 0
    assert result["broker"]["cpu_percent"] is not None
    by_process = result["broker"]["cpu_percent_by_process"]  # master + both workers, each counted
    assert {w.pid for w in workers} | {master} == set(map(int, by_process))


def test_many_connections_scenario_binds_many_sources_and_reports_its_costs(tmp_path):
    scenario = customise(SCENARIOS["c100k"], connections=300)
    seen: set[str] = set()

    def sources(pid: int, seconds: float) -> None:
        seen.update(c.raddr.ip for c in psutil.Process(pid).net_connections("tcp") if c.raddr)

    with make_server("ours", tmp_path / "ours", None, None) as server:
        result = _run(server, scenario, on_window=sources)
    assert result["connections"] == 300
    assert len(seen - {"127.0.0.1"}) >= 32  # load sockets bound across 127.0.0.0/8, not one address
    assert result["lost"] == 0 and 0 < result["latency_ms"]["samples"] <= result["received_deliveries"]
    assert result["expected_deliveries"] == 150 * result["published_total"]
    assert result["idle"]["connections"] == 300 and result["idle"]["rss_kb_per_connection"] > 0
    assert result["connects_per_s"] > 0 and result["kernel_limits"]["fs.nr_open"]


@pytest.mark.skipif(not NCHAN_MODULE.exists(), reason="nginx + nchan not installed")
def test_install_script_finds_the_installed_nchan():
    """Run as the README shows it; with the packages present it installs nothing and prints nginx's path."""
    from bench.nchan import INSTALL_SCRIPT

    done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and Path(done.stdout.strip()).name == "nginx", done.stderr


def test_readme_bench_commands_parse_and_name_real_scenarios():
    """Every `python -m bench run|race` line of the README is a valid command line of the harness."""
    from bench.cli import build_parser
    from bench.scenarios import SCENARIOS
    from bench.targets import SERVER_KINDS
    from tests.integration.test_readme_commands import readme_commands

    lines = [c for c in readme_commands() if re.match(r"python -m bench (run|race) ", c)]
    assert len(lines) >= 4
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[3:])
        assert set(args.scenarios) <= set(SCENARIOS), line
        if args.command == "race":
            assert set(args.order.split(",")) <= set(SERVER_KINDS), line
