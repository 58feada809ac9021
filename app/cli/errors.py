"""How a command ends when it fails: one line on stderr and an exit code from :data:`EXIT_CODES`.

Handlers raise :class:`CliError` (or return :func:`fail`); :func:`explain` turns the exceptions a client or
the config store raises (refused connection, HTTP 403 on upgrade, authentication failure, Redis down)
into that one line, so no command ends in a traceback.
"""

from __future__ import annotations

import sys
import textwrap

import redis
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException

from ..client import CobraError
from ..config_store import ConfigError

OK = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (
        FAILED,
        "the command failed (the broker or Redis could not be reached or refused it, the check failed, "
        "the input was invalid, or subscribe --timeout passed in silence); the line on stderr says why",
    ),
    (USAGE, "invalid arguments (an unknown flag, a missing value, an endpoint that is not ws:// or wss://)"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


def exit_codes_epilog() -> str:
    rows = "\n".join(
        textwrap.fill(meaning, 100, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
        for code, meaning in EXIT_CODES
    )
    return f"Every command that fails ends with one line on stderr, 'error: <why>'. Exit codes:\n{rows}"


class CliError(Exception):
    """A failure to report as ``error: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = FAILED) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def explain(exc: BaseException, endpoint: str = "", appkey: str = "", role: str = "") -> CliError:
    """The one line (and exit code) for an exception raised while talking to a broker or a Redis."""
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, InvalidURI):
        return CliError(
            f"{endpoint or exc.uri!s} is not a WebSocket URL: use ws://HOST:PORT/v2 or wss://…", USAGE
        )
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 403:
            return CliError(f"the broker{where} refused app key {appkey!r} (HTTP 403): no such app there")
        return CliError(f"the broker{where} refused the WebSocket upgrade with HTTP {status}")
    if isinstance(exc, CobraError):
        if exc.reply.get("action", "").startswith("auth/authenticate"):
            reason = exc.body.get("error") or exc.code or "refused"
            return CliError(
                f"authentication failed{where}: the secret of role {role!r} in app {appkey!r} was refused "
                f"({reason})"
            )
        return CliError(str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return CliError(f"cannot connect to {endpoint or 'the server'}: connection refused (is it running?)")
    if isinstance(exc, TimeoutError):
        return CliError(f"no answer{where} in time ({exc or 'timed out'})")
    if isinstance(exc, (InvalidHandshake, WebSocketException)):
        return CliError(f"WebSocket failure{where}: {exc}")
    if isinstance(exc, OSError):
        return CliError(f"cannot connect to {endpoint or 'the server'}: {exc.strerror or exc}")
    if isinstance(exc, (ConfigError, redis.RedisError, LookupError)):
        return CliError(str(exc).strip("'\""))
    return CliError(f"unexpected {type(exc).__name__}: {exc}")
