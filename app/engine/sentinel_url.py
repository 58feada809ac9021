"""``redis+sentinel://`` shard URLs: what they say, without I/O.

``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/MASTER_NAME[/DB][?sentinel_password=…]``

- the hosts are Sentinels (port 26379 when omitted), asked in order until one answers;
- ``MASTER_NAME`` is the name the Sentinels monitor (``sentinel monitor <name> …``);
- the password (and user) before ``@`` are those of the Redis nodes (master and replicas);
- ``sentinel_password`` (and ``sentinel_username``) authenticate to the Sentinels themselves
  (``requirepass`` in sentinel.conf), which is often a different secret.

The URL module of the standard library cannot read a list of hosts (``.port`` raises on ``a:1,b:2``), so the
netloc is split here by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379

Address = tuple[str, int]


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[Address, ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the data nodes'
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def node_url(self, address: Address) -> str:
        """The ``redis://`` URL of one data node (the master Sentinel named), with this URL's credentials."""
        host, port = address
        host = f"[{host}]" if ":" in host else host
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"redis://{auth}{host}:{port}/{self.db}"

    def sentinel_url(self, address: Address) -> str:
        """The ``redis://`` URL of one Sentinel, with the Sentinels' credentials."""
        host, port = address
        host = f"[{host}]" if ":" in host else host
        auth = ""
        if self.sentinel_password is not None:
            user = quote(self.sentinel_username or "", safe="")
            auth = f"{user}:{quote(self.sentinel_password, safe='')}@"
        return f"redis://{auth}{host}:{port}/0"


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; raises ValueError saying what is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SCHEME}:// URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed "[" of an IPv6 address
        raise ValueError(f"bad {SCHEME}:// URL ({exc}): an IPv6 Sentinel is written [addr]:port") from None
    if parts.fragment:
        raise ValueError(f"a {SCHEME}:// URL takes no #fragment")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # "user@" alone: redis-py reads a lone userinfo as the password ("@" alone: none)
            username, password = None, unquote(user) or None
    sentinels = tuple(_address(text) for text in hosts.split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise ValueError(f"a {SCHEME}:// URL names the master after the hosts: …/MASTER_NAME")
    if len(path) > 2:
        raise ValueError(f"a {SCHEME}:// URL's path is /MASTER_NAME or /MASTER_NAME/DB")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"the database number must be a non-negative integer, got {path[1]!r}")
        db = int(path[1])
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"sentinel_password", "sentinel_username"}
    if unknown:
        raise ValueError(f"unknown option(s) in a {SCHEME}:// URL: {', '.join(sorted(unknown))}")
    return SentinelURL(
        sentinels=sentinels,
        master_name=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=_last(query, "sentinel_username"),
        sentinel_password=_last(query, "sentinel_password"),
    )


def _address(text: str) -> Address:
    text = text.strip()
    if not text:
        raise ValueError("an empty Sentinel address in the host list")
    if text.startswith("["):  # [::1]:26379
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad Sentinel address {text!r}")
        port_text = rest[1:]
    else:
        host, _colon, port_text = text.partition(":")
    if not host:
        raise ValueError(f"a Sentinel address without a host: {text!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad Sentinel port in {text!r}")
    return host, int(port_text)


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def hide_sentinel_password(url: str) -> str:
    """The URL with both passwords replaced by ``***`` (shard URLs get printed and logged)."""
    try:
        parsed = parse_sentinel_url(url)
    except ValueError:
        return url
    parts = urlsplit(url)
    _userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = hosts
    if at and parsed.password is not None:
        netloc = f"{quote(parsed.username or '', safe='')}:***@{hosts}"
    query = parts.query
    if parsed.sentinel_password is not None:
        query = "&".join(
            "sentinel_password=***" if pair.startswith("sentinel_password=") else pair
            for pair in parts.query.split("&")
        )
    return parts._replace(netloc=netloc, query=query).geturl()
