"""``redis+cluster://`` shard URLs: what they say about reaching a Redis Cluster. Pure: no I/O.

``redis+cluster://[[user]:password@]host:port[,host:port…]`` names a few *seed* nodes of one cluster; the
broker asks them for the slot map and then talks to whichever masters it names. Seeds need not be masters
and need not be all the nodes: one live node is enough to find the rest. A cluster has a single database,
so the URL has no ``/db``; a path or an unknown query option is refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

SCHEME = "redis+cluster"
PREFIX = SCHEME + "://"
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class ClusterURL:
    seeds: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    def node_url(self, host: str, port: int) -> str:
        """The ``redis://`` URL of one node of this cluster, with this URL's credentials."""
        credentials = ""
        if self.password is not None:
            user = quote(self.username, safe="") if self.username else ""
            credentials = f"{user}:{quote(self.password, safe='')}@"
        elif self.username:
            credentials = f"{quote(self.username, safe='')}@"
        where = f"[{host}]" if ":" in host else host
        return f"redis://{credentials}{where}:{port}/0"


def is_cluster_url(url: str) -> bool:
    return url.startswith(PREFIX)


def parse_cluster_url(url: str) -> ClusterURL:
    """Parse a ``redis+cluster://`` URL; raises ValueError saying what is wrong."""
    if not is_cluster_url(url):
        raise ValueError(f"a cluster URL starts with {PREFIX}")
    rest = url[len(PREFIX) :]
    # urlsplit cannot parse a comma-separated host list with ports, so the parts are taken apart here.
    for separator in ("?", "#"):
        if separator in rest:
            raise ValueError("a redis+cluster:// URL takes no query options or fragment")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise ValueError("a Redis Cluster has a single database: a redis+cluster:// URL has no /db path")
    username = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
        if not has_password and username is not None:
            password, username = username, None  # redis://secret@host is read as a password, as redis-py does
    seeds = tuple(_seed(part) for part in rest.split(","))
    if len(set(seeds)) != len(seeds):
        raise ValueError("a redis+cluster:// URL lists the same node twice")
    return ClusterURL(seeds, username, password)


def _seed(part: str) -> tuple[str, int]:
    part = part.strip()
    if not part:
        raise ValueError("a redis+cluster:// URL needs at least one host:port, with none empty")
    if part.startswith("["):  # [::1]:7000
        host, bracket, rest = part[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {part!r}: an IPv6 seed is written [addr]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
    if not host:
        raise ValueError(f"no host in {part!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"the port of {part!r} is not a number between 1 and 65535")
    return host, int(port_text)


def display_url(url: str, mask: str = "***") -> str:
    """The URL with its password replaced by ``mask`` (shard URLs get printed and logged)."""
    if "@" not in url:
        return url
    head, tail = url.rsplit("@", 1)
    scheme, _, credentials = head.partition("://")
    user, has_password, _secret = credentials.partition(":")
    return f"{scheme}://{user}:{mask}@{tail}" if has_password else f"{scheme}://{mask}@{tail}"
