"""Tables, JSON files and PNG charts of benchmark results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"

COLUMNS = (
    ("scenario", "scenario"),
    ("server", "server"),
    ("pub/s", "publishes_per_s"),
    ("deliv/s", "deliveries_per_s"),
    ("deliv/srv-CPU-s", "deliveries_per_cpu_s"),
    ("p50 ms", ("latency_ms", "p50")),
    ("p99 ms", ("latency_ms", "p99")),
    ("p99.9 ms", ("latency_ms", "p999")),
    ("lost", "lost"),
    ("disc", "disconnects"),
    ("srv CPU%", ("broker", "cpu_percent")),
    ("srv core busy%", "server_core_busy_percent"),
    ("srv RSS MB", ("broker", "rss_mb_peak")),
    ("redis CPU%", ("redis", "cpu_percent")),
    ("load CPU%", "client_cpu_percent"),
)


def _get(result: dict[str, Any], key: str | tuple[str, str]) -> Any:
    if isinstance(key, tuple):
        return (result.get(key[0]) or {}).get(key[1])
    return result.get(key)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def results_table(results: list[dict[str, Any]]) -> str:
    """One row per result (Markdown, so it pastes into BENCHMARKS.md as is)."""
    rows = [[_cell(_get(r, key)) for _, key in COLUMNS] for r in results]
    table = markdown_table([title for title, _ in COLUMNS], rows)
    notes = []
    for r in results:
        if r.get("idle"):
            idle = r["idle"]
            notes.append(
                f"{r['server']} {r['scenario']}: {idle['connections']:,} connections held, "
                f"{idle['rss_kb_per_connection']} KB of broker RSS each; connect storm "
                f"{r.get('connects_per_s', 0):,.0f} connections/s set up (upgrade, auth, subscribe)"
            )
        if r.get("failed"):
            notes.append(f"{r['server']} {r['scenario']}: FAILED: {r['failed'][:300]}")
        elif r.get("errors"):
            notes.append(f"{r['server']} {r['scenario']}: first errors: {r['errors'][:2]}")
    return table + ("\n\n" + "\n".join(notes) if notes else "")


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=RESULTS_DIR.parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def save(name: str, document: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {"machine": machine(), "bench_commit": git_commit(), **document}
    path.write_text(json.dumps(document, indent=2, sort_keys=False))
    return path


def chart(results: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Deliveries/s per scenario (log scale) and latency percentiles, one colour per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    servers = list(dict.fromkeys(r["server"] for r in results))
    throughput = [r for r in results if r["kind"] == "throughput"]
    latency = [r for r in results if r["kind"] == "latency"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    colours = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5"]
    width = 0.8 / max(1, len(servers))
    for ax, rows, metric in ((axes[0], throughput, "throughput"), (axes[1], latency, "latency")):
        names = list(dict.fromkeys(r["scenario"] for r in rows))
        for s_index, server in enumerate(servers):
            by_name = {r["scenario"]: r for r in rows if r["server"] == server}
            xs = [i + s_index * width for i in range(len(names))]
            if metric == "throughput":
                values = [by_name.get(n, {}).get("deliveries_per_s") or 0 for n in names]
                ax.bar(xs, values, width, label=server, color=colours[s_index % len(colours)])
            else:
                p50 = [(by_name.get(n, {}).get("latency_ms") or {}).get("p50") or 0 for n in names]
                p99 = [(by_name.get(n, {}).get("latency_ms") or {}).get("p99") or 0 for n in names]
                colour = colours[s_index % len(colours)]
                ax.bar(xs, p99, width, color=colour, alpha=0.35, label=f"{server} p99")
                ax.bar(xs, p50, width, color=colour, label=f"{server} p50")
        ax.set_xticks([i + width * (len(servers) - 1) / 2 for i in range(len(names))])
        ax.set_xticklabels(names, rotation=20)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("messages delivered / s (log)")
    axes[0].set_title("throughput")
    axes[1].set_yscale("log")  # p50s near 0.3 ms and p99s of seconds share the axis
    axes[1].set_ylabel("publish -> delivery latency, ms (log)")
    axes[1].set_title("latency")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
