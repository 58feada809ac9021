"""The markdown tables ``bench.ha_bench`` prints (its JSON has every field; these are the headline ones)."""

from __future__ import annotations

import argparse
from typing import Any


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(rows: list[dict[str, Any]]) -> str:
    head = ["shard", "durability", "acked publishes/s", "broker CPU ms / 1000", "Redis CPU ms / 1000"]
    head += ["(master / replicas)", "errors"]
    body = [
        [
            r["shard"],
            r["durability"],
            _num(r["publishes_per_second"]),
            _num(r["broker_cpu_ms_per_1000_total"], 1),
            _num((r["redis_master_cpu_ms_per_1000"] or 0) + (r["redis_replica_cpu_ms_per_1000"] or 0), 1),
            f"{_num(r['redis_master_cpu_ms_per_1000'], 1)} / {_num(r['redis_replica_cpu_ms_per_1000'], 1)}",
            str(r["errors"]),
        ]
        for r in rows
    ]
    return _table(head, body)


def fanout_table(rows: list[dict[str, Any]]) -> str:
    head = ["shard", "durability", "subscribers", "deliveries/s", "broker CPU µs / delivery", "lost"]
    body = [
        [
            r["shard"],
            r["durability"],
            str(r["subscribers"]),
            _num(r["deliveries_per_second"]),
            _num(r["broker_cpu_us_per_delivery"], 2),
            str(r["lost"]),
        ]
        for r in rows
    ]
    return _table(head, body)


def failover_table(rows: list[dict[str, Any]]) -> str:
    head = ["shard", "durability", "failovers", "kill → first acked publish, s (min / median / max)"]
    head += ["new master named, s (median)", "acked-but-lost per failover", "acked per failover"]
    head += ["publish errors (all runs)"]
    body = [
        [
            r["shard"],
            r["durability"],
            f"{r['resumed']}/{r['failovers']}",
            f"not measured: publishes answered {r['refused']}"
            if r.get("refused")
            else " / ".join(_num(r[k], 2) for k in ("failover_s_min", "failover_s_median", "failover_s_max")),
            _num(r["promoted_s_median"], 2),
            ", ".join(map(str, r["lost_per_failover"])),
            ", ".join(map(str, r["acked_per_failover"])),
            ", ".join(f"{code} {count:,}" for code, count in r["errors"].items()) or "none",
        ]
        for r in rows
    ]
    return _table(head, body)


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> None:
    if results["throughput"]:
        budgets = "off" if args.no_byte_budgets else "at their defaults (the cluster shard has none)"
        print(
            f"\n### Acked publishes ({args.publishers} publisher processes x {args.connections} connections x"
            f" {args.window} in flight, {args.channels} channels each, {args.brokers} broker(s),"
            f" {args.duration:g} s; history byte budgets"
            f" {budgets})\n"
        )
        print(throughput_table(results["throughput"]))
    if results["fanout"]:
        print(
            f"\n### Fan-out (1 publisher -> {args.subscribers} subscribers of one channel,"
            f" {args.duration:g} s)\n"
        )
        print(fanout_table(results["fanout"]))
    if results["failover"]:
        print(
            f"\n### Failover (SIGKILL of the master under acked publishers, {args.failover_window} in flight;"
            " killed node restarted as a replica between runs)\n"
        )
        print(failover_table(results["failover"]))
    print(flush=True)
