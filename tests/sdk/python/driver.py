"""The public Satori RTM Python SDK (satori-rtm-sdk 1.5.0, unchanged) driven by JSON lines, for the end-to-end
tests. It runs in the SDK's own venv (scripts/install-sdks.sh), never in the project's;
tests/support/satori_sdk.py starts it, and tests/sdk/js/driver.js is its JavaScript twin with the same
commands and events.

    .state/satori-sdk-venv/bin/python driver.py '{"endpoint": ..., "appkey": ..., "role": ..., "secret": ...,
                                                  "protocol": "json" | "cbor"}'

stdin: one command per line (subscribe {id, mode, body}, publish, read, write, delete, exit); stdout: one
event per line (connected, disconnected, auth_failed, subscribed, subscribe_failed, data, info, reply, error).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from satori.rtm.auth import RoleSecretAuthDelegate
from satori.rtm.client import AuthError, SubscriptionMode, make_client

_print_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class ClientObserver:
    """Connection state changes after the first connect, and fast-forward notices (the SDK tells the client
    observer which subscription was fast-forwarded, without the PDU)."""

    def on_leave_connected(self) -> None:
        emit({"event": "disconnected"})

    def on_enter_connected(self) -> None:
        emit({"event": "connected", "reconnect": True})

    def on_fast_forward(self, channel: str) -> None:
        emit({"event": "info", "id": channel, "info": "fast_forward", "body": None})


class SubscriptionObserver:
    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id

    def on_enter_subscribed(self) -> None:
        emit({"event": "subscribed", "id": self.subscription_id, "body": None})

    def on_enter_failed(self, reason: Any) -> None:
        emit({"event": "subscribe_failed", "id": self.subscription_id, "reason": reason, "body": None})

    def on_subscription_data(self, data: dict[str, Any]) -> None:
        emit(
            {
                "event": "data",
                "id": data["subscription_id"],
                "messages": data["messages"],
                "position": data.get("position"),
            }
        )


def replier(ref: Any) -> Any:
    def reply(pdu: dict[str, Any]) -> None:
        emit({"event": "reply", "ref": ref, "action": pdu["action"], "body": pdu.get("body")})

    return reply


def run(client: Any, command: dict[str, Any]) -> bool:
    """Carry out one command; False when it is ``exit``."""
    cmd, ref = command["cmd"], command.get("ref")
    if cmd == "subscribe":
        mode = getattr(SubscriptionMode, command.get("mode", "SIMPLE"))
        sub_id = command["id"]
        client.subscribe(sub_id, mode, SubscriptionObserver(sub_id), args=command.get("body") or None)
    elif cmd == "publish":
        client.publish(command["channel"], command["message"], callback=replier(ref))
    elif cmd == "read":
        client.read(command["channel"], callback=replier(ref))
    elif cmd == "write":
        client.write(command["channel"], command["message"], callback=replier(ref))
    elif cmd == "delete":
        client.delete(command["channel"], callback=replier(ref))
    elif cmd == "exit":
        return False
    else:
        emit({"event": "error", "ref": ref, "message": f"unknown command {cmd!r}"})
    return True


def selected_protocol(client: Any) -> str:
    """The sub-protocol the server selected (read, not changed): the SDK's socket decodes incoming frames as
    CBOR only when it is "cbor", whatever the SDK was asked for."""
    protocols = client._internal.connection.ws.protocols or []
    return ",".join(protocols)


def main() -> int:
    config = json.loads(sys.argv[1])
    try:
        with make_client(
            endpoint=config["endpoint"],
            appkey=config["appkey"],
            protocol=config["protocol"],
            auth_delegate=RoleSecretAuthDelegate(config["role"], config["secret"]),
            observer=ClientObserver(),
        ) as client:
            emit({"event": "connected", "protocol": selected_protocol(client)})
            for line in sys.stdin:
                if line.strip() and not run(client, json.loads(line)):
                    break
    except AuthError as error:
        emit({"event": "auth_failed", "reason": str(error), "body": None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
