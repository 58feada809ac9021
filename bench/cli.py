"""``python -m bench``: run scenarios against a server, or race ours against the reference.

    python -m bench list
    python -m bench run throughput fanout1000 --duration 10          # starts our broker + its Redis
    python -m bench run --server reference ack                        # the reference cobras server instead
    python -m bench run --target ws://127.0.0.1:8765/v2 --appkey _pubsub --role pubsub --secret S ack
    python -m bench race --ours-rev HEAD                              # both servers, same load, ratios
    python -m bench race --order ours,nchan-memory,nchan-redis fanout100 ack   # vs nginx + nchan, per CPU-s
    python -m bench race --order gunicorn1,gunicorn2 --no-pin throughput      # 1 vs 2 gunicorn workers
    python -m bench run c100k --connections 20000 --setup-concurrency 256    # many connections, one process
    python -m bench run throughput fanout100 --half-load                     # + open loop at 50 % of max
    python -m bench chart bench/results/race-....json

Results go to bench/results/ (gitignored) as JSON and PNG; the table printed is Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .profile import Profiler, summarise, summary_table
from .race import median_runs, per_cpu_table, race, ratio_table
from .report import RESULTS_DIR, chart, results_table, save
from .runner import Target, failed_result, run_scenario
from .scenarios import RACE_SCENARIOS, SCENARIOS, Scenario, at_half_load, customise
from .servers import ROOT, default_cpu_layout, find_pid_listening, snapshot
from .targets import SERVER_KINDS, make_server, unsupported
from .wsclient import split_target

ON_REQUEST = ("c100k",)  # run only when named: 100,000 connections need raised kernel limits (README)


def _cpus(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    return [int(part) for part in text.split(",")]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="see `python -m bench list`")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--workers", type=int, help="load processes (default: by connection count)")
    parser.add_argument(
        "--setup-concurrency", type=int, default=64, help="connections opened at once, all processes together"
    )
    parser.add_argument("--broker-cpus", help="cores for the server, e.g. 0 (default: the first usable core)")
    parser.add_argument("--load-cpus", help="cores for load + Redis, e.g. 1 (default: the other cores)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument(
        "--ours-rev", help="run our broker from a snapshot of this git revision (default: the working tree)"
    )
    parser.add_argument("--subscribers", type=int, help="override the subscriber count of fan-out scenarios")
    parser.add_argument("--rate", type=float, help="override the open-loop rate (messages/s)")
    parser.add_argument("--connections", type=int, help="override the idle connection count")
    parser.add_argument("--message-size", type=int, help="approximate bytes per message (default 256)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server(s) started, e.g. COBRA_HISTORY_MAX_LENGTH=0 (repeatable)",
    )
    parser.add_argument(
        "--half-load",
        action="store_true",
        help="after each throughput scenario, rerun it open loop at 50%% of the rate reached (p99, p99.9)",
    )
    parser.add_argument("--name", help="file name prefix for the JSON and PNG")
    parser.add_argument("--no-chart", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the scenarios")
    run = commands.add_parser("run", help="run scenarios against one server")
    _common(run)
    run.add_argument("--server", choices=SERVER_KINDS, default="ours", help="server to start")
    run.add_argument("--target", help="an already running server, ws://host:port/v2 (nothing is started)")
    run.add_argument("--appkey", default="_pubsub")
    run.add_argument("--role", default="pubsub")
    run.add_argument("--secret", help="the role's secret (required with --target)")
    run.add_argument("--broker-pid", type=int, help="pid to watch with --target (default: found by port)")
    run.add_argument(
        "--profile", action="store_true", help="py-spy the server during each window (SVG + top functions)"
    )
    racer = commands.add_parser("race", help="ours then the reference, same load, ratios")
    _common(racer)
    racer.add_argument(
        "--order",
        default="ours,reference",
        help=f"servers, in the order they run ({', '.join(SERVER_KINDS)}); ratios are to the first",
    )
    racer.add_argument("--rounds", type=int, default=1, help="alternate the servers this many times; median")
    chart_cmd = commands.add_parser("chart", help="PNG of a results JSON")
    chart_cmd.add_argument("file", type=Path)
    chart_cmd.add_argument("--out", type=Path)
    chart_cmd.add_argument("--title", help="chart title (default: the file name)")
    return parser


def _scenarios(args: argparse.Namespace, default: Sequence[str]) -> list[Scenario]:
    names = args.scenarios or list(default)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; try `python -m bench list`")
    return [
        customise(
            SCENARIOS[n],
            subscribers=args.subscribers,
            rate=args.rate,
            connections=args.connections,
            message_size=args.message_size,
        )
        for n in names
    ]


def _layout(args: argparse.Namespace) -> tuple[list[int] | None, list[int] | None]:
    if args.no_pin:
        return None, None
    broker, load = default_cpu_layout()
    broker, load = _cpus(args.broker_cpus) or broker, _cpus(args.load_cpus) or load
    kinds = args.order.split(",") if args.command == "race" else [getattr(args, "server", "ours")]
    for kind in kinds:
        workers = int(kind.removeprefix("gunicorn") or 1) if kind.startswith("gunicorn") else 1
        if broker and workers > len(broker):
            # Pinned to one core, N workers would only take turns on it: not what "every core" measures.
            raise SystemExit(f"{kind} has {workers} workers for {len(broker)} server core(s): pass --no-pin")
    return broker, load


def _source(args: argparse.Namespace) -> tuple[Path, str]:
    if args.ours_rev:
        return snapshot(args.ours_rev)
    return ROOT, "working tree"


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    pairs = [item.partition("=") for item in args.server_env]
    if any(not key or not sep for key, sep, _ in pairs):
        raise SystemExit("--server-env takes KEY=VALUE")
    return {key: value for key, _, value in pairs}


def _finish(name: str, document: dict[str, Any], results: list[dict[str, Any]], no_chart: bool) -> None:
    path = save(name, document)
    print(f"\nresults: {path.relative_to(ROOT)}")
    if not no_chart:
        png = chart(results, path.with_suffix(".png"), f"{name}: {document.get('ours_source', '')}")
        if png:
            print(f"chart:   {png.relative_to(ROOT)}")


def command_run(args: argparse.Namespace) -> int:
    scenarios = _scenarios(args, [n for n in SCENARIOS if n not in ON_REQUEST])
    broker_cpus, load_cpus = _layout(args)
    results: list[dict[str, Any]] = []
    source, revision = _source(args)
    started = None
    if args.target:
        if not args.secret:
            raise SystemExit("--target needs --secret (and --appkey/--role if not _pubsub/pubsub)")
        pid = args.broker_pid or find_pid_listening(split_target(args.target)[1])
        target = Target("target", args.target, args.appkey, args.role, args.secret, broker_pid=pid)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / ".state"))
        started = make_server(
            args.server, workdir, broker_cpus, load_cpus, source=source, extra_env=_server_env(args)
        ).start()
        target = started.target()
    try:
        queue = list(scenarios)
        while queue:
            scenario = queue.pop(0)
            print(f"{target.name}: {scenario.title} ...", file=sys.stderr, flush=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            profiler = Profiler(RESULTS_DIR / f"profile-{target.name}-{scenario.name}-{stamp}")
            try:
                if reason := unsupported(target.name, scenario):
                    raise RuntimeError(reason)
                result = run_scenario(
                    scenario,
                    target,
                    duration=args.duration,
                    warmup=args.warmup,
                    workers=args.workers,
                    load_cpus=load_cpus,
                    run_tag=str(int(time.time())),
                    setup_concurrency=args.setup_concurrency,
                    on_window=profiler.start if args.profile else None,
                )
            except RuntimeError as exc:
                print(f"  failed: {exc}", file=sys.stderr, flush=True)
                results.append(failed_result(scenario, target, str(exc)))
                continue
            results.append(result)
            if args.half_load and (derived := at_half_load(scenario, result["publishes_per_s"])):
                queue.insert(0, derived)
            print(results_table(results[-1:]).split("\n", 2)[-1], file=sys.stderr, flush=True)
            if args.profile:
                profiler.wait()
                summary = summarise(profiler.raw)
                result["profile"] = {"svg": str(profiler.svg.relative_to(ROOT)), **summary}
                print(f"\nprofile of {scenario.name}: {profiler.svg.relative_to(ROOT)}\n", flush=True)
                print(summary_table(summary), flush=True)
    finally:
        if started is not None:
            started.stop()
    print(results_table(results))
    document = {
        "command": " ".join(sys.argv),
        "server": target.name,
        "ours_source": revision if target.name == "ours" else None,
        "broker_cpus": broker_cpus,
        "load_cpus": load_cpus,
        "results": results,
    }
    _finish(args.name or f"run-{target.name}", document, results, args.no_chart)
    return 0


def command_race(args: argparse.Namespace) -> int:
    scenarios = _scenarios(args, RACE_SCENARIOS)
    broker_cpus, load_cpus = _layout(args)
    source, revision = _source(args)
    workdir = Path(tempfile.mkdtemp(prefix="race-", dir=ROOT / ".state"))
    results = race(
        scenarios,
        workdir=workdir,
        source=source,
        broker_cpus=broker_cpus,
        load_cpus=load_cpus,
        duration=args.duration,
        warmup=args.warmup,
        workers=args.workers,
        setup_concurrency=args.setup_concurrency,
        order=tuple(args.order.split(",")),
        rounds=args.rounds,
        extra_env=_server_env(args),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        half_load=args.half_load,
    )
    summary = median_runs(results)
    print(results_table(summary))
    print()
    if any(r["server"] == "reference" for r in summary):
        print(ratio_table(summary))
        print()
    print(per_cpu_table(summary))
    document = {
        "command": " ".join(sys.argv),
        "ours_source": revision,
        "broker_cpus": broker_cpus,
        "load_cpus": load_cpus,
        "results": summary,
        "ratios": ratio_table(summary),
        "per_cpu": per_cpu_table(summary),
        "all_runs": results,
    }
    _finish(args.name or "race", document, summary, args.no_chart)
    return 0


def command_list(args: argparse.Namespace) -> int:
    for name, scenario in SCENARIOS.items():
        race_mark = " (race)" if name in RACE_SCENARIOS else ""
        print(f"{name:12} {scenario.title}{race_mark}")
    return 0


def command_chart(args: argparse.Namespace) -> int:
    document = json.loads(args.file.read_text())
    out = args.out or args.file.with_suffix(".png")
    chart(document["results"], out, args.title or args.file.stem)
    print(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    (ROOT / ".state").mkdir(exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    handlers = {"run": command_run, "race": command_race, "list": command_list, "chart": command_chart}
    return handlers[args.command](args)
