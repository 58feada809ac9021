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
