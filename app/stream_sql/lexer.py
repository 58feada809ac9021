"""Tokens of the StreamSQL dialect (PROTOCOL §6).

The lexer is a generator so that the parser pulls tokens one at a time: the first problem in reading order
is the one reported, whether it is lexical (an unterminated string) or syntactic (a misspelt keyword).

Lexical rules, where §6 is silent:
- A field path is dot-separated segments written without spaces: ``data.fps``. A segment is a name
  (letters, digits, ``_``; the first segment may not start with a digit, so that ``1.5`` stays a number) or
  anything but a backtick inside backticks: data.`content-type`, data.`a.b` (one key with a dot).
- Keywords are ASCII and case-insensitive; a field named like a keyword needs backticks: `null`, `from`.
- Strings are single-quoted, a quote inside is doubled (``'it''s'``), as in SQL. Double quotes are refused
  rather than guessed at (SQL reads them as identifiers, MySQL as strings).
- Numbers: ``42``, ``-7``, ``2.5``, ``.5``, ``1e3``. An integer literal stays an int, anything with a dot or
  exponent is a float.
- The channel after FROM is either backtick-quoted (anything but a backtick) or bare: a run of letters, digits
  and ``_ - . : /``, so usual names (``engine_fps_id``, ``sms_v1-neo``) need no quoting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from app.stream_sql.errors import FilterError

KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "LIKE", "IS", "NULL", "TRUE", "FALSE"}
)
OPERATORS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})

# Token kinds.
KEYWORD, PATH, STRING, NUMBER, OPERATOR, PUNCT, CHANNEL, END = (
    "keyword",
    "path",
    "string",
    "number",
    "operator",
    "punct",
    "channel",
    "end",
)


class Token(NamedTuple):
    kind: str
    value: Any  # KEYWORD: upper-case word; PATH: tuple of segments; literals: the Python value
    pos: int
    text: str  # the source text, for error messages


_SPACE = re.compile(r"\s*")
_NAME = re.compile(r"[^\W\d]\w*")
_SEGMENT_AFTER_DOT = re.compile(r"\w+")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_TAIL = re.compile(r"[\w.`]+")  # what glued to a number makes it a bad literal: 12abc, 1.2.3
_OPERATOR = re.compile(r"[=!<>]+")
_BARE_CHANNEL = re.compile(r"[\w\-.:/]+")


def describe(token: Token) -> str:
    """How an error message names a token: its text, shortened so a 4 KB filter cannot flood a log line."""
    text = token.text if len(token.text) <= 40 else token.text[:37] + "..."
    return f"token {text!r}"


def tokens(text: str) -> Iterator[Token]:
    """Yield the tokens of ``text``, then one END token; raise FilterError at the first lexical problem."""
    pos, length, after_from = 0, len(text), False
    while True:
        pos = _SPACE.match(text, pos).end()
        if pos >= length:
            yield Token(END, None, length, "")
            return
        if after_from:
            after_from = False
            channel = _channel(text, pos)
            if channel is not None:
                yield channel
                pos += len(channel.text)
                continue
        char = text[pos]
        if char == "'":
            token = _string(text, pos)
        elif char == "`" or _NAME.match(text, pos):
            token = _path(text, pos)
            after_from = token.kind == KEYWORD and token.value == "FROM"
        elif (match := _NUMBER.match(text, pos)) is not None:
            token = _number(text, pos, match)
        elif char in "=!<>":
            op = _OPERATOR.match(text, pos).group()
            if op not in OPERATORS:
                raise FilterError(f"unknown operator {op!r} at position {pos}", pos)
            token = Token(OPERATOR, "!=" if op == "<>" else op, pos, op)
        elif char in "(),*":
            token = Token(PUNCT, char, pos, char)
        elif char == '"':
            raise FilterError(f"unexpected character '\"' at position {pos} (strings use single quotes)", pos)
        else:
            raise FilterError(f"unexpected character {char!r} at position {pos}", pos)
        yield token
        pos += len(token.text)


def _string(text: str, start: int) -> Token:
    pos = start + 1
    while True:
        end = text.find("'", pos)
        if end < 0:
            raise FilterError(f"unterminated string starting at position {start}", start)
        if text.startswith("''", end):  # SQL's doubled quote stands for one quote
            pos = end + 2
            continue
        raw = text[start : end + 1]
        return Token(STRING, raw[1:-1].replace("''", "'"), start, raw)


def _backticked(text: str, start: int, what: str) -> str:
    end = text.find("`", start + 1)
    if end < 0:
        raise FilterError(f"unterminated backtick starting at position {start}", start)
    if end == start + 1:
        raise FilterError(f"empty {what} at position {start}", start)
    return text[start + 1 : end]


def _path(text: str, start: int) -> Token:
    segments: list[str] = []
    pos, quoted = start, False
    while True:
        if text.startswith("`", pos):
            segment = _backticked(text, pos, "name")
            pos += len(segment) + 2
            quoted = True
        else:
            match = (_SEGMENT_AFTER_DOT if segments else _NAME).match(text, pos)
            if match is None:
                raise FilterError(f"expected a name after '.' at position {pos}", pos)
            segment = match.group()
            pos = match.end()
        segments.append(segment)
        if not text.startswith(".", pos):
            break
        pos += 1
    raw = text[start:pos]
    word = segments[0].upper()
    if len(segments) == 1 and not quoted and segments[0].isascii() and word in KEYWORDS:
        return Token(KEYWORD, word, start, raw)
    return Token(PATH, tuple(segments), start, raw)


def _number(text: str, start: int, match: re.Match[str]) -> Token:
    raw = match.group()
    tail = _NUMBER_TAIL.match(text, match.end())
    if tail is not None:
        bad = raw + tail.group()
        raise FilterError(f"bad number {bad!r} at position {start}", start)
    try:
        value = float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:  # Python refuses int() of more than 4300 digits (CVE-2020-10735)
        raise FilterError(f"number too long at position {start}", start) from None
    return Token(NUMBER, value, start, raw)


def _channel(text: str, start: int) -> Token | None:
    if text.startswith("`", start):
        name = _backticked(text, start, "channel name")
        return Token(CHANNEL, name, start, text[start : start + len(name) + 2])
    match = _BARE_CHANNEL.match(text, start)
    if match is None:
        return None
    return Token(CHANNEL, match.group(), start, match.group())
