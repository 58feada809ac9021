"""Stream positions (PROTOCOL §7): ``"<ms>-<seq>"``, the ids Redis gives stream entries. No I/O.

Positions order messages of one channel; two positions compare as (ms, seq) pairs, never as strings.
"""

from __future__ import annotations

START = "0-0"  # before the first message: resuming from here replays the whole retained history

Position = tuple[int, int]


def parse_position(position: str) -> Position | None:
    """``"<ms>-<seq>"`` → (ms, seq), or None when malformed (PROTOCOL §7)."""
    ms, dash, seq = position.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        return None
    return int(ms), int(seq)
