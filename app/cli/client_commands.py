"""``publish``, ``subscribe``, ``health``: Cobra clients with the flags of the Cobra CLI."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from ..client import CobraClient, CobraError
from .common import add_store_arguments, fail, open_store

DEFAULT_ENDPOINT = "ws://127.0.0.1:8765/v2"


def add_client_arguments(parser: argparse.ArgumentParser, appkey: str, role: str) -> None:
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help=f"broker URL (default {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--appkey", default=appkey, help=f"app key (default {appkey})")
    parser.add_argument("--rolename", default=role, help=f"role (default {role})")
    parser.add_argument(
        "--rolesecret", default=None, help="role secret (default: looked up in the local config store)"
    )
    add_store_arguments(parser)


def register(commands: Any) -> None:
    pub = commands.add_parser("publish", help="publish messages (JSON) to a channel")
    add_client_arguments(pub, "_pubsub", "pubsub")
    pub.add_argument("--channel", required=True)
    pub.add_argument("--data", help="one JSON message; without it, one message per line of standard input")
    pub.add_argument("--repeat", type=int, default=1, help="publish --data this many times")
    pub.set_defaults(handler=publish_command)

    sub = commands.add_parser("subscribe", help="print the messages of a channel, one JSON line each")
    add_client_arguments(sub, "_pubsub", "pubsub")
    sub.add_argument("--channel", help="channel (optional when --filter names one)")
    sub.add_argument("--filter", help='StreamSQL, e.g. "select data.fps from `engine_fps_id`"')
    sub.add_argument("--position", help="resume after this position; 0-0 for all retained history")
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages (0 = never)")
    sub.add_argument(
        "--timeout", type=float, default=0, help="exit 1 after this many silent seconds (0 = never)"
    )
    sub.set_defaults(handler=subscribe_command)

    health = commands.add_parser("health", help="check a broker end to end (exit 0 when healthy)")
    add_client_arguments(health, "_health", "health")
    health.add_argument("--timeout", type=float, default=10.0)
    health.set_defaults(handler=health_command)


def _secret(args: argparse.Namespace) -> str:
    if args.rolesecret:
        return args.rolesecret
    with open_store(args) as store:
        app = store.get_app(args.appkey)
    if app is None or args.rolename not in app.roles:
        raise LookupError(f"no role {args.rolename!r} in app {args.appkey!r}; pass --rolesecret")
    return app.roles[args.rolename].secret


def _connect(args: argparse.Namespace, timeout: float = 10.0) -> CobraClient:
    return CobraClient(args.endpoint, args.appkey, args.rolename, _secret(args), timeout=timeout)


def publish_command(args: argparse.Namespace) -> int:
    try:
        client = _connect(args)
    except (OSError, LookupError, CobraError) as exc:
        return fail(str(exc))
    sent = 0
    with client:
        lines = (
            [args.data] * args.repeat
            if args.data is not None
            else (line for line in sys.stdin if line.strip())
        )
        started = time.monotonic()
        for line in lines:
            try:
                message = json.loads(line)
            except json.JSONDecodeError as exc:
                return fail(f"not JSON: {exc}")
            try:
                client.publish(args.channel, message)
            except CobraError as exc:
                return fail(str(exc))
            sent += 1
            if sent % 1000 == 0:
                print(
                    f"\r{sent} published ({sent / (time.monotonic() - started):.0f}/s)",
                    end="",
                    file=sys.stderr,
                )
    print(f"published {sent} message(s) to {args.channel}", file=sys.stderr)
    return 0


def subscribe_command(args: argparse.Namespace) -> int:
    if not args.channel and not args.filter:
        return fail("give --channel or --filter")
    try:
        client = _connect(args)
        reply = client.subscribe(args.channel, filter=args.filter, position=args.position)
    except (OSError, LookupError, CobraError) as exc:
        return fail(str(exc))
    print(
        f"subscribed to {reply.get('channel')} at position {reply.get('position')}",
        file=sys.stderr,
        flush=True,
    )
    received = 0
    with client:
        while not args.count or received < args.count:
            try:
                push = client.next_push(timeout=args.timeout or None)
            except TimeoutError:
                return fail(f"no message for {args.timeout} s")
            if push.get("action") != "rtm/subscription/data":
                print(json.dumps(push), file=sys.stderr)
                continue
            for message in push["body"]["messages"]:
                print(json.dumps(message), flush=True)
                received += 1
    return 0


def health_command(args: argparse.Namespace) -> int:
    """Like ``cobra health``: publish, then find the message through history and live delivery."""
    channel = f"health-{uuid.uuid4().hex[:12]}"
    try:
        with _connect(args, args.timeout) as client:
            first = {"health": 1, "id": uuid.uuid4().hex}
            client.publish(channel, first)
            client.subscribe(channel, position="0-0")
            got = _next_message(client, args.timeout)
            if got != first:
                return fail(f"history check: expected {first}, got {got}")
            second = {"health": 2, "id": uuid.uuid4().hex}
            client.publish(channel, second)
            got = _next_message(client, args.timeout)
            if got != second:
                return fail(f"live check: expected {second}, got {got}")
            client.delete(channel)
    except (OSError, LookupError, CobraError, TimeoutError) as exc:
        return fail(f"unhealthy: {exc}")
    print(f"OK: {args.endpoint} published, replayed from history and delivered live")
    return 0


def _next_message(client: CobraClient, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        push = client.next_push(timeout=max(0.01, deadline - time.monotonic()))
        if push.get("action") == "rtm/subscription/data":
            return push["body"]["messages"][0]
        if push.get("action") == "rtm/subscription/error":
            raise CobraError(push)
