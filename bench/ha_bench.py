"""High-availability shards (issue 17): throughput, fan-out and failover on each shard kind, real processes.

Each shard configuration is a fresh deployment on loopback (bench/ha_topologies.py), the *only* entry of the
shard list, a config Redis, and ``--brokers`` broker processes (``python -m app run``). Two apps: ``bench``
with ``durability: leader`` and ``benchrep`` with ``durability: replicated`` (min_replicas 1,
replication_timeout 1 s). Measured:

- ``throughput``: acked publishes/s of bench/shards_bench.py's publisher processes (many channels, many in
  flight), with broker CPU and Redis CPU (master(s) and replicas apart) per 1000 publishes;
- ``fanout``: the harness' ``fanout100`` scenario (1 publisher → ``--subscribers`` subscribers of one
  channel, bench/runner.py): deliveries/s and broker CPU per delivery;
- ``failover``: ``--failovers`` SIGKILLs of the master under acked publishers of both apps
  (bench/ha_failover.py): failover time (kill → first acked publish sent after it) min/median/max, and
  acked-but-lost messages per failover.

Configurations: ``single`` (one Redis 7 node), ``sentinel`` (1 master + 2 replicas + 3 Sentinels, down-after
1 s, failover-timeout 5 s; measured with both apps), ``cluster`` (3 masters; no replicas for throughput and
fan-out, ``--cluster-replicas`` replicas each for the failovers, cluster-node-timeout 1 s). On the cluster the
``replicated`` app is only failed over with 2 replicas per master: with one, the promoted master has none left
until the killed node is back, and the time measured would be the restart's.

    python -m bench.ha_bench                                   # everything, ~5 minutes
    python -m bench.ha_bench --part failover --configs sentinel --failovers 5 --json ha.json
    python -m bench.ha_bench --duration 3 --failovers 2        # a quick look

CPU figures are CPU seconds of the processes (``/proc`` and ``INFO cpu``) divided by the work done, which a
loaded machine distorts less than rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from app.config_store import ConfigStore
from app.embedded_redis import RedisProcess
from app.models import PERMISSIONS, App, AppSettings, Role

from .ha_failover import measure_failovers
from .ha_report import print_tables
from .ha_topologies import ClusterShard, SentinelShard, SingleNode
from .runner import Target, run_scenario
from .scenarios import SCENARIOS, customise
from .shards_bench import (
    APP,
    ROLE,
    SECRET,
    add_publisher_arguments,
    measure_publishes,
    start_broker,
    stop_brokers,
)

REPLICATED_APP = "benchrep"
CONFIGS = ("single", "sentinel", "cluster")
PARTS = ("throughput", "fanout", "failover")


def make_apps(history: int, byte_budgets: bool = True) -> list[App]:
    """The two apps; without ``byte_budgets`` their history has count limits only, as a cluster shard's
    always has (it runs no byte-budget script, README "Redis Cluster shards"): Redis CPU like for like."""
    roles = {ROLE: Role(ROLE, SECRET, PERMISSIONS)}
    budgets = {} if byte_budgets else {"history_max_bytes": 0, "app_history_max_bytes": 0}
    return [
        App(APP, roles, AppSettings(history_max_length=history, **budgets)),
        App(
            REPLICATED_APP,
            roles,
            AppSettings(history_max_length=history, min_replicas=1, replication_timeout=1.0, **budgets),
            durability="replicated",
        ),
    ]


def make_topology(config: str, workdir: Path, cluster_replicas: int) -> Any:
    if config == "single":
        return SingleNode(workdir)
    if config == "sentinel":
        return SentinelShard(workdir)
    return ClusterShard(workdir, replicas=cluster_replicas)


class Deployment:
    """A topology as the only shard, a config Redis with both apps, and the brokers (a context manager)."""

    def __init__(self, topology: Any, workdir: Path, args: argparse.Namespace, history: int) -> None:
        self.topology, self.workdir, self.args, self.history = topology, workdir, args, history
        self.config = RedisProcess(workdir / "config", extra_args=["--appendonly", "no"])
        self.brokers: list[Any] = []
        self.ports: list[int] = []

    def __enter__(self) -> Deployment:
        try:
            self.topology.start()
            self.config.start()
            store = ConfigStore.from_url(self.config.url)
            for app in make_apps(self.history, not self.args.no_byte_budgets):
                store.put_app(app)
            store.set_shards([self.topology.shard()])
            # Every load connection comes from 127.0.0.1: lift the per-address cap of unauthenticated
            # sockets (meant for strangers) as the other benchmarks do.
            env = {"COBRA_PREAUTH_MAX_PER_IP": "0"}
            if self.args.probe_interval:
                env["COBRA_SHARD_PROBE_INTERVAL"] = str(self.args.probe_interval)
            for _ in range(self.args.brokers):
                process, port = start_broker(self.config.url, self.workdir, env)
                self.brokers.append(process)
                self.ports.append(port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_brokers(self.brokers)
        self.config.stop()
        self.topology.stop()


def label(config: str, replicas: int = 0) -> str:
    if config == "single":
        return "single node"
    if config == "sentinel":
        return "Sentinel (1 master + 2 replicas)"
    return f"cluster (3 masters, {replicas} replica{'s' if replicas != 1 else ''} each)"


def load_rows(config: str, args: argparse.Namespace, workdir: Path) -> tuple[list[dict], list[dict]]:
    """Throughput and fan-out rows of one configuration (both apps on the Sentinel shard)."""
    throughput, fanout = [], []
    apps = [APP, REPLICATED_APP] if config == "sentinel" else [APP]
    durability = {APP: "leader", REPLICATED_APP: "replicated"}
    with Deployment(make_topology(config, workdir, 0), workdir, args, args.history) as deployment:
        pids = [b.pid for b in deployment.brokers]
        for app in apps:
            head = {"config": config, "shard": label(config), "durability": durability[app]}
            if "throughput" in args.part:
                nodes = deployment.topology.data_nodes()
                row = measure_publishes(deployment.ports, pids, [url for url, _ in nodes], args, app)
                per_node = row["redis_cpu_ms_per_1000"]
                row["redis_roles"] = [role for _, role in nodes]
                row["redis_master_cpu_ms_per_1000"] = _sum_role(per_node, nodes, "master")
                row["redis_replica_cpu_ms_per_1000"] = _sum_role(per_node, nodes, "replica")
                row["broker_cpu_ms_per_1000_total"] = round(sum(row["broker_cpu_ms_per_1000"]), 1)
                throughput.append(head | row)
                print(f"  {head['shard']}, {head['durability']}: {row['publishes_per_second']:,.0f} acked/s")
            if "fanout" in args.part:
                scenario = customise(SCENARIOS["fanout100"], subscribers=args.subscribers)
                target = Target(
                    config, f"ws://127.0.0.1:{deployment.ports[0]}/v2", app, ROLE, SECRET, broker_pid=pids[0]
                )
                result = run_scenario(
                    scenario, target, duration=args.duration, warmup=args.warmup, run_tag=f"{config}-{app}"
                )
                fanout.append(head | fanout_row(result, args.subscribers))
                print(
                    f"  {head['shard']}, {head['durability']}: {result['deliveries_per_s']:,.0f} deliveries/s"
                )
    return throughput, fanout


def _sum_role(per_node: list[float], nodes: list[tuple[str, str]], role: str) -> float | None:
    values = [cpu for cpu, (_url, r) in zip(per_node, nodes, strict=True) if r == role]
    return round(sum(values), 1) if values else None


def fanout_row(result: dict[str, Any], subscribers: int) -> dict[str, Any]:
    cpu = result["broker"]["cpu_percent"]
    rate = result["deliveries_per_s"]
    return {
        "subscribers": subscribers,
        "deliveries_per_second": rate,
        "publishes_per_second": result["publishes_per_s"],
        "broker_cpu_percent": cpu,
        "broker_cpu_us_per_delivery": round(cpu / 100 / rate * 1e6, 2) if cpu and rate else None,
        "lost": result["lost"],
        "publish_errors": result["publish_errors"],
        "disconnects": result["disconnects"],
        "latency_ms": result["latency_ms"],
    }


def failover_rows(config: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    replicas = args.cluster_replicas if config == "cluster" else 2
    apps = [APP, REPLICATED_APP] if config == "sentinel" or replicas >= 2 else [APP]
    topology = make_topology(config, workdir, replicas)
    durability = {APP: "leader", REPLICATED_APP: "replicated"}
    with Deployment(topology, workdir, args, args.failover_history) as deployment:
        summaries = measure_failovers(
            topology, deployment.ports[0], apps, args.failovers, args.failover_window, 1.0, 1.0
        )
    return [
        {"config": config, "shard": label(config, replicas), "durability": durability[app]} | summary
        for app, summary in summaries.items()
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"throughput": [], "fanout": [], "failover": []}
    with tempfile.TemporaryDirectory(prefix="ha-bench-") as tmp:
        for config in args.configs:
            if {"throughput", "fanout"} & set(args.part):
                print(f"{label(config)}: load", flush=True)
                throughput, fanout = load_rows(config, args, Path(tmp) / f"{config}-load")
                results["throughput"] += throughput
                results["fanout"] += fanout
        for config in args.configs:
            if "failover" in args.part and config != "single":  # a lone node has nothing to fail over to
                print(f"{label(config, args.cluster_replicas)}: failovers", flush=True)
                results["failover"] += failover_rows(config, args, Path(tmp) / f"{config}-failover")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ha_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS), help="shard kinds")
    parser.add_argument("--brokers", type=int, default=1, help="broker processes")
    add_publisher_arguments(parser, publishers=2, duration=8.0)
    parser.set_defaults(warmup=2.0)
    parser.add_argument("--subscribers", type=int, default=100, help="fan-out subscribers of the one channel")
    parser.add_argument("--failovers", type=int, default=5, help="master kills per configuration")
    parser.add_argument("--failover-window", type=int, default=8, help="publishes in flight per publisher")
    parser.add_argument("--failover-history", type=int, default=1_000_000, help="history_max_length there")
    parser.add_argument(
        "--cluster-replicas", type=int, default=1, help="replicas per master of the failover cluster"
    )
    parser.add_argument(
        "--probe-interval", type=float, default=None, help="brokers' --shard-probe-interval (default: theirs)"
    )
    parser.add_argument(
        "--no-byte-budgets",
        action="store_true",
        help="apps without history byte budgets (a cluster shard never has them): Redis CPU like for like",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # tests.support found no Redis >= 7
        print(f"python -m bench.ha_bench: {exc.msg}", file=sys.stderr)
        return 2
    print_tables(results, args)
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"settings": settings, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
