"""``POST /v2/publish``: HTTP publishing for backends (PROTOCOL §13).

A Flask or Django view, a cron job or a shell script publishes with one signed request instead of holding a
WebSocket. The request enters the same publish path as ``rtm/publish`` (``store_publish`` in
:mod:`app.actions.pubsub`): the role's ``publish`` permission and channel patterns, the app's message-size
limit and publish rate, the republish rules, the pipelined batches; the reply goes out only once Redis holds
every message.

The publish rate applies per (app, role) in this process, since an HTTP request has no connection to hold a
bucket; a deployment of N processes therefore admits up to N times the rate, as N connections would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import gevent.event
import orjson

from .actions.pubsub import store_publish
from .auth import channel_allowed
from .engine import EngineError
from .http_signing import (
    ROLE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadRequest,
    PublishItem,
    parse_publish_body,
    signature_valid,
)
from .models import App, Role
from .protocol import ActionError, ErrorCode
from .session import TokenBucket

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

PUBLISH_PATH = "/v2/publish"
STORE_TIMEOUT = 10.0  # seconds a request waits for Redis to hold its messages before answering 503
_STATUS_TEXT = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    413: "413 Payload Too Large",
    429: "429 Too Many Requests",
    503: "503 Service Unavailable",
}
_STATUS_OF_CODE = {
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.BAD_SCHEMA: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SHARD_UNAVAILABLE: 503,
    ErrorCode.NOT_REPLICATED: 503,  # stored on the master, not confirmed on replicas: retry (PROTOCOL §13)
}


def _header(environ: dict[str, Any], name: str) -> str:
    return environ.get("HTTP_" + name.upper().replace("-", "_"), "")


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HttpPublishEndpoint:
    """The WSGI application of ``POST /v2/publish``, handed the broker's services."""

    def __init__(self, services: Services, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _reply(
                start_response, 405, {"error": "use POST", "code": "bad_schema"}, [("Allow", "POST")]
            )
        try:
            status, document = self._publish(environ)
        except _Refused as refused:
            status, document = refused.status, {"error": str(refused), "code": refused.code}
        except Exception:
            # A bug must cost this one request, never the process.
            log.exception("HTTP publish failed")
            status, document = 503, {"error": "internal error", "code": ErrorCode.INTERNAL_ERROR}
        if status != 200:
            self.services.stats.errors += 1
        return _reply(start_response, status, document)

    # ------------------------------------------------------------------ steps
    def _publish(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = self._read_body(environ)
        app, role = self._authenticate(environ, body)
        try:
            items, batched = parse_publish_body(body)
        except BadRequest as exc:
            raise _Refused(400, str(exc), exc.code) from None
        if "publish" not in role.permissions:
            raise _Refused(403, "this role may not publish", ErrorCode.PERMISSION_DENIED)
        if not batched:
            results = self._store(app, role, items)
            result = results[0]
            if "error" in result:
                return _STATUS_OF_CODE.get(result["code"], 400), result
            return 200, result
        return 200, {"results": self._store(app, role, items)}

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        """At most the broker's message-size limit (the same bound as one WebSocket message); a longer body
        is refused without being read to its end."""
        limit = self.services.config.settings.max_message_size
        length_text = environ.get("CONTENT_LENGTH") or ""
        if length_text:
            if not length_text.isdigit():
                raise _Refused(400, "bad Content-Length", ErrorCode.BAD_SCHEMA)
            if int(length_text) > limit:
                raise _Refused(413, f"body over {limit} bytes", ErrorCode.MESSAGE_TOO_LARGE)
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise _Refused(413, f"body over {limit} bytes", ErrorCode.MESSAGE_TOO_LARGE)
        return body

    def _authenticate(self, environ: dict[str, Any], body: bytes) -> tuple[App, Role]:
        """401 ``signature_invalid`` alike for an unknown app key, an unknown role, a stale timestamp or a
        wrong signature: a stranger learns nothing about which app keys or roles exist."""
        appkeys = parse_qs(environ.get("QUERY_STRING", "")).get("appkey", [])
        app = self.services.config.apps.get(appkeys[0]) if len(appkeys) == 1 else None
        role = app.roles.get(_header(environ, ROLE_HEADER)) if app is not None else None
        timestamp, signature = _header(environ, TIMESTAMP_HEADER), _header(environ, SIGNATURE_HEADER)
        if app is None or role is None or not signature_valid(role, timestamp, signature, body, self.clock()):
            self.services.stats.auth_failures += 1
            raise _Refused(401, "signature_invalid", "signature_invalid")
        return app, role

    def _store(self, app: App, role: Role, items: list[PublishItem]) -> list[dict[str, Any]]:
        """Publish every item that passes its checks; wait until Redis answered them all (or the timeout);
        one result per item, in order."""
        results: list[dict[str, Any]] = [{} for _ in items]
        done = gevent.event.Event()
        waiting = [0]

        def expect(index: int, channels: tuple[str, ...]) -> Callable[[str | EngineError], None]:
            outcome: dict[str, Any] = {"pending": len(channels), "position": None, "error": None}
            waiting[0] += 1

            def on_result(result: str | EngineError) -> None:
                if isinstance(result, EngineError):
                    outcome["error"] = outcome["error"] or result
                elif outcome["position"] is None:
                    outcome["position"] = result
                outcome["pending"] -= 1
                if outcome["pending"]:
                    return
                error = outcome["error"]
                results[index] = (
                    {"error": error.message, "code": error.code}
                    if error is not None
                    else {"channels": list(channels), "position": outcome["position"]}
                )
                waiting[0] -= 1
                if not waiting[0]:
                    done.set()

            return on_result

        services = self.services
        limits = services.limits
        bucket = self._buckets.setdefault((app.key, role.name), TokenBucket())
        for index, item in enumerate(items):
            try:
                limits.check_publish_channels(app, list(item.channels))
                for channel in item.channels:
                    if not channel_allowed(role, channel):
                        raise ActionError(
                            f"permission denied on channel {channel}", ErrorCode.PERMISSION_DENIED
                        )
                limits.check_publish(bucket, app)
                message = orjson.dumps(item.message)
                limits.check_message_size(app, len(message))
            except ActionError as exc:
                results[index] = {"error": exc.message, "code": exc.code}
                continue
            except orjson.JSONEncodeError as exc:
                results[index] = {"error": f"message cannot be stored: {exc}", "code": ErrorCode.BAD_SCHEMA}
                continue
            channels = list(item.channels)
            store_publish(
                services, app.key, role.name, channels, item.message, message, expect(index, item.channels)
            )
        if waiting[0] and not done.wait(STORE_TIMEOUT):
            for index, result in enumerate(results):
                if not result:
                    results[index] = {
                        "error": "no answer from Redis in time",
                        "code": ErrorCode.SHARD_UNAVAILABLE,
                    }
        return results


def _reply(
    start_response: Callable[..., Any], status: int, document: dict[str, Any], headers: Iterable = ()
) -> list[bytes]:
    data = orjson.dumps(document)
    start_response(
        _STATUS_TEXT[status],
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]
