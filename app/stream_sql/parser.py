"""Recursive-descent parser: StreamSQL text → a small syntax tree (PROTOCOL §6).

Grammar (keywords case-insensitive, precedence NOT > AND > OR as in SQL)::

    query      := SELECT projection FROM channel [WHERE condition] END
    projection := '*' | column (',' column)*
    column     := path [AS path]
    condition  := conjunct (OR conjunct)*
    conjunct   := negation (AND negation)*
    negation   := NOT negation | '(' condition ')' | comparison
    comparison := operand ( op operand | [NOT] LIKE string | IS [NOT] NULL )
    op         := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    operand    := path | string | number | TRUE | FALSE | NULL

A hand-written parser (rather than lark) keeps error positions exact, pulls tokens lazily so the first problem
in reading order is reported, and needs no grammar object at import time; the whole grammar fits on this page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from app.stream_sql import lexer
from app.stream_sql.errors import FilterError
from app.stream_sql.lexer import CHANNEL, END, KEYWORD, NUMBER, OPERATOR, PATH, PUNCT, STRING, Token, describe


@dataclass(frozen=True, slots=True)
class Path:
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any  # str, int, float, bool or None


Operand = Path | Literal


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # one of = != < <= > >=  ("<>" is folded into "!=" by the lexer)
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Like:
    operand: Operand
    pattern: str
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Operand
    negated: bool


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" or "or"
    operands: tuple[Condition, ...]


Condition = Compare | Like | IsNull | Not | BoolOp


@dataclass(frozen=True, slots=True)
class Query:
    channel: str
    columns: tuple[tuple[str, Path], ...] | None  # (output key, path); None for SELECT *
    where: Condition | None


def parse(text: str, max_depth: int) -> Query:
    """Parse a whole filter; raise FilterError with the position of the first problem."""
    return _Parser(text, max_depth).query()


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self._tokens = lexer.tokens(text)
        self._tok: Token = next(self._tokens)
        self._max_depth = max_depth
        self._depth = 0

    # -- token helpers -------------------------------------------------------------------------------------

    def _advance(self) -> Token:
        token = self._tok
        if token.kind != END:
            self._tok = next(self._tokens)
        return token

    def _at(self, kind: str, value: Any = None) -> bool:
        return self._tok.kind == kind and (value is None or self._tok.value == value)

    def _accept(self, kind: str, value: Any = None) -> Token | None:
        return self._advance() if self._at(kind, value) else None

    def _expect(self, kind: str, value: Any, expected: str) -> Token:
        if not self._at(kind, value):
            self._fail(expected)
        return self._advance()

    def _fail(self, expected: str) -> NoReturn:
        token = self._tok
        found = "end of filter" if token.kind == END else describe(token)
        raise FilterError(f"unexpected {found} at position {token.pos} (expected {expected})", token.pos)

    def _nest(self, token: Token) -> None:
        # Depth bounds the recursion of this parser and of the generated code (each level is one Python
        # stack frame here and one nested expression there).
        self._depth += 1
        if self._depth > self._max_depth:
            raise FilterError(
                f"filter nested deeper than {self._max_depth} levels at position {token.pos}", token.pos
            )

    # -- grammar -------------------------------------------------------------------------------------------

    def query(self) -> Query:
        self._expect(KEYWORD, "SELECT", "SELECT")
        columns = self._projection()
        self._expect(KEYWORD, "FROM", "FROM")
        channel = self._expect(CHANNEL, None, "a channel name").value
        where = self._condition() if self._accept(KEYWORD, "WHERE") else None
        self._expect(END, None, "WHERE or end of filter" if where is None else "AND, OR or end of filter")
        return Query(channel, columns, where)

    def _projection(self) -> tuple[tuple[str, Path], ...] | None:
        if self._accept(PUNCT, "*"):
            return None
        columns: dict[str, Path] = {}
        while True:
            path = named = self._expect(PATH, None, "'*' or a field path")
            if self._accept(KEYWORD, "AS"):
                named = self._expect(PATH, None, "an alias name")
            key = ".".join(named.value)
            if key in columns:  # two columns with one output key would silently drop one
                raise FilterError(f"duplicate column {key!r} at position {named.pos}", named.pos)
            columns[key] = Path(path.value)
            if not self._accept(PUNCT, ","):
                return tuple(columns.items())

    def _condition(self) -> Condition:
        operands = [self._conjunct()]
        while self._accept(KEYWORD, "OR"):
            operands.append(self._conjunct())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def _conjunct(self) -> Condition:
        operands = [self._negation()]
        while self._accept(KEYWORD, "AND"):
            operands.append(self._negation())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def _negation(self) -> Condition:
        if not (self._at(KEYWORD, "NOT") or self._at(PUNCT, "(")):
            return self._comparison()
        opener = self._advance()
        self._nest(opener)
        if opener.value == "NOT":
            node: Condition = Not(self._negation())
        else:
            node = self._condition()
            self._expect(PUNCT, ")", "')', AND or OR")
        self._depth -= 1
        return node

    def _comparison(self) -> Condition:
        left = self._operand("a condition")
        if self._at(OPERATOR):
            op = self._advance().value
            return Compare(op, left, self._operand("a field path or a literal"))
        if self._accept(KEYWORD, "IS"):
            negated = self._accept(KEYWORD, "NOT") is not None
            self._expect(KEYWORD, "NULL", "NULL" if negated else "NULL or NOT NULL")
            return IsNull(left, negated)
        negated = self._accept(KEYWORD, "NOT") is not None
        if negated or self._at(KEYWORD, "LIKE"):
            self._expect(KEYWORD, "LIKE", "LIKE")
            pattern = self._expect(STRING, None, "a quoted LIKE pattern").value
            return Like(left, pattern, negated)
        self._fail("a comparison operator, LIKE or IS")

    def _operand(self, expected: str) -> Operand:
        token = self._tok
        if token.kind == PATH:
            self._advance()
            return Path(token.value)
        if token.kind in (STRING, NUMBER):
            self._advance()
            return Literal(token.value)
        if token.kind == KEYWORD and token.value in ("TRUE", "FALSE", "NULL"):
            self._advance()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.value])
        self._fail(expected)
