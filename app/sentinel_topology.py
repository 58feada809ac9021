"""A Sentinel shard as the CLI and the admin panel show it: ask its Sentinels, then PING its master.

Blocking redis-py calls with short timeouts (the CLI, or a thread of the panel); the broker's own link
(:mod:`app.engine.sentinel_link`) follows failovers on its own and never uses this.
"""

from __future__ import annotations

from typing import Any

import redis

from .engine.failover import format_address, parse_rows
from .engine.sentinel_url import parse_sentinel_url


def sentinel_topology(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """``{"master": host:port, "master_url": redis://…, "replicas": [host:port…], "error": None}``, with
    None for master and master_url and the reason in error when no Sentinel names one. Never raises."""
    where = parse_sentinel_url(url)
    problems = []
    for sentinel in where.sentinels:
        client = redis.Redis.from_url(
            where.sentinel_url(sentinel),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,  # redis-py's SENTINEL REPLICAS rows then have str keys
        )
        try:
            master = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", where.master_name)
            if not master:
                problems.append(f"{format_address(sentinel)} does not monitor {where.master_name!r}")
                continue
            host, port = (x.decode() if isinstance(x, bytes) else str(x) for x in master)
            rows = client.execute_command("SENTINEL", "REPLICAS", where.master_name)
            replicas = []
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict):  # redis-py parses SENTINEL REPLICAS rows into dicts
                    # Its versions differ: some keep ``flags`` as Redis sends it (a killed old master
                    # reads "s_down,slave,disconnected"), others turn the flags into is_* keys.
                    down = row.get("is_sdown") or row.get("is_odown") or row.get("is_disconnected")
                    flags = str(row.get("flags") or "") + (",s_down" if down else "")
                    parsed = {"ip": row.get("ip"), "port": row.get("port"), "flags": flags}
                else:
                    (parsed,) = parse_rows([row])
                if not set(str(parsed.get("flags", "")).split(",")) & {"s_down", "o_down", "disconnected"}:
                    replicas.append(f"{parsed.get('ip')}:{parsed.get('port')}")
            return {
                "master": format_address((host, int(port))),
                "master_url": where.node_url((host, int(port))),
                "replicas": sorted(replicas),
                "error": None,
            }
        except (redis.RedisError, ValueError) as exc:
            problems.append(f"{format_address(sentinel)}: {exc or type(exc).__name__}")
        finally:
            client.close()
    return {"master": None, "master_url": None, "replicas": [], "error": "; ".join(problems)}
