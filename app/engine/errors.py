"""What the engine reports instead of raising Redis errors: a message and a PROTOCOL §9 code."""

from __future__ import annotations

from ..protocol import ErrorCode


class EngineError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def shard_unavailable(name: str) -> EngineError:
    return EngineError(f"shard {name} is unavailable", ErrorCode.SHARD_UNAVAILABLE)


def not_replicated(name: str, outcome: object, timeout_ms: int) -> EngineError:
    """A ``durability: replicated`` publish the master holds but too few replicas confirmed in time."""
    return EngineError(
        f"shard {name}: not confirmed by enough replicas within {timeout_ms / 1000:g} s ({outcome})",
        ErrorCode.NOT_REPLICATED,
    )
