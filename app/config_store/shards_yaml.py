"""The optional ``shards`` list of an ``apps.yaml``: the whole shard list, in ring order.

``shards: [{name: s0, url: redis://…}, {name: ha, url: redis+sentinel://…/MASTER}, …]`` — each entry any
shard kind (:class:`app.models.Shard` checks the URL). Absent means "leave the stored list alone"; an empty
list means "the config Redis alone". Only the shape is checked here (no I/O): whoever applies the list asks
each shard for a PING first, as ``shards add`` and the panel's shard form do.
"""

from __future__ import annotations

from typing import Any

from ..models import Shard
from .schema import ConfigError


def parse_shard_list(value: Any) -> tuple[Shard, ...]:
    """The shards of a file's ``shards`` value. Raises ConfigError naming the entry that is wrong."""
    if not isinstance(value, list):
        raise ConfigError("'shards' must be a list of {name, url} mappings")
    shards: list[Shard] = []
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or set(entry) != {"name", "url"}:
            raise ConfigError(f"shard {number}: expected a mapping with exactly 'name' and 'url'")
        try:
            shard = Shard(name=str(entry["name"]), url=str(entry["url"]))
        except ValueError as exc:
            raise ConfigError(f"shard {number} ({entry['name']!r}): {exc}") from None
        if any(s.name == shard.name for s in shards):
            raise ConfigError(f"shard {number}: the name {shard.name!r} is listed twice")
        shards.append(shard)
    return tuple(shards)
