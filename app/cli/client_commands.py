"""``publish``, ``subscribe``, ``health``: Cobra clients with the flags of the Cobra CLI.

``subscribe`` runs until interrupted (or ``--count``/``--timeout``) and rides out a broker restart: it
reconnects with a growing delay and, when it was started with ``--position``, resumes after the position of
the last message it printed, so the restart costs no message and repeats none (while history retains them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, WebSocketException

from ..client import CobraClient, CobraError, HttpPublisher, HttpPublishError
from ..stream_sql import FilterError, compile_filter
from .errors import USAGE, CliError, explain
from .store_access import add_store_arguments, open_described_store
from .table import format_table

DEFAULT_ENDPOINT = "ws://127.0.0.1:8765/v2"
# How long one wait for a push lasts when no --timeout is given: a wake-up, never an exit.
IDLE_WAIT = 30.0
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until it works or Ctrl-C


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
    pub.add_argument(
        "--http",
        action="store_true",
        help="publish with signed HTTP requests (POST /v2/publish, up to 100 messages a request) instead of "
        "a WebSocket; --endpoint may stay ws://HOST:PORT/v2",
    )
    pub.set_defaults(handler=publish_command)

    sub = commands.add_parser(
        "subscribe",
        help="print the messages of a channel, one JSON line each, until interrupted",
        description="Print the messages of a channel, one JSON line each, until interrupted. When the "
        "connection drops (a broker restart), reconnect and say so on stderr; with --position, resume after "
        "the last message printed.",
    )
    add_client_arguments(sub, "_pubsub", "pubsub")
    sub.add_argument("--channel", help="channel (optional when --filter names one)")
    sub.add_argument("--filter", help='StreamSQL, e.g. "select data.fps from `engine_fps_id`"')
    sub.add_argument(
        "--position",
        help="resume after this position (0-0 for all retained history); after a reconnect, resume after "
        "the last message printed",
    )
    sub.add_argument(
        "--period",
        type=int,
        help="deliver in windows of this many seconds (PROTOCOL §11); an aggregate --filter defaults to 1",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="with an aggregate --filter, print each window's rows as JSON lines instead of a table",
    )
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages (0 = never)")
    sub.add_argument(
        "--timeout", type=float, default=0, help="exit 1 after this many silent seconds (0 = never)"
    )
    sub.set_defaults(handler=subscribe_command)

    health = commands.add_parser("health", help="check a broker end to end (exit 0 when healthy)")
    add_client_arguments(health, "_health", "health")
    health.add_argument("--timeout", type=float, default=10.0)
    health.set_defaults(handler=health_command)


# --------------------------------------------------------------------------- connecting
def check_endpoint(endpoint: str) -> None:
    if not endpoint.startswith(("ws://", "wss://")):
        raise CliError(
            f"--endpoint {endpoint!r} is not a WebSocket URL: use ws://HOST:PORT/v2 (or wss:// behind TLS)",
            USAGE,
        )


def role_secret(args: argparse.Namespace) -> tuple[str, str]:
    """(secret, where it came from); where is "" for ``--rolesecret``. Says on stderr which store it read:
    a local state folder may belong to another deployment than the broker at ``--endpoint``."""
    if args.rolesecret:
        return args.rolesecret, ""
    with open_described_store(args) as (store, where):
        app = store.get_app(args.appkey)
    if app is None:
        raise CliError(f"no app {args.appkey!r} in {where}; pass --rolesecret (or --redis-url)")
    if args.rolename not in app.roles:
        raise CliError(f"no role {args.rolename!r} in app {args.appkey!r} of {where}; pass --rolesecret")
    origin = f"secret of role {args.rolename!r} read from {where}"
    print(origin, file=sys.stderr, flush=True)
    return app.roles[args.rolename].secret, origin


def connect(args: argparse.Namespace, secret: str, origin: str, timeout: float = 10.0) -> CobraClient:
    """An authenticated client, or a CliError saying in one line why not."""
    try:
        return CobraClient(args.endpoint, args.appkey, args.rolename, secret, timeout=timeout)
    except Exception as exc:
        error = explain(exc, args.endpoint, args.appkey, args.rolename)
        if origin and isinstance(exc, CobraError) and exc.reply.get("action", "").startswith("auth/"):
            error = CliError(
                f"{error}; the {origin}, and that store may not be the broker's: pass --rolesecret, or "
                "--redis-url of the config Redis the broker uses"
            )
        raise error from None


def open_client(args: argparse.Namespace, timeout: float = 10.0) -> CobraClient:
    check_endpoint(args.endpoint)
    secret, origin = role_secret(args)
    return connect(args, secret, origin, timeout)


# --------------------------------------------------------------------------- commands
def _messages(args: argparse.Namespace) -> Iterator[Any]:
    lines = (
        [args.data] * args.repeat if args.data is not None else (line for line in sys.stdin if line.strip())
    )
    for number, line in enumerate(lines, 1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"message {number} is not JSON: {exc}") from None


def http_base(endpoint: str) -> str:
    """``ws://host:port/v2`` → ``http://host:port`` (and wss → https): where ``POST /v2/publish`` lives."""
    parts = urlsplit(endpoint)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


HTTP_BATCH = 100  # messages per request of publish --http


def http_publish_command(args: argparse.Namespace) -> int:
    check_endpoint(args.endpoint)
    secret, _origin = role_secret(args)
    sent = 0
    with HttpPublisher(http_base(args.endpoint), args.appkey, args.rolename, secret) as publisher:
        batch: list[tuple[str, Any]] = []
        for message in [*_messages(args), None]:
            if message is not None:
                batch.append((args.channel, message))
                if len(batch) < HTTP_BATCH:
                    continue
            if not batch:
                break
            try:
                results = publisher.publish_many(batch)
            except HttpPublishError as exc:
                raise CliError(f"HTTP publish refused: {exc}") from None
            refused = [r for r in results if "error" in r]
            if refused:
                raise CliError(
                    f"{len(refused)} message(s) refused: {refused[0]['error']} ({refused[0]['code']})"
                )
            sent += len(batch)
            batch = []
    print(f"published {sent} message(s) to {args.channel} over HTTP", file=sys.stderr)
    return 0


def publish_command(args: argparse.Namespace) -> int:
    if args.http:
        return http_publish_command(args)
    sent = 0
    with open_client(args) as client:
        started = time.monotonic()
        for message in _messages(args):
            try:
                client.publish(args.channel, message)
            except Exception as exc:
                raise explain(exc, args.endpoint, args.appkey, args.rolename) from None
            sent += 1
            if sent % 1000 == 0:
                print(
                    f"\r{sent} published ({sent / (time.monotonic() - started):.0f}/s)",
                    end="",
                    file=sys.stderr,
                )
    print(f"published {sent} message(s) to {args.channel}", file=sys.stderr)
    return 0


class Subscription:
    """One subscription of a command (``subscribe``, ``monitor``), reopened on a new connection whenever
    one drops. With ``resume``, it reopens after the position of the last message it received."""

    def __init__(
        self,
        args: argparse.Namespace,
        secret: str,
        origin: str,
        channel: str | None,
        filter: str | None = None,
        position: str | None = None,
        period: int | None = None,
    ) -> None:
        self.args = args
        self.period = period
        self.secret = secret
        self.origin = origin
        self.channel = channel
        self.filter = filter
        self.resume = position is not None
        self.position = position
        self.client: CobraClient | None = None

    def open(self) -> dict[str, Any]:
        client = connect(self.args, self.secret, self.origin)
        try:
            reply = client.subscribe(
                self.channel, filter=self.filter, position=self.position, period=self.period
            )
        except Exception as exc:
            client.close()
            raise explain(exc, self.args.endpoint, self.args.appkey, self.args.rolename) from None
        self.client = client
        return reply

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def reopen(self, reason: str) -> None:
        print(
            f"connection lost ({reason}); reconnecting to {self.args.endpoint}…", file=sys.stderr, flush=True
        )
        self.close()
        for attempt in range(sys.maxsize):
            time.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            try:
                reply = self.open()
            except CliError as exc:  # the broker is still down, or up but not ready yet
                if attempt % 10 == 9:
                    print(f"still reconnecting: {exc}", file=sys.stderr, flush=True)
                continue
            resumed = f"resumed after position {self.position}" if self.resume else "new messages only"
            print(
                f"reconnected to {self.args.endpoint}: subscribed to {reply.get('channel')} ({resumed})",
                file=sys.stderr,
                flush=True,
            )
            return

    def next_push(self, timeout: float) -> dict[str, Any] | None:
        """The next push; None after ``timeout`` seconds of silence; {} after a reconnect."""
        assert self.client is not None
        try:
            push = self.client.next_push(timeout=timeout)
        except TimeoutError:
            return None
        except (ConnectionClosed, WebSocketException, OSError) as exc:
            self.reopen(str(exc) or type(exc).__name__)
            return {}
        if push.get("action") == "rtm/subscription/data" and push.get("body", {}).get("position"):
            self.position = push["body"]["position"]
        return push


def subscribe_command(args: argparse.Namespace) -> int:
    if not args.channel and not args.filter:
        raise CliError("give --channel or --filter", USAGE)
    check_endpoint(args.endpoint)
    subscription = Subscription(
        args, *role_secret(args), args.channel, args.filter, args.position, period=args.period
    )
    reply = subscription.open()
    show_table = is_view(args.filter) and not args.json
    print(
        f"subscribed to {reply.get('channel')} at position {reply.get('position')}",
        file=sys.stderr,
        flush=True,
    )
    received = 0
    try:
        while not args.count or received < args.count:
            push = subscription.next_push(args.timeout or IDLE_WAIT)
            if push is None and args.timeout:
                raise CliError(f"no message for {args.timeout:g} s")
            if not push:
                continue
            if push.get("action") != "rtm/subscription/data":
                print(json.dumps(push), file=sys.stderr)
                continue
            body = push["body"]
            if body.get("dropped_groups"):
                print(
                    f"window over max_groups: {body['dropped_groups']} message(s) not counted",
                    file=sys.stderr,
                )
            if show_table:
                ended = time.strftime("%H:%M:%S")
                print(f"\nwindow ended {ended}, position {body.get('position')}", flush=True)
                print(format_table(body["messages"]), flush=True)
                received += len(body["messages"])
                continue
            for message in body["messages"]:
                print(json.dumps(message), flush=True)
                received += 1
    finally:
        subscription.close()
    return 0


def is_view(filter: str | None) -> bool:
    """Whether a filter is an aggregated view (§12), whose pushes are rows (the broker refuses bad ones)."""
    if not filter:
        return False
    try:
        return compile_filter(filter).view is not None
    except FilterError:
        return False


def health_command(args: argparse.Namespace) -> int:
    """Like ``cobra health``: publish, then find the message through history and live delivery."""
    channel = f"health-{uuid.uuid4().hex[:12]}"
    try:
        with open_client(args, args.timeout) as client:
            first = {"health": 1, "id": uuid.uuid4().hex}
            client.publish(channel, first)
            client.subscribe(channel, position="0-0")
            got = _next_message(client, args.timeout)
            if got != first:
                raise CliError(f"history check: expected {first}, got {got}")
            second = {"health": 2, "id": uuid.uuid4().hex}
            client.publish(channel, second)
            got = _next_message(client, args.timeout)
            if got != second:
                raise CliError(f"live check: expected {second}, got {got}")
            client.delete(channel)
    except Exception as exc:
        error = explain(exc, args.endpoint, args.appkey, args.rolename)
        raise CliError(f"unhealthy: {error}", error.code) from None
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
