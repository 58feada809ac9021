"""Recursive-descent parser: StreamSQL text → a small syntax tree (PROTOCOL §6).

Grammar (keywords case-insensitive, precedence NOT > AND > OR as in SQL)::

    query      := SELECT projection FROM channel [WHERE condition] [GROUP BY path (',' path)*] END
    projection := '*' | column (',' column)*
    column     := (path | call) [AS path]
    call       := COUNT '(' '*' ')' | COUNT '(' [DISTINCT] path ')' | (SUM | AVG | MIN | MAX) '(' path ')'
    condition  := conjunct (OR conjunct)*
    conjunct   := negation (AND negation)*
    negation   := NOT negation | '(' condition ')' | comparison
    comparison := operand ( op operand | [NOT] LIKE string | IS [NOT] NULL )
    op         := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    operand    := path | string | number | TRUE | FALSE | NULL

Aggregates (PROTOCOL §12) make the query an aggregated *view*. ``GROUP``, ``BY``, ``DISTINCT`` and the
function names are contextual words, not reserved keywords, so that existing filters naming a field ``group``
or ``count`` keep working. The rules that are not grammar: no aggregate inside WHERE or inside another
aggregate, every projected path of a view must be one of its GROUP BY paths, and ``SELECT *`` cannot be
grouped.

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


AGGREGATE_FUNCTIONS = frozenset({"COUNT", "SUM", "AVG", "MIN", "MAX"})


@dataclass(frozen=True, slots=True)
class Aggregate:
    function: str  # one of AGGREGATE_FUNCTIONS, upper-case
    path: Path | None  # None for COUNT(*)
    distinct: bool  # COUNT(DISTINCT path)

    @property
    def text(self) -> str:
        """The normalised call, the output key when there is no alias: ``COUNT(DISTINCT data.u)``."""
        if self.path is None:
            return f"{self.function}(*)"
        argument = ".".join(self.path.segments)
        return f"{self.function}({'DISTINCT ' if self.distinct else ''}{argument})"


Column = Path | Aggregate


@dataclass(frozen=True, slots=True)
class Query:
    channel: str
    columns: tuple[tuple[str, Column], ...] | None  # (output key, path or aggregate); None for SELECT *
    where: Condition | None
    group_by: tuple[Path, ...] = ()

    @property
    def is_view(self) -> bool:
        """An aggregated view (§12): some aggregate in the projection, or a GROUP BY."""
        return bool(self.group_by) or any(isinstance(column, Aggregate) for _, column in self.columns or ())


def parse(text: str, max_depth: int) -> Query:
    """Parse a whole filter; raise FilterError with the position of the first problem."""
    return _Parser(text, max_depth).query()


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self._tokens = lexer.tokens(text)
        self._tok: Token = next(self._tokens)
        self._max_depth = max_depth
        self._depth = 0
        self._column_pos: dict[str, int] = {}  # output key (or "*") -> where its column starts, for errors

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
        group_by = self._group_by()
        if group_by:
            expected = "',' or end of filter"
        elif where is None:
            expected = "WHERE, GROUP BY or end of filter"
        else:
            expected = "AND, OR, GROUP BY or end of filter"
        self._expect(END, None, expected)
        query = Query(channel, columns, where, group_by)
        if query.is_view:
            _check_view(query, self._column_pos)
        return query

    def _projection(self) -> tuple[tuple[str, Column], ...] | None:
        if self._at(PUNCT, "*"):
            self._column_pos["*"] = self._advance().pos
            return None
        columns: dict[str, Column] = {}
        while True:
            start = self._expect(PATH, None, "'*', a field path or an aggregate")
            column: Column = self._call(start) if self._at(PUNCT, "(") else Path(start.value)
            named = self._expect(PATH, None, "an alias name") if self._accept(KEYWORD, "AS") else None
            if named is not None:
                key, key_pos = ".".join(named.value), named.pos
            elif isinstance(column, Aggregate):
                key, key_pos = column.text, start.pos
            else:
                key, key_pos = ".".join(start.value), start.pos
            if key in columns:  # two columns with one output key would silently drop one
                raise FilterError(f"duplicate column {key!r} at position {key_pos}", key_pos)
            columns[key] = column
            self._column_pos[key] = start.pos
            if not self._accept(PUNCT, ","):
                return tuple(columns.items())

    def _call(self, name: Token) -> Aggregate:
        function = _function_name(name)
        self._advance()  # the '('
        if self._at(PUNCT, "*"):
            star = self._advance()
            if function != "COUNT":
                raise FilterError(
                    f"{function}(*) is not supported (only COUNT(*)) at position {star.pos}", star.pos
                )
            self._expect(PUNCT, ")", "')'")
            return Aggregate(function, None, False)
        distinct = False
        if _is_word(self._tok, "DISTINCT"):
            word = self._advance()
            if function != "COUNT":
                raise FilterError(f"DISTINCT is only supported in COUNT at position {word.pos}", word.pos)
            distinct = True
        argument = self._expect(
            PATH, None, "a field path" if distinct or function != "COUNT" else "'*' or a field path"
        )
        if self._at(PUNCT, "("):
            raise FilterError(
                f"nested aggregate functions are not allowed at position {argument.pos}", argument.pos
            )
        self._expect(PUNCT, ")", "')'")
        return Aggregate(function, Path(argument.value), distinct)

    def _group_by(self) -> tuple[Path, ...]:
        if not _is_word(self._tok, "GROUP"):
            return ()
        self._advance()
        if not _is_word(self._tok, "BY"):
            self._fail("BY")
        self._advance()
        paths: list[Path] = []
        while True:
            token = self._expect(PATH, None, "a field path")
            if self._at(PUNCT, "("):
                raise FilterError(
                    f"aggregate functions are not allowed in GROUP BY at position {token.pos}", token.pos
                )
            if Path(token.value) in paths:
                raise FilterError(f"duplicate GROUP BY path at position {token.pos}", token.pos)
            paths.append(Path(token.value))
            if not self._accept(PUNCT, ","):
                return tuple(paths)

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
            if self._at(PUNCT, "("):
                function = _function_name(token)
                raise FilterError(
                    f"aggregate function {function} is not allowed in WHERE at position {token.pos}",
                    token.pos,
                )
            return Path(token.value)
        if token.kind in (STRING, NUMBER):
            self._advance()
            return Literal(token.value)
        if token.kind == KEYWORD and token.value in ("TRUE", "FALSE", "NULL"):
            self._advance()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.value])
        self._fail(expected)


def _is_word(token: Token, word: str) -> bool:
    """A contextual keyword: an unquoted one-segment path spelt ``word`` in any case."""
    return token.kind == PATH and token.text.upper() == word


def _function_name(token: Token) -> str:
    name = token.text.upper()
    if name not in AGGREGATE_FUNCTIONS:
        raise FilterError(
            f"unknown function {token.text[:40]!r} at position {token.pos}"
            " (expected COUNT, SUM, AVG, MIN or MAX)",
            token.pos,
        )
    return name


def _check_view(query: Query, positions: dict[str, int]) -> None:
    # §12: "Every projected path that is not an aggregate must be in GROUP BY".
    if query.columns is None:
        pos = positions["*"]
        raise FilterError(f"SELECT * cannot be grouped at position {pos} (name the GROUP BY paths)", pos)
    for key, column in query.columns:
        if isinstance(column, Path) and column not in query.group_by:
            path, pos = ".".join(column.segments)[:40], positions[key]
            raise FilterError(
                f"column {path!r} at position {pos} must be in GROUP BY or inside an aggregate", pos
            )
