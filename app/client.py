"""A small synchronous Cobra client, for the command line and for tests.

Built on python-websockets' sync client (an independent WebSocket implementation: it negotiates
permessage-deflate and the ``json`` subprotocol the way deployed Cobra clients do).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.sync.client import ClientConnection, connect

from .auth import compute_hash
from .http_publisher import HttpPublisher, HttpPublishError

__all__ = ["CobraClient", "CobraError", "HttpPublishError", "HttpPublisher", "endpoint_url"]


class CobraError(Exception):
    """An ``<action>/error`` reply."""

    def __init__(self, reply: dict[str, Any]) -> None:
        body = reply.get("body") or {}
        super().__init__(
            f"{reply.get('action')}: {body.get('error')} ({body.get('code') or body.get('reason')})"
        )
        self.reply = reply
        self.body = body
        self.code = body.get("code")


def endpoint_url(endpoint: str, appkey: str) -> str:
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{urlencode({'appkey': appkey})}"


class CobraClient:
    def __init__(
        self,
        endpoint: str,
        appkey: str,
        role: str | None = None,
        secret: str | None = None,
        *,
        timeout: float = 10.0,
        compression: str | None = "deflate",
    ) -> None:
        self.url = endpoint_url(endpoint, appkey)
        self.timeout = timeout
        self.ws: ClientConnection = connect(
            self.url,
            subprotocols=["json"],
            compression=compression,
            open_timeout=timeout,
            proxy=None,
            ping_interval=None,
            max_size=None,
            legacy=True,  # a plain connection object, not a context manager
        )
        self.pushes: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)
        self.connection_id: str | None = None
        if role is not None and secret is not None:
            self.authenticate(role, secret)

    def __enter__(self) -> CobraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close()

    # ------------------------------------------------------------------ plumbing
    def send(self, pdu: dict[str, Any]) -> None:
        self.ws.send(orjson.dumps(pdu).decode())

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        return orjson.loads(self.ws.recv(timeout=self.timeout if timeout is None else timeout))

    def request(
        self, action: str, body: dict[str, Any] | None = None, *, check: bool = True
    ) -> dict[str, Any]:
        """Send one request and return its reply; pushes that arrive meanwhile are kept for later."""
        pdu_id = next(self._ids)
        self.send({"action": action, "id": pdu_id, "body": body or {}})
        deadline = time.monotonic() + self.timeout
        while True:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if message.get("id") == pdu_id and message.get("action", "").startswith(action + "/"):
                if check and message["action"].endswith("/error"):
                    raise CobraError(message)
                return message
            self.pushes.append(message)

    def next_push(self, timeout: float | None = None) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.popleft()
        return self.receive(timeout)

    # ------------------------------------------------------------------ protocol
    def authenticate(self, role: str, secret: str) -> None:
        reply = self.request("auth/handshake", {"method": "role_secret", "data": {"role": role}})
        data = reply["body"]["data"]
        self.connection_id = data["connection_id"]
        self.request(
            "auth/authenticate",
            {"method": "role_secret", "credentials": {"hash": compute_hash(secret, data["nonce"])}},
        )

    def publish(self, channel: str, message: Any) -> dict[str, Any]:
        return self.request("rtm/publish", {"channel": channel, "message": message})["body"]

    def subscribe(
        self,
        channel: str | None = None,
        *,
        filter: str | None = None,
        position: str | None = None,
        subscription_id: str | None = None,
        batch_size: int | None = None,
        period: int | None = None,
        history: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key, value in (
            ("channel", channel),
            ("filter", filter),
            ("position", position),
            ("subscription_id", subscription_id),
            ("batch_size", batch_size),
            ("period", period),
            ("history", history),
        ):
            if value is not None:
                body[key] = value
        return self.request("rtm/subscribe", body)["body"]

    def unsubscribe(self, subscription_id: str) -> dict[str, Any]:
        return self.request("rtm/unsubscribe", {"subscription_id": subscription_id})["body"]

    def write(self, channel: str, message: Any) -> dict[str, Any]:
        return self.request("rtm/write", {"channel": channel, "message": message})["body"]

    def read(self, channel: str, position: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"channel": channel}
        if position is not None:
            body["position"] = position
        return self.request("rtm/read", body)["body"]

    def delete(self, channel: str) -> dict[str, Any]:
        return self.request("rtm/delete", {"channel": channel})["body"]
