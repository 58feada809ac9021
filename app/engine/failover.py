"""Following a Sentinel-managed master: which node is the master, when it changed, whom to ask. No I/O.

Two sources say where the master is, and both feed :class:`FailoverState`:

- Sentinel's ``+switch-master`` Pub/Sub notification (``<name> <old ip> <old port> <new ip> <new port>``),
  which arrives as soon as a failover is done;
- the answer to ``SENTINEL GET-MASTER-ADDR-BY-NAME``, asked when the link starts, every
  :data:`SETTLED_POLL` seconds as a safety net (a notification is lost while the Sentinel connection is
  down), and every :data:`OUTAGE_POLL` seconds while the link cannot reach its master (the "re-ask when a
  connection fails" rule: a failover may have happened while no Sentinel could tell us).

The state answers with a :class:`Switch` when the master moved, which the link applies by pointing its
publisher, reader and client at the new address. The Sentinel that answered last is asked first next time
(as redis-py's Sentinel client does): a dead Sentinel costs one connect timeout once, not on every ask.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sentinel_url import Address

OUTAGE_POLL = 0.5  # seconds between asks while the master does not answer
SETTLED_POLL = 5.0  # seconds between asks while all is well


@dataclass(frozen=True)
class Switch:
    """The master moved from ``old`` (None: the first answer) to ``new``."""

    old: Address | None
    new: Address
    failover: bool  # a real move of a known master (counted and timestamped), not the first discovery


class FailoverState:
    def __init__(self, master_name: str, sentinels: tuple[Address, ...]) -> None:
        if not sentinels:
            raise ValueError("at least one Sentinel is needed")
        self.master_name = master_name
        self.sentinels: list[Address] = list(sentinels)
        self.master: Address | None = None
        self.replicas: tuple[Address, ...] = ()
        self.failovers = 0
        self.last_failover: float | None = None  # wall-clock time the last move was seen

    # ------------------------------------------------------------------ what the Sentinels say
    def on_master(self, address: Address, now: float) -> Switch | None:
        """A Sentinel named ``address`` as the master; a Switch when that is news."""
        if address == self.master:
            return None
        old = self.master
        self.master = address
        self.replicas = tuple(r for r in self.replicas if r != address)
        failover = old is not None
        if failover:
            self.failovers += 1
            self.last_failover = now
        return Switch(old, address, failover)

    def on_notification(self, channel: bytes, payload: bytes, now: float) -> Switch | None:
        """A message of a Sentinel's Pub/Sub: ``+switch-master`` of our master moves it; anything else
        (another master's switch, other event channels) is not ours."""
        if channel != b"+switch-master":
            return None
        fields = payload.decode(errors="replace").split()
        if len(fields) != 5 or fields[0] != self.master_name or not fields[4].isdigit():
            return None
        return self.on_master((fields[3], int(fields[4])), now)

    def on_replicas(self, replicas: list[dict[str, str]]) -> None:
        """``SENTINEL REPLICAS`` rows: the replicas that are up (not down, not disconnected)."""
        up = []
        for row in replicas:
            flags = set(row.get("flags", "").split(","))
            if flags & {"s_down", "o_down", "disconnected"}:
                continue
            if row.get("ip") and str(row.get("port", "")).isdigit():
                up.append((row["ip"], int(row["port"])))
        self.replicas = tuple(sorted(r for r in up if r != self.master))

    # ------------------------------------------------------------------ whom to ask, and when
    def answered(self, sentinel: Address) -> None:
        """``sentinel`` answered: ask it first next time."""
        if sentinel in self.sentinels and self.sentinels[0] != sentinel:
            self.sentinels.remove(sentinel)
            self.sentinels.insert(0, sentinel)

    def poll_interval(self, link_available: bool) -> float:
        return SETTLED_POLL if link_available and self.master is not None else OUTAGE_POLL


def parse_master_reply(reply: object) -> Address | None:
    """``SENTINEL GET-MASTER-ADDR-BY-NAME``'s answer: ``[ip, port]``, or nil for an unknown master."""
    if not isinstance(reply, list) or len(reply) != 2:
        return None
    host, port = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
    return (host, int(port)) if port.isdigit() else None


def parse_rows(reply: object) -> list[dict[str, str]]:
    """``SENTINEL REPLICAS``'s answer (flat key/value lists, in RESP2) as dicts."""
    rows = []
    for flat in reply if isinstance(reply, list) else []:
        if not isinstance(flat, list):
            continue
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        rows.append(dict(zip(items[::2], items[1::2], strict=False)))
    return rows


def format_address(address: Address | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
