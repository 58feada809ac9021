"""``LIKE`` with wildcards, in time linear in the subject's length for any pattern (SECURITY.md).

One subscriber's filter runs on every message of its channel in the broker's routing greenlet, so a
pattern must not be able to make one string cost seconds. Two classic traps, and what avoids each:

- ``%a%a%a%b``: a backtracking regex costs O(n^k) for k wildcards. Here the pattern is cut at each ``%``
  into fixed-width *segments* (literal runs and ``_``); the first is matched at the start, the last at the
  end, and each one between at its leftmost position after the previous one (greedy leftmost matching is
  always enough for globs: a later start can only leave less room for the rest). Segments never overlap,
  so the text is scanned once from left to right.
- ``%a_a_a_…_b%`` (a segment with ``_`` inside): even a regex without repetition searches it in
  O(n·w) for a segment of width w (every start position matches up to w-1 characters before failing);
  1,930 characters of such a pattern against a 1 MB string cost about a second. Such a segment is found
  with the bit-parallel Shift-And method (Baeza-Yates & Gonnet, "A new approach to text searching",
  CACM 1992) turned sideways: instead of one bit per pattern position stepped over the text a character at
  a time (a Python loop over n), one bit per *text* position, stepped over the pattern's w positions.
  ``occurs[c]`` has bit j set when the subject's j-th character is c (built once per character by C-speed
  ``bytes.translate`` and ``int(…, 2)``); a start p is a match when for every literal position t of the
  segment bit p of ``occurs[segment[t]] >> t`` is set, so the matches are the AND of w shifted masks:
  w word-parallel operations on n-bit integers, O(n·w/64) machine-word steps done in C, and O(n) Python
  work overall. A ``_`` costs nothing (it matches any character, so it adds no mask).

Short searches (window x width under :data:`BITWISE_FROM`) stay on the regex, which is faster there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# A segment search of at most this many (window length x segment width) steps uses the C regex directly:
# its worst case is then some tens of microseconds per segment, and it is faster than building bit masks.
BITWISE_FROM = 1 << 12

# (subject, start, end, its occurrence masks) -> the leftmost match start in [start, end), or -1
Finder = Callable[[str, int, int, "_Occurrences"], int]


def like_matcher(
    parts: list[Any], any_part: Any, one_part: Any, bitwise_from: int = BITWISE_FROM
) -> Callable[[str], bool]:
    """A whole-string matcher for LIKE ``parts`` (literal runs, ``any_part`` for ``%``, ``one_part`` for
    ``_``), in time linear in the subject's length (see the module docstring)."""
    segments: list[list[Any]] = [[]]
    for part in parts:
        if part is any_part:
            segments.append([])
        else:
            segments[-1].append(part)
    anchored = [_anchored(seg, one_part) for seg in segments]
    if len(segments) == 1:  # no %: one fixed-length pattern for the whole string, matched in O(n)
        whole = anchored[0][0].fullmatch
        return lambda s: whole(s) is not None
    (first, first_len), (last, last_len) = anchored[0], anchored[-1]
    middle = [_finder(seg, one_part, bitwise_from) for seg in segments[1:-1]]

    def match(s: str) -> bool:
        end = len(s) - last_len
        if end < first_len or (first_len and first.match(s) is None) or last.match(s, end) is None:
            return False
        pos = first_len
        occurrences = _Occurrences(s)  # built lazily, once per subject, shared by every segment
        for find, width in middle:
            if width:
                start = find(s, pos, end, occurrences)
                if start < 0:
                    return False
                pos = start + width
        return True

    return match


def _anchored(segment: list[Any], one_part: Any) -> tuple[re.Pattern[str], int]:
    """A regex without repetition for a segment matched at a known position: O(width) per attempt."""
    regex = "".join("." if p is one_part else re.escape(p) for p in segment)
    return re.compile(regex, re.DOTALL), _width(segment, one_part)


def _width(segment: list[Any], one_part: Any) -> int:
    return sum(1 if p is one_part else len(p) for p in segment)


def _finder(segment: list[Any], one_part: Any, bitwise_from: int) -> tuple[Finder, int]:
    """How to find ``segment``'s leftmost occurrence in a window, and its width."""
    width = _width(segment, one_part)
    if one_part not in segment:
        literal = "".join(segment)
        # str.find is linear in the worst case (CPython's two-way search for long needles).
        return (lambda s, start, end, _occurrences: s.find(literal, start, end)), width
    literals = _positions(segment, one_part)
    if not literals:  # only _: any position fits
        return (lambda s, start, end, _occurrences: start if start + width <= end else -1), width
    search = re.compile("".join("." if p is one_part else re.escape(p) for p in segment), re.DOTALL).search

    def find(s: str, start: int, end: int, occurrences: _Occurrences) -> int:
        # First the regex on a short window (a bounded cost: the usual match is near), then the masks.
        near = min(end, start + bitwise_from // width + width)
        found = search(s, start, near)
        if found is not None:
            return found.start()
        if near == end:
            return -1
        return _shift_and(occurrences, max(start, near - width + 1), end, literals, width)

    return find, width


def _positions(segment: list[Any], one_part: Any) -> list[tuple[int, str]]:
    """(offset, character) of every literal character of a fixed-width segment."""
    found, offset = [], 0
    for part in segment:
        if part is one_part:
            offset += 1
            continue
        for char in part:
            found.append((offset, char))
            offset += 1
    return found


def _shift_and(
    occurrences: _Occurrences, start: int, end: int, literals: list[tuple[int, str]], width: int
) -> int:
    """The leftmost p in [start, end - width] where every (t, c) of ``literals`` has s[p + t] == c."""
    if end - start < width:
        return -1
    matches = ((1 << (end - start - width + 1)) - 1) << start  # the starts that leave room for the segment
    for offset, char in literals:
        matches &= occurrences.of(char) >> offset
        if not matches:
            return -1
    return (matches & -matches).bit_length() - 1  # the lowest set bit: the leftmost start


class _Occurrences:
    """Bit j of ``of(c)`` is set when the window's j-th character is c. The window is cut into its four
    UTF-32 byte lanes once; a character's mask is the AND of its four bytes' masks, each lane's mask for a
    byte value built once (ASCII text shares the three zero-byte masks between all its characters)."""

    __slots__ = ("_bytes", "_cache", "_lanes", "_subject")

    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._lanes: list[bytes] = []
        self._cache: dict[str, int] = {}
        self._bytes: dict[tuple[int, int], int] = {}

    def of(self, char: str) -> int:
        mask = self._cache.get(char)
        if mask is None:
            if not self._lanes:
                data = self._subject[::-1].encode(
                    "utf-32-be"
                )  # reversed: int(…, 2) puts character 0 at bit 0
                self._lanes = [data[k::4] for k in range(4)]
            mask = -1
            for lane, byte in enumerate(ord(char).to_bytes(4, "big")):
                lane_mask = self._bytes.get((lane, byte))
                if lane_mask is None:
                    table = bytearray(b"0" * 256)
                    table[byte] = ord("1")
                    lane_mask = self._bytes[(lane, byte)] = int(self._lanes[lane].translate(table), 2)
                mask &= lane_mask
            self._cache[char] = mask
        return mask
