"""Publishers, Pub/Sub readers, routing and history: everything between a connection and Redis."""

from .core import DEFAULT_SHARD, Engine, ShardLink
from .errors import EngineError
from .history import HistoryPolicy

__all__ = ["DEFAULT_SHARD", "Engine", "EngineError", "HistoryPolicy", "ShardLink"]
