"""Publishers, Pub/Sub readers, routing and history: everything between a connection and Redis."""

from .core import DEFAULT_SHARD, Engine
from .errors import EngineError
from .history import HistoryPolicy
from .interface import EngineAPI, ShardStatus
from .links import ShardLink

__all__ = ["DEFAULT_SHARD", "Engine", "EngineAPI", "EngineError", "HistoryPolicy", "ShardLink", "ShardStatus"]
