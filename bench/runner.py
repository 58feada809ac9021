"""Run one scenario: start the load processes, open the window, sample the broker, and add up the reports."""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import psutil

from .limits import kernel_limits, shortfalls
from .plan import matching_count
from .scenarios import Scenario, build_plans
from .worker import worker_main

UNSET = 2**62  # progress slot of a (worker, publisher) pair with no subscriber: never the slowest
RSS_SAMPLE_INTERVAL = 0.25


@dataclass
class Target:
    """A Cobra server to measure: where it listens, the credentials, and the pids to watch (if local)."""

    name: str
    endpoint: str
    appkey: str
    role: str
    secret: str
    broker_pid: int | None = None
    redis_pid: int | None = None
    protocol: str = "cobra"  # "cobra" | "nchan" (bench/nchan.py): what the load processes speak


class ProcessWatch:
    """CPU and RSS of a local process *and its children*, sampled without disturbing it (psutil reads
    /proc/<pid>/stat and statm). Children count because nginx and gunicorn serve from worker processes
    forked by an idle master; our ``python -m app run`` has none."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.cpu_start = 0.0
        self.wall_start = 0.0
        self.rss_peak = 0

    def tree(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        rss = 0
        for process in self.tree():
            try:
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.rss_peak = max(self.rss_peak, rss)
        return rss

    def cpu_by_pid(self) -> dict[int, float]:
        seconds = {}
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[process.pid] = times.user + times.system
        return seconds

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid().values())

    def start(self) -> None:
        if self.process is not None:
            self.by_pid_start = self.cpu_by_pid()
            self.cpu_start, self.wall_start = sum(self.by_pid_start.values()), time.monotonic()

    def cpu_percent_by_process(self) -> dict[int, float]:
        """Percent of a core per process of the tree since ``start()``: how a gunicorn or nginx master
        spread the work over its workers (a worker that got no connections shows ~0)."""
        if self.process is None or not self.wall_start:
            return {}
        wall = time.monotonic() - self.wall_start
        now = self.cpu_by_pid()
        start = getattr(self, "by_pid_start", {})
        return {pid: round(100.0 * (cpu - start.get(pid, 0.0)) / wall, 1) for pid, cpu in now.items()}

    def cpu_percent(self) -> float | None:
        """Percent of one core used since ``start()`` (above 100 for several busy processes)."""
        if self.process is None:
            return None
        wall = time.monotonic() - self.wall_start
        return round(100.0 * (self.cpu_seconds() - self.cpu_start) / wall, 1) if wall > 0 else None


def percentiles(samples_us: array, step: int = 1) -> dict[str, float | int | None]:
    """p50/p99/p99.9/max in milliseconds (nearest rank) of microsecond samples."""
    if not samples_us:
        return {"p50": None, "p99": None, "p999": None, "max": None, "samples": 0}
    ordered = sorted(samples_us)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000, 3)

    return {"p50": rank(0.5), "p99": rank(0.99), "p999": rank(0.999), "max": rank(1.0), "samples": n * step}


def run_scenario(
    scenario: Scenario,
    target: Target,
    *,
    duration: float,
    warmup: float,
    workers: int | None = None,
    load_cpus: list[int] | None = None,
    run_tag: str = "0",
    settle: float = 2.0,
    setup_concurrency: int = 64,
    on_window: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` against ``target``; ``on_window(pid, seconds)`` is called as the window opens."""
    plans = build_plans(
        scenario,
        target=target.endpoint,
        appkey=target.appkey,
        role=target.role,
        secret=target.secret,
        workers=workers,
        cpus=load_cpus,
        run_tag=run_tag,
        setup_concurrency=setup_concurrency,
        protocol=target.protocol,
    )
    n_workers, n_publishers = len(plans), scenario.publishers
    ctx = multiprocessing.get_context("fork")  # the plans are plain data; fork starts ten processes in ms
    progress = ctx.RawArray("q", max(1, n_workers * n_publishers))
    for i in range(len(progress)):
        progress[i] = UNSET
    for plan in plans:
        for sub in plan.subscribers:
            for pub, channel in enumerate(plan.pub_channels):
                if channel == sub.channel:
                    progress[plan.worker_id * n_publishers + pub] = -1
    broker, redis = ProcessWatch(target.broker_pid), ProcessWatch(target.redis_pid)
    short = _limit_shortfalls(scenario, plans, target.broker_pid) if scenario.idle else []
    rss_before = broker.rss()
    pipes, processes = [], []
    for plan in plans:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker_main, args=(plan, child, progress), daemon=True)
        process.start()
        pipes.append(parent)
        processes.append(process)
    try:
        ready = _wait_all(pipes, "ready", timeout=plans[0].setup_timeout + 30)
        connections = [r["connections"] for r in ready]
        setup_began = min(r["setup_ns"][0] for r in ready)
        setup_done = max(r["setup_ns"][1] for r in ready)
        if scenario.idle:
            time.sleep(settle)  # let the broker finish its per-connection allocations before measuring
        rss_connected = broker.rss()
        start_ns = time.monotonic_ns() + 300_000_000
        for pipe in pipes:
            pipe.send(("go", start_ns, int(warmup * 1e9), int(duration * 1e9)))
        window_start = (start_ns + warmup * 1e9) / 1e9
        time.sleep(max(0.0, window_start - time.monotonic()))
        broker.start()
        redis.start()
        if on_window is not None and target.broker_pid:
            on_window(target.broker_pid, duration)
        cores_start, cores_wall = psutil.cpu_times(percpu=True), time.monotonic()
        window_end = window_start + duration
        while (left := window_end - time.monotonic()) > 0:
            broker.rss()
            time.sleep(min(RSS_SAMPLE_INTERVAL, left))
        broker_cpu, redis_cpu = broker.cpu_percent(), redis.cpu_percent()
        broker_by_process = broker.cpu_percent_by_process()
        cores_busy = _busy_percent(cores_start, psutil.cpu_times(percpu=True), time.monotonic() - cores_wall)
        rss_end = broker.rss()
        reports = _wait_all(pipes, "report", timeout=plans[0].drain_timeout + 60)
        rss_after_drain = broker.rss()
    finally:
        for pipe in pipes:
            try:
                pipe.send(("close",))
            except OSError:
                pass
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    result = aggregate(scenario, target, reports, duration, plans[0].pub_channels)
    result.update(
        warmup_s=warmup,
        workers=n_workers,
        connections=sum(connections),
        # The connect storm: every connection upgraded, handshaken, authenticated (and subscribed) over
        # all load processes at once, bounded by --setup-concurrency.
        setup_s=round((setup_done - setup_began) / 1e9, 3),
        connects_per_s=round(sum(connections) * 1e9 / max(1, setup_done - setup_began), 1),
        load_cpus=load_cpus,
        broker={
            "pid": target.broker_pid,
            "cpu_percent": broker_cpu,
            "cpu_percent_by_process": broker_by_process if len(broker_by_process) > 1 else None,
            "rss_mb_before": _mb(rss_before),
            "rss_mb_end": _mb(rss_end),
            "rss_mb_peak": _mb(broker.rss_peak),
            "rss_mb_after_drain": _mb(rss_after_drain),
        },
        redis={"pid": target.redis_pid, "cpu_percent": redis_cpu},
        # How busy each core was, whoever used it: on a shared machine, a server core much busier than the
        # server itself means another process took CPU from it (the numbers are then pessimistic).
        cores_busy_percent=cores_busy,
    )
    if broker_cpu and broker_cpu >= 5 and result["deliveries_per_s"]:
        # Deliveries per second of server CPU: on a shared machine the server may get only part of its core,
        # and this is what it would do with a whole one *if* CPU is its limit (an estimate, labelled so).
        result["deliveries_per_cpu_s"] = round(result["deliveries_per_s"] * 100 / broker_cpu, 1)
    broker_cores = psutil.Process(target.broker_pid).cpu_affinity() if target.broker_pid else []
    if broker_cores and len(broker_cores) < len(cores_busy):
        result["server_core_busy_percent"] = max(cores_busy[c] for c in broker_cores)
    if scenario.idle and target.broker_pid:
        # Measured at the end of the window, after warm-up + duration of silence: our broker releases a
        # connection's writer greenlet after 5 s idle, so this is the steady cost of an idle connection.
        # With subscribers too (c100k) it is the cost of the average connection, subscribed or not.
        held = sum(connections) if scenario.subscribers > 1 else scenario.idle
        result["idle"] = {
            "connections": held,
            "rss_kb_per_connection": round((rss_end - rss_before) / 1024 / held, 2),
            "rss_kb_per_connection_just_connected": round((rss_connected - rss_before) / 1024 / held, 2),
        }
        result["kernel_limits"] = kernel_limits()
        result["limit_shortfalls"] = short
    return result


def _limit_shortfalls(scenario: Scenario, plans: list[Any], broker_pid: int | None) -> list[str]:
    """The limits (README's Deployment section) this many connections exceed, each printed as a warning."""
    nofile = None
    if broker_pid:
        try:
            nofile = psutil.Process(broker_pid).rlimit(psutil.RLIMIT_NOFILE)[0]
        except (psutil.Error, OSError):
            pass
    found = shortfalls(
        kernel_limits(),
        connections=sum(len(p.publishers) + len(p.subscribers) + p.idle for p in plans),
        source_addresses=scenario.source_addresses or 1,
        setup_concurrency=sum(p.setup_concurrency for p in plans),
        broker_nofile=nofile,
    )
    for line in found:
        print(f"  warning: {line}", file=sys.stderr, flush=True)
    return found


def failed_result(scenario: Scenario, target: Target, reason: str) -> dict[str, Any]:
    """A row for a scenario that could not run (a server refusing the load is a finding, not a crash)."""
    return {
        "scenario": scenario.name,
        "title": scenario.title,
        "kind": scenario.kind,
        "server": target.name,
        "endpoint": target.endpoint,
        "params": scenario.describe(),
        "failed": reason,
        "publishes_per_s": 0.0,
        "deliveries_per_s": 0.0,
        "lost": None,
        "disconnects": None,
        "errors": [reason],
        "latency_ms": {"p50": None, "p99": None, "p999": None, "max": None, "samples": 0},
        "ack_latency_ms": {"p50": None, "p99": None, "p999": None, "max": None, "samples": 0},
    }


def _busy_percent(before: list[Any], after: list[Any], wall: float) -> dict[int, float]:
    # Against wall time, not the sum of the /proc/stat fields: the kernel's idle time is exact (NO_HZ) but
    # its per-CPU user/system times are tick samples that miss short bursts like a broker's.
    busy = {}
    for cpu, (b, a) in enumerate(zip(before, after, strict=True)):
        idle = (a.idle + getattr(a, "iowait", 0)) - (b.idle + getattr(b, "iowait", 0))
        busy[cpu] = round(max(0.0, min(100.0, 100.0 * (1 - idle / wall))), 1) if wall > 0 else 0.0
    return busy


def _mb(value: int) -> float | None:
    return round(value / 2**20, 1) if value else None


def _wait_all(pipes: list[Any], expected: str, timeout: float) -> list[Any]:
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < len(pipes):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{len(pipes) - len(answers)} load process(es) did not report {expected!r}")
        for pipe in wait([p for i, p in enumerate(pipes) if i not in answers], left):
            index = pipes.index(pipe)
            try:
                kind, payload = pipe.recv()
            except EOFError:
                raise RuntimeError(f"load process {index} died before reporting {expected!r}") from None
            if kind != expected:
                raise RuntimeError(f"load process {index}: {payload}")
            answers[index] = payload
    return [answers[i] for i in range(len(pipes))]


def aggregate(
    scenario: Scenario,
    target: Target,
    reports: list[dict[str, Any]],
    duration: float,
    pub_channels: list[str],
) -> dict[str, Any]:
    publishers: dict[int, dict[str, int]] = {}
    for report in reports:
        publishers.update({int(p): stats for p, stats in report["publishers"].items()})
    # Every message a publisher sent (acknowledged or not) must reach every subscriber of its channel whose
    # filter it passes: what is missing is lost, what is more is duplicated.
    expected = received = lost = extra = 0
    for report in reports:
        for stats in report["subscribers"].values():
            for pub, count in enumerate(stats["received"]):
                sent = publishers[pub]["sent"]
                want = 0
                if pub_channels[pub] == stats["channel"]:
                    want = matching_count(sent) if stats["filtered"] else sent
                expected += want
                received += count
                lost += max(0, want - count)
                extra += max(0, count - want)
    latency, ack_latency = array("q"), array("q")
    step = max(r["sample_step"] for r in reports)
    for report in reports:
        latency.frombytes(report["latency_us"])
        ack_latency.frombytes(report["ack_latency_us"])
    acked_window = sum(p["acked_window"] for p in publishers.values())
    sent_window = sum(p["sent_window"] for p in publishers.values())
    deliveries_window = sum(r["deliveries_window"] for r in reports)
    errors = [e for r in reports for e in r["errors"]][:10]
    return {
        "scenario": scenario.name,
        "title": scenario.title,
        "kind": scenario.kind,
        "server": target.name,
        "endpoint": target.endpoint,
        "params": scenario.describe(),
        "duration_s": duration,
        "publishes_per_s": round(acked_window / duration, 1),
        "sent_per_s": round(sent_window / duration, 1),
        "deliveries_per_s": round(deliveries_window / duration, 1),
        "published_total": sum(p["sent"] for p in publishers.values()),
        "publish_errors": sum(p["errors"] for p in publishers.values()),
        "expected_deliveries": expected,
        "received_deliveries": received,
        "lost": lost,
        "unexpected": extra,
        "out_of_order": sum(r["out_of_order"] for r in reports),
        "disconnects": sum(r["disconnects"] for r in reports),
        "errors": errors,
        "latency_ms": percentiles(latency, step),
        "ack_latency_ms": percentiles(ack_latency),
        "client_cpu_percent": round(100 * sum(r["cpu_seconds"] for r in reports) / duration, 1),
    }
