"""A client session against the in-memory engine: what the action handlers see in production, minus the
sockets and Redis. ``Harness.send`` goes through the real dispatcher; replies land in a recording client."""

from __future__ import annotations

from typing import Any

import orjson

from app import auth
from app.actions import dispatch
from app.engine.memory import MemoryEngine
from app.engine.republish import Republisher
from app.limits import Limits
from app.models import ADMIN_APP, App, AppSettings, ConfigSnapshot, Role
from app.protocol import PUSH_HEAD
from app.services import ConfigView, Services
from app.session import Session
from app.settings import Settings
from app.stats import Stats

APP = "testapp"
OTHER_APP = "otherapp"
SECRET = "s3cr3t-s3cr3t"
NODE = "unit-node"


class Clock:
    """Time that moves only when a test says so (seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingClient:
    """The client side of a connection: every PDU it would be sent, decoded, and how it was closed."""

    encoding = "json"

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def send_payload(self, payload: bytes) -> None:
        if not self.closing:
            self.received.append(orjson.loads(payload))

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.send_payload(b"".join((PUSH_HEAD, b"%d" % counter, subscription_part, tail)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    def take(self) -> list[dict[str, Any]]:
        received, self.received = self.received, []
        return received


class LocalCluster:
    """The cluster as one process sees it when it is alone: its own sessions, closed through their
    clients. The registry entries it is told about are kept, to be read back."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[Session, RecordingClient]] = {}
        self.registry: dict[str, dict[str, Any] | None] = {}

    def connection_ids(self, app_key: str | None) -> list[str]:
        return sorted(cid for cid, (s, _) in self.members.items() if app_key is None or s.app_key == app_key)

    def close_connection(self, connection_id: str, app_key: str | None) -> bool:
        member = self.members.get(connection_id)
        if member is None or (app_key is not None and member[0].app_key != app_key):
            return False
        member[1].close(1000, "closed by admin")
        return True

    def connection_changed(self, connection_id: str, info: dict[str, Any] | None) -> None:
        self.registry[connection_id] = info

    def authenticated_connections(self, app_key: str, cluster_wide: bool = True) -> int:
        return sum(1 for info in self.registry.values() if info and info["app"] == app_key and info["role"])


def role(name: str = "client", permissions: tuple[str, ...] | None = None, channels=("*",)) -> Role:
    if permissions is None:
        return Role(name, SECRET, channels=channels)
    return Role(name, SECRET, permissions=permissions, channels=channels)


def make_app(key: str = APP, roles: tuple[Role, ...] = (), **settings: Any) -> App:
    roles = roles or (role(),)
    return App(key, {r.name: r for r in roles}, AppSettings(**settings))


class Harness:
    """One broker process's services around a memory engine, and sessions opened on it."""

    def __init__(self, *apps: App, clock: Any = None, **settings: Any) -> None:
        apps = apps or (make_app(),)
        self.settings = Settings(**settings)
        self.view = ConfigView(self.settings, ConfigSnapshot(1, {a.key: a for a in apps}), node=NODE)
        stats = Stats()
        self.engine = MemoryEngine(stats=stats) if clock is None else MemoryEngine(clock, stats=stats)
        self.cluster = LocalCluster()
        self.services = Services(
            engine=self.engine,
            republisher=Republisher(self.engine),  # type: ignore[arg-type]
            limits=Limits(self.settings),
            stats=stats,
            cluster=self.cluster,
            config=self.view,
        )
        self._ids = 0

    def reconfigure(self, *apps: App) -> None:
        self.view.update(ConfigSnapshot(self.view.snapshot.version + 1, {a.key: a for a in apps}))

    def open(self, app_key: str = APP, bucket_clock: Any = None) -> Client:
        self._ids += 1
        kwargs = {} if bucket_clock is None else {"clock": bucket_clock}
        session = Session(f"conn{self._ids}", app_key, "127.0.0.1", self.view, **kwargs)
        client = Client(self, session)
        self.cluster.members[session.id] = (session, client.transport)
        return client


class Client:
    """A session and its recording client, speaking PDUs."""

    def __init__(self, harness: Harness, session: Session) -> None:
        self.harness = harness
        self.session = session
        self.transport = RecordingClient()
        self._next_id = 0

    def send(self, action: str, body: Any = None, **fields: Any) -> list[dict[str, Any]]:
        """Send one request; returns what the client received meanwhile (replies, pushes)."""
        self._next_id += 1
        pdu = {"action": action, "id": self._next_id, "body": body if body is not None else fields}
        return self.send_raw(orjson.dumps(pdu))

    def send_raw(self, payload: bytes) -> list[dict[str, Any]]:
        dispatch(self.session, payload, self.harness.services, self.transport)
        return self.transport.take()

    def reply(self, action: str, body: Any = None, **fields: Any) -> dict[str, Any]:
        """The one PDU answering this request."""
        received = self.send(action, body, **fields)
        assert len(received) == 1, received
        return received[0]

    def handshake(self, role_name: str = "client") -> dict[str, Any]:
        return self.reply("auth/handshake", method="role_secret", data={"role": role_name})

    def authenticate(self, role_name: str = "client", secret: str = SECRET) -> dict[str, Any]:
        nonce = self.handshake(role_name)["body"]["data"]["nonce"]
        return self.reply(
            "auth/authenticate",
            method="role_secret",
            credentials={"hash": auth.compute_hash(secret, nonce)},
        )

    def subscribe(self, channel: str, **fields: Any) -> list[dict[str, Any]]:
        return self.send("rtm/subscribe", channel=channel, **fields)

    def publish(self, channel: str, message: Any, **fields: Any) -> dict[str, Any]:
        return self.reply("rtm/publish", channel=channel, message=message, **fields)


def messages(pdus: list[dict[str, Any]]) -> list[Any]:
    """The messages of the pushes among ``pdus``, in order."""
    return [m for p in pdus if p["action"] == "rtm/subscription/data" for m in p["body"]["messages"]]


__all__ = [
    "ADMIN_APP",
    "APP",
    "NODE",
    "OTHER_APP",
    "SECRET",
    "Client",
    "Clock",
    "Harness",
    "make_app",
    "messages",
    "role",
]
