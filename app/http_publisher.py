"""A small synchronous client of HTTP publishing (PROTOCOL §13), for WSGI backends, cron jobs and scripts.

    from app.client import HttpPublisher

    publisher = HttpPublisher("http://127.0.0.1:8765", appkey="...", role="_pub", secret="...")
    publisher.publish("chat", {"text": "hello"})          # returns once Redis holds the message
    publisher.publish_many([("a", 1), ("b", {"x": 2})])   # one request, one result per publish

It keeps a small pool of keep-alive connections (safe to share between threads: each request takes its own
connection from the pool), signs every request, and retries on 503 (a shard briefly unavailable, a broker
restarting) and on a connection lost before the reply, with exponential backoff. Standard library only, so a
Flask or Django app gains no dependency.
"""

from __future__ import annotations

import http.client
import queue
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from .http_signing import ROLE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

PUBLISH_PATH = "/v2/publish"


class HttpPublishError(Exception):
    """The broker refused a publish: ``status`` is the HTTP status, ``code`` PROTOCOL §9's code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class HttpPublisher:
    def __init__(
        self,
        endpoint: str,
        appkey: str,
        role: str,
        secret: str,
        *,
        pool_size: int = 4,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be http://host[:port] or https://host[:port], not {endpoint!r}")
        self._connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._host = parts.hostname
        self._port = parts.port
        self._path = f"{parts.path.rstrip('/')}{PUBLISH_PATH}?{urlencode({'appkey': appkey})}"
        self.role = role
        self._secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._pool: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=pool_size)

    # ------------------------------------------------------------------ API
    def publish(self, channel: str | list[str], message: Any) -> dict[str, Any]:
        """Publish ``message`` to one channel (or a list); the broker's reply (``channels``, ``position``)."""
        field = {"channels": channel} if isinstance(channel, list) else {"channel": channel}
        return self._post({**field, "message": message})

    def publish_many(self, messages: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Many publishes in one request (at most 1,000); one result per publish, in order: either
        ``{"channels", "position"}`` or ``{"error", "code"}``."""
        body = {"messages": [{"channel": channel, "message": message} for channel, message in messages]}
        return self._post(body)["results"]

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> HttpPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the request
    def _post(self, document: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(document)
        attempt = 0
        while True:
            try:
                status, reply = self._request(body)
            except (OSError, http.client.HTTPException) as exc:
                # A kept-alive connection the broker closed meanwhile, or a broker restarting.
                if attempt >= self.retries:
                    raise HttpPublishError(0, "unreachable", str(exc) or type(exc).__name__) from None
            else:
                if status == 200:
                    return reply
                if status != 503 or attempt >= self.retries:
                    raise HttpPublishError(status, str(reply.get("code")), str(reply.get("error")))
            time.sleep(self.backoff * (2**attempt))
            attempt += 1

    def _request(self, body: bytes) -> tuple[int, dict[str, Any]]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            ROLE_HEADER: self.role,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            connection = self._pool.get_nowait()
        except queue.Empty:
            connection = self._connection_class(self._host, self._port, timeout=self.timeout)
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            try:
                self._pool.put_nowait(connection)
            except queue.Full:
                connection.close()
        try:
            reply = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            reply = {"error": data[:200].decode("utf-8", "replace"), "code": "bad_reply"}
        return response.status, reply if isinstance(reply, dict) else {
            "error": "bad reply",
            "code": "bad_reply",
        }
