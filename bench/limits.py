"""Process limits the benchmark raises for itself: 100,000 connections need 100,000 descriptors a side.

The kernel limits it cannot set (root sets them with sysctl; README's Deployment section lists them):
``fs.nr_open`` caps any RLIMIT_NOFILE, ``fs.file-max`` all descriptors of the machine,
``net.core.somaxconn`` a listen backlog, ``net.ipv4.ip_local_port_range`` the ephemeral ports *per source
address* (the load side spreads its sockets over 127.0.0.0/8, see pool.source_address: not the limit).
"""

from __future__ import annotations

import resource
from pathlib import Path


def raise_nofile(wanted: int = 1_048_576) -> int:
    """Raise this process's RLIMIT_NOFILE towards ``wanted`` (the hard limit too, when privileged); returns
    the soft limit now in force. Used by the load processes and (as ``preexec_fn``) the servers started:
    100,000 connections need 100,000 descriptors on each side. fs.nr_open caps what root may set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except OSError:
        nr_open = wanted
    target = min(wanted, nr_open)
    if hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            target = hard  # unprivileged: the hard limit is as far as it goes
    target = min(target, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


def kernel_limits() -> dict[str, str]:
    """The sysctls that bound a 100,000-connection run, as read now (recorded with the results)."""
    names = (
        "fs/file-max",
        "fs/nr_open",
        "net/core/somaxconn",
        "net/ipv4/ip_local_port_range",
        "net/netfilter/nf_conntrack_max",  # "?" when conntrack is not loaded
        "net/ipv4/tcp_mem",
    )
    found = {}
    for name in names:
        try:
            found[name.replace("/", ".")] = " ".join(Path("/proc/sys", name).read_text().split())
        except OSError:
            found[name.replace("/", ".")] = "?"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    found["RLIMIT_NOFILE"] = f"{soft} (hard {hard})"
    return found


def shortfalls(
    limits: dict[str, str],
    *,
    connections: int,
    source_addresses: int,
    setup_concurrency: int,
    broker_nofile: int | None,
) -> list[str]:
    """What in ``limits`` (from :func:`kernel_limits`) falls short of a run of ``connections`` through
    ``source_addresses`` loopback addresses, README's Deployment section naming each: printed before the run
    and recorded with it, so a run that fails or stalls on a limit says which."""
    found = []

    def number(name: str, index: int = 0) -> int | None:
        try:
            return int(limits.get(name, "?").split()[index])
        except (ValueError, IndexError):
            return None

    if broker_nofile is not None and broker_nofile < connections + 100:
        found.append(
            f"broker RLIMIT_NOFILE {broker_nofile:,} < {connections + 100:,} (a descriptor per client, plus "
            "Redis and files): raise its hard limit (ulimit -Hn, systemd LimitNOFILE=) or use --connections"
        )
    low, high = number("net.ipv4.ip_local_port_range", 0), number("net.ipv4.ip_local_port_range", 1)
    if low is not None and high is not None:
        per_address = -(-connections // max(1, source_addresses))  # ceiling
        if per_address > high - low + 1:
            found.append(
                f"{per_address:,} connections per source address > {high - low + 1:,} ephemeral ports "
                "(net.ipv4.ip_local_port_range): more source addresses, or a wider range"
            )
    somaxconn = number("net.core.somaxconn")
    if somaxconn is not None and somaxconn < setup_concurrency:
        found.append(
            f"net.core.somaxconn {somaxconn:,} < --setup-concurrency {setup_concurrency:,}: the listen "
            "backlog overflows and dropped SYNs are retried after 1 s"
        )
    file_max = number("fs.file-max")
    if file_max is not None and file_max < 2 * connections + 10_000:
        found.append(f"fs.file-max {file_max:,} < {2 * connections + 10_000:,} (both sides on this machine)")
    return found
