"""Our broker and the reference ``cobras`` server, one after the other, under identical load; then the ratios.

Both run as one process pinned to the same core, each on its own fresh Redis, loaded by the same scenarios
with the same parameters. Ratios are ours / reference: above 1 is better for throughput, below 1 for latency.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .report import markdown_table
from .runner import failed_result, run_scenario
from .scenarios import Scenario, at_half_load
from .targets import make_server, unsupported

THROUGHPUT_FACTOR = 5.0  # issue #7: at least 5x the reference's delivered messages/s
FANOUT_1000_FLOOR = 100_000  # deliveries/s
ACKED_PUBLISH_FLOOR = 20_000  # acknowledged publishes/s


def race(
    scenarios: list[Scenario],
    *,
    workdir: Path,
    source: Path,
    broker_cpus: list[int] | None,
    load_cpus: list[int] | None,
    duration: float,
    warmup: float,
    workers: int | None,
    setup_concurrency: int,
    order: tuple[str, ...] = ("ours", "reference"),
    rounds: int = 1,
    extra_env: dict[str, str] | None = None,
    progress: Callable[[str], None] = print,
    half_load: bool = False,
) -> list[dict[str, Any]]:
    """Every run of every scenario; with ``rounds`` > 1 the servers alternate round after round, so that a
    burst of load from elsewhere on a shared machine does not land on one server only. ``half_load``: after
    each throughput scenario, the same one open loop at half the rate that server reached (at_half_load)."""
    results = []
    for round_no in range(1, rounds + 1):
        for kind in order:
            server = make_server(
                kind,
                workdir / f"{kind}-{round_no}",
                broker_cpus,
                load_cpus,
                source=source,
                extra_env=extra_env,
            )
            progress(f"round {round_no}/{rounds}: starting {kind} on port {server.port} ...")
            with server:
                queue = list(scenarios)
                while queue:
                    scenario = queue.pop(0)
                    progress(f"  {kind}: {scenario.title} ({duration:g} s + {warmup:g} s warm-up)")
                    reason = unsupported(kind, scenario)
                    try:
                        if reason:
                            raise RuntimeError(reason)
                        result = run_scenario(
                            scenario,
                            server.target(),
                            duration=duration,
                            warmup=warmup,
                            workers=workers,
                            load_cpus=load_cpus,
                            run_tag=f"{kind}{round_no}",
                            setup_concurrency=setup_concurrency,
                        )
                    except RuntimeError as exc:  # recorded: a server refusing the load is a result too
                        progress(f"    failed: {exc}")
                        result = failed_result(scenario, server.target(), str(exc))
                    result["round"] = round_no
                    results.append(result)
                    derived = at_half_load(scenario, result["publishes_per_s"]) if half_load else None
                    if derived is not None and not result.get("failed"):
                        queue.insert(0, derived)
    return results


def median_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (server, scenario): the median one by deliveries/s, or by p99 for latency scenarios."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["server"], result["scenario"]), []).append(result)
    chosen = []
    for runs in groups.values():
        if runs[0]["kind"] == "latency":
            runs = sorted(runs, key=lambda r: r["latency_ms"]["p99"] or 0.0)
        else:
            runs = sorted(runs, key=lambda r: r["deliveries_per_s"])
        median = dict(runs[(len(runs) - 1) // 2])
        median["runs"] = len(runs)
        chosen.append(median)
    return chosen


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio_table(results: list[dict[str, Any]]) -> str:
    """Ours / reference per scenario, with the issue's targets marked met or missed."""
    by_key = {(r["server"], r["scenario"]): r for r in results}
    names = list(dict.fromkeys(r["scenario"] for r in results))
    rows = []
    for name in names:
        ours, ref = by_key.get(("ours", name)), by_key.get(("reference", name))
        if ours is None or ref is None:
            continue
        if ours.get("failed") or ref.get("failed"):
            failed = [f"{r['server']} failed" for r in (ours, ref) if r.get("failed")]
            rows.append([name, *["-"] * 8, ", ".join(failed)])
            continue
        kind = ours["kind"]
        o_rate, r_rate = ours["deliveries_per_s"], ref["deliveries_per_s"]
        o_p99, r_p99 = ours["latency_ms"]["p99"], ref["latency_ms"]["p99"]
        rate_ratio = o_rate / r_rate if r_rate else None
        o_cpu, r_cpu = ours.get("deliveries_per_cpu_s"), ref.get("deliveries_per_cpu_s")
        cpu_ratio = o_cpu / r_cpu if o_cpu and r_cpu else None
        p99_ratio = o_p99 / r_p99 if o_p99 is not None and r_p99 else None
        verdicts = []
        if kind == "throughput" and rate_ratio is not None:
            verdicts.append(f"{'met' if rate_ratio >= THROUGHPUT_FACTOR else 'MISSED'} >=5x")
        if kind == "latency" and p99_ratio is not None:
            verdicts.append(f"{'met' if p99_ratio <= 1.0 else 'MISSED'} p99 <= ref")
        if name == "fanout1000":
            verdicts.append(f"{'met' if o_rate >= FANOUT_1000_FLOOR else 'MISSED'} >=100k/s")
        if name == "throughput":
            acked = ours["publishes_per_s"]
            verdicts.append(f"{'met' if acked >= ACKED_PUBLISH_FLOOR else 'MISSED'} >=20k acked/s")
        rows.append(
            [
                name,
                _fmt(o_rate, 0),
                _fmt(r_rate, 0),
                _fmt(rate_ratio, 2) + "x" if rate_ratio is not None else "-",
                _fmt(cpu_ratio, 2) + "x" if cpu_ratio is not None else "-",
                _fmt(o_p99, 3),
                _fmt(r_p99, 3),
                _fmt(p99_ratio, 2) + "x" if p99_ratio is not None else "-",
                f"{ours['lost']}/{ref['lost']}",
                ", ".join(verdicts),
            ]
        )
    headers = [
        "scenario",
        "ours deliv/s",
        "ref deliv/s",
        "ours/ref",
        "per srv-CPU-s ours/ref",
        "ours p99 ms",
        "ref p99 ms",
        "p99 ours/ref",
        "lost o/r",
        "targets",
    ]
    return markdown_table(headers, rows)


def _others(result: dict[str, Any]) -> float | None:
    """CPU (% of one core) the machine spent on anything but the server, its Redis and the load generator
    during the window: on a shared machine, what other tenants took from the run."""
    busy = result.get("cores_busy_percent")
    if not busy:
        return None
    ours = sum(
        v or 0.0
        for v in (
            (result.get("broker") or {}).get("cpu_percent"),
            (result.get("redis") or {}).get("cpu_percent"),
            result.get("client_cpu_percent"),
        )
    )
    return round(max(0.0, sum(busy.values()) - ours), 1)


def per_cpu_table(results: list[dict[str, Any]], base: str | None = None) -> str:
    """Every server side by side per scenario: deliveries/s and per second of server CPU, each as a ratio
    to ``base`` (default: the first server), with the server's, Redis's, the load generator's and everyone
    else's CPU (percent of one core; the machine has 100 % per core)."""
    servers = list(dict.fromkeys(r["server"] for r in results))
    base = base or (servers[0] if servers else None)
    by_key = {(r["server"], r["scenario"]): r for r in results}
    rows = []
    for name in dict.fromkeys(r["scenario"] for r in results):
        ref = by_key.get((base, name)) or {}
        for server in servers:
            r = by_key.get((server, name))
            if r is None:
                continue
            if r.get("failed"):
                rows.append([name, server, *["-"] * 11, r["failed"][:60]])
                continue
            per_cpu, ref_cpu = r.get("deliveries_per_cpu_s"), ref.get("deliveries_per_cpu_s")
            rate, ref_rate = r["deliveries_per_s"], ref.get("deliveries_per_s")
            rows.append(
                [
                    name,
                    server,
                    _fmt(rate, 0),
                    _fmt(rate / ref_rate, 2) + "x" if ref_rate else "-",
                    _fmt(per_cpu, 0),
                    _fmt(per_cpu / ref_cpu, 2) + "x" if per_cpu and ref_cpu else "-",
                    _fmt(r["latency_ms"]["p99"], 3),
                    _fmt(r["latency_ms"].get("p999"), 3),
                    _fmt((r.get("broker") or {}).get("cpu_percent")),
                    _fmt((r.get("redis") or {}).get("cpu_percent")),
                    _fmt(r.get("client_cpu_percent")),
                    _fmt(_others(r)),
                    f"{r['lost']}",
                    "",
                ]
            )
    headers = [
        "scenario",
        "server",
        "deliv/s",
        f"vs {base}",
        "deliv/srv-CPU-s",
        f"per CPU vs {base}",
        "p99 ms",
        "p99.9 ms",
        "srv CPU%",
        "redis CPU%",
        "load CPU%",
        "others CPU%",
        "lost",
        "note",
    ]
    return markdown_table(headers, rows)
