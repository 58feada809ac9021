"""Redis Cluster's slot arithmetic and slot map, without I/O.

A key's slot is ``CRC16(key) mod 16384`` (CRC16-XMODEM), hashing only the *hash tag* (what is between the
first ``{`` and the next ``}``, when not empty) if the key has one. A channel's history stream and its
sharded Pub/Sub channel are the *same* string, ``<appkey>::<channel>``, so they always share a slot and
no braces need adding: keys stay the same on every shard kind and readable. (A channel name holding braces
moves its slot to the tag's, for both alike.)

The slot map says which master owns each slot, and which replicas follow it, as ``CLUSTER SLOTS`` tells it.
Redirections (``MOVED slot host:port``, ``ASK slot host:port``) are parsed here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SLOTS = 16384

Address = tuple[str, int]


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0, as the Redis Cluster specification says."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """What of ``key`` is hashed: the first non-empty ``{...}`` section, or the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    return crc16(hash_tag(key)) % SLOTS


@dataclass(frozen=True)
class MasterNode:
    address: Address
    node_id: str
    replicas: tuple[Address, ...] = ()


@dataclass
class SlotMap:
    """Slot → master address, and each master's replicas."""

    owners: list[Address | None] = field(default_factory=lambda: [None] * SLOTS)
    masters: dict[Address, MasterNode] = field(default_factory=dict)

    def owner(self, slot: int) -> Address | None:
        return self.owners[slot]

    @property
    def covered(self) -> bool:
        """Every slot has an owner (a cluster with an uncovered slot refuses its keys)."""
        return all(owner is not None for owner in self.owners)

    def move(self, slot: int, address: Address) -> None:
        """A ``MOVED`` says ``slot`` is ``address``'s now: trust it until the next full refresh."""
        self.owners[slot] = address
        if address not in self.masters:
            self.masters[address] = MasterNode(address, "")

    def slot_ranges(self, address: Address) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        for slot, owner in enumerate(self.owners):
            if owner != address:
                continue
            if ranges and ranges[-1][1] == slot - 1:
                ranges[-1] = (ranges[-1][0], slot)
            else:
                ranges.append((slot, slot))
        return ranges


def _address(entry: list, fallback_host: str) -> Address:
    host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
    # An empty host (or "?") means: the address this reply came from (CLUSTER SLOTS, cluster-announce-ip).
    return (host if host and host != "?" else fallback_host, int(entry[1]))


def parse_cluster_slots(reply: list, fallback_host: str) -> SlotMap:
    """A ``CLUSTER SLOTS`` reply: ``[[start, end, [host, port, id, …], [replica…]…], …]``."""
    slot_map = SlotMap()
    replicas: dict[Address, list[Address]] = {}
    ids: dict[Address, str] = {}
    for item in reply:
        start, end, master = int(item[0]), int(item[1]), item[2]
        address = _address(master, fallback_host)
        ids[address] = master[2].decode() if len(master) > 2 and isinstance(master[2], bytes) else ""
        known = replicas.setdefault(address, [])
        for replica in item[3:]:
            replica_address = _address(replica, fallback_host)
            if replica_address not in known:
                known.append(replica_address)
        for slot in range(start, end + 1):
            slot_map.owners[slot] = address
    slot_map.masters = {
        address: MasterNode(address, ids[address], tuple(found)) for address, found in replicas.items()
    }
    return slot_map


@dataclass(frozen=True)
class Redirect:
    ask: bool  # ASK: this one command goes there, after ASKING; MOVED: the slot is there for good
    slot: int
    address: Address


def parse_redirect(error: str) -> Redirect | None:
    """``MOVED 3999 127.0.0.1:6381`` or ``ASK 3999 127.0.0.1:6381``; None for any other error."""
    kind, _, rest = error.partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot_text, _, where = rest.partition(" ")
    host, _, port = where.rpartition(":")
    if not slot_text.isdigit() or not port.isdigit():
        return None
    return Redirect(kind == "ASK", int(slot_text), (host.strip("[]"), int(port)))


# How :func:`.history.publish_command` starts, up to the key's length: every publish has this layout, so
# its key is found at a fixed offset (0.5 µs) instead of by walking the arguments (4 µs).
_PUBLISH_HEAD = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n"
_PUBLISH_KEY_AT = len(_PUBLISH_HEAD) + 40 + len(b"\r\n$1\r\n1\r\n$")


def command_key(command: bytes) -> bytes | None:
    """The first key of one RESP-encoded command, as a cluster client routes it: the 4th argument of
    ``EVAL``/``EVALSHA`` (when it declares a key), else the 2nd. None when the command has no argument
    there (it cannot be routed by key)."""
    if (
        command.startswith(_PUBLISH_HEAD)
        and command[_PUBLISH_KEY_AT - 10 : _PUBLISH_KEY_AT] == b"\r\n$1\r\n1\r\n$"
    ):
        end = command.index(b"\r\n", _PUBLISH_KEY_AT)
        start = end + 2
        return command[start : start + int(command[_PUBLISH_KEY_AT:end])]
    args = _leading_args(command, 4)
    if not args:
        return None
    name = args[0].upper()
    if name in (b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL", b"FCALL_RO"):
        if len(args) < 4 or args[2] == b"0":
            return None
        return args[3]
    return args[1] if len(args) > 1 else None


def _leading_args(command: bytes, count: int) -> list[bytes]:
    """The first ``count`` bulk strings of a RESP array (``*N\\r\\n$len\\r\\ndata\\r\\n…``)."""
    if not command.startswith(b"*"):
        return []
    end = command.find(b"\r\n")
    total = int(command[1:end])
    position = end + 2
    args: list[bytes] = []
    while len(args) < min(count, total):
        end = command.find(b"\r\n", position)
        length = int(command[position + 1 : end])
        start = end + 2
        args.append(command[start : start + length])
        position = start + length + 2
    return args
