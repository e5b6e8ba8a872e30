"""A SOQL subset for the fake Salesforce: tokenizer, recursive-descent parser and a
compiler to parameterised SQL over the sandbox store.

Why a real parser and not pattern matching: the connector builds its SOQL (field lists,
cursor filters, keyset ORDER BY) and the fake must refuse what Salesforce refuses, with
Salesforce's error codes and positions, or connector bugs would only show up in
production. The grammar and semantics follow the "SOQL and SOSL Reference":
"SOQL SELECT Syntax", "Condition Expression Syntax (WHERE Clause)", "Comparison
Operators" (``!=`` and ``NOT IN`` keep nulls; string comparisons are case-insensitive),
"Quoted String Escape Sequences", "Date Formats and Date Literals in WHERE", "ORDER BY"
(ascending puts nulls first), "LIMIT", "COUNT()". Error text mimics what the API
returns: ``\\n<query line>\\n   ^\\nERROR at Row:1:Column:30\\n<detail>``.

Supported: ``SELECT f, Rel.f | COUNT() FROM Obj [WHERE c] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n]``; conditions ``f op literal`` with ``= != <> < <= > >=
LIKE IN (...) NOT IN (...)``, ``NOT``, ``AND`` / ``OR`` (mixing them needs parentheses,
as in SOQL); literals: strings, numbers, true/false/null, dateTime, date, and the date
literals TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n, NEXT_N_DAYS:n (ranges in UTC).
Not supported (MALFORMED_QUERY saying so): GROUP BY, HAVING, OFFSET, aggregate
functions other than COUNT(), child subqueries, semi-joins, TYPEOF, WITH, FOR,
INCLUDES/EXCLUDES, bind variables, relationship paths deeper than one level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sandbox.store import iso_utc

# -- errors ------------------------------------------------------------------------


class SoqlError(Exception):
    """A query Salesforce would refuse with HTTP 400 and this ``errorCode``."""

    def __init__(self, code: str, detail: str, text: str, pos: int) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.text = text
        self.pos = pos

    @property
    def row(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    @property
    def column(self) -> int:
        return self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1

    @property
    def message(self) -> str:
        lines = self.text.split("\n")
        caret = " " * (self.column - 1) + "^"
        return f"\n{lines[self.row - 1]}\n{caret}\nERROR at Row:{self.row}:Column:{self.column}\n{self.detail}"


# -- tokens ------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\w:.]))
    |(?P<number>[+-]?\d+(?:\.\d+)?(?![\w.:-]))
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    |(?P<ident>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*(?::\d+)?(?![\w:.]))
    """,
    re.VERBOSE,
)
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(?:(Z)|([+-])(\d{2}):?(\d{2}))\Z"
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_LIKE_ESCAPES = {"%": "\\%", "_": "\\_", "\\": "\\\\"}
_KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC"}
    | {"NULLS", "FIRST", "LAST", "LIMIT", "TRUE", "FALSE", "NULL"}
)
# Valid SOQL the sandbox does not implement: say so rather than pretend it is invalid.
_UNSUPPORTED = frozenset(
    ["GROUP", "HAVING", "OFFSET", "WITH", "FOR", "TYPEOF", "INCLUDES", "EXCLUDES", "USING", "UPDATE", "VIEW"]
)
_DATE_RANGES = ("TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS", "NEXT_N_DAYS")


@dataclass(frozen=True)
class Token:
    kind: str  # datetime date number string op punct ident eof
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "ident" and upper in _KEYWORDS else None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise SoqlError("MALFORMED_QUERY", "unterminated string literal", text, pos)
            bad = re.match(r"[^\s(),]+", text[pos:])
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{bad.group() if bad else text[pos]}'", text, pos)
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


# -- syntax tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]  # ("Name",) or ("Owner", "Name"), as written
    pos: int


@dataclass(frozen=True)
class CountAll:
    """``COUNT()``: only the number of matching rows."""

    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string number boolean null datetime date date_range
    value: Any  # str | int | float | bool | None | datetime | date | (range name, n)
    pos: int
    raw: str = ""  # a string literal's text between the quotes (LIKE keeps its escapes)


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str  # = != < <= > >= LIKE IN NOT IN
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    operands: tuple[Condition, ...]


Condition = Comparison | Not | BoolOp


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls: str | None = None  # FIRST | LAST | None (SOQL default)


@dataclass(frozen=True)
class Query:
    text: str
    select: tuple[FieldRef, ...] | CountAll
    sobject: str
    sobject_pos: int
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None


# -- parser ---------------------------------------------------------------------------


def parse(text: str) -> Query:
    """Parse one SOQL statement; raises :class:`SoqlError` (MALFORMED_QUERY) with a position."""
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    @property
    def next_text(self) -> str:
        return self.tokens[min(self.i + 1, len(self.tokens) - 1)].text

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, tok: Token | None = None, detail: str | None = None) -> SoqlError:
        tok = tok or self.tok
        if detail is None:
            detail = f"unexpected token: '{tok.text}'"
            if tok.kind == "ident" and tok.text.upper() in _UNSUPPORTED:
                detail += " (not supported by the salespulse sandbox)"
        return SoqlError("MALFORMED_QUERY", detail, self.text, tok.pos)

    def at_keyword(self, *words: str) -> bool:
        return self.tok.keyword in words

    def at_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    def expect_keyword(self, word: str) -> None:
        if self.tok.keyword != word:
            raise self.error()
        self.advance()

    def expect_punct(self, char: str) -> None:
        if not self.at_punct(char):
            raise self.error()
        self.advance()

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        select = self.select_list()
        self.expect_keyword("FROM")
        obj = self.tok
        if obj.kind != "ident" or obj.keyword or "." in obj.text or ":" in obj.text:
            raise self.error()
        self.advance()
        where: Condition | None = None
        order_by: tuple[OrderItem, ...] = ()
        limit = None
        if self.at_keyword("WHERE"):
            self.advance()
            where = self.condition()
        if self.at_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            order_by = self.order_list()
        if self.at_keyword("LIMIT"):
            self.advance()
            tok = self.tok
            if tok.kind != "number" or not tok.text.isdigit():
                raise self.error()
            self.advance()
            limit = int(tok.text)
        if self.tok.kind != "eof":
            raise self.error()
        return Query(self.text, select, obj.text, obj.pos, where, order_by, limit)

    def select_list(self) -> tuple[FieldRef, ...] | CountAll:
        tok = self.tok
        if tok.kind == "ident" and tok.text.upper() == "COUNT" and self.next_text == "(":
            self.advance()
            self.advance()
            if not self.at_punct(")"):
                raise self.error(
                    detail=f"unexpected token: '{self.tok.text}' (only COUNT() is supported by the sandbox)"
                )
            self.advance()
            return CountAll(tok.pos)
        fields = [self.field_ref()]
        while self.at_punct(","):
            self.advance()
            fields.append(self.field_ref())
        return tuple(fields)

    def field_ref(self) -> FieldRef:
        tok = self.tok
        if tok.kind != "ident" or tok.keyword or ":" in tok.text:
            raise self.error()
        if self.next_text == "(":
            raise self.error(detail=f"unexpected token: '{tok.text}(' (functions are not supported by the sandbox)")
        self.advance()
        return FieldRef(tuple(tok.text.split(".")), tok.pos)

    def order_list(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.at_punct(","):
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        ref = self.field_ref()
        descending = False
        nulls = None
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().keyword == "DESC"
        if self.at_keyword("NULLS"):
            self.advance()
            if not self.at_keyword("FIRST", "LAST"):
                raise self.error()
            nulls = self.advance().keyword
        return OrderItem(ref, descending, nulls)

    def condition(self) -> Condition:
        first = self.unary()
        if not self.at_keyword("AND", "OR"):
            return first
        op = self.tok.keyword
        assert op is not None
        operands = [first]
        while self.at_keyword("AND", "OR"):
            if self.tok.keyword != op:  # SOQL has no precedence: mixing needs parentheses
                raise self.error()
            self.advance()
            operands.append(self.unary())
        return BoolOp(op, tuple(operands))

    def unary(self) -> Condition:
        if self.at_keyword("NOT"):
            self.advance()
            return Not(self.unary())
        if self.at_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        ref = self.field_ref()
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            return Comparison(ref, "!=" if tok.text == "<>" else tok.text, self.literal())
        if self.at_keyword("LIKE"):
            self.advance()
            return Comparison(ref, "LIKE", self.literal())
        negated = self.at_keyword("NOT")
        if negated:
            self.advance()
        if not self.at_keyword("IN"):
            raise self.error()
        self.advance()
        self.expect_punct("(")
        if self.at_keyword("SELECT"):
            raise self.error(detail="unexpected token: 'SELECT' (semi-joins are not supported by the sandbox)")
        values = [self.literal()]
        while self.at_punct(","):
            self.advance()
            values.append(self.literal())
        self.expect_punct(")")
        return Comparison(ref, "NOT IN" if negated else "IN", tuple(values))

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            raw = tok.text[1:-1]
            return Literal("string", self._unescape(raw, tok.pos), tok.pos, raw)
        if tok.kind == "number":
            self.advance()
            return Literal("number", float(tok.text) if "." in tok.text else int(tok.text), tok.pos)
        if tok.kind == "datetime":
            self.advance()
            return Literal("datetime", self._datetime(tok), tok.pos)
        if tok.kind == "date":
            self.advance()
            try:
                return Literal("date", date.fromisoformat(tok.text), tok.pos)
            except ValueError:
                raise self.error(tok, f"invalid date value '{tok.text}'") from None
        if tok.kind == "ident":
            upper = tok.text.upper()
            if upper in ("TRUE", "FALSE"):
                self.advance()
                return Literal("boolean", upper == "TRUE", tok.pos)
            if upper == "NULL":
                self.advance()
                return Literal("null", None, tok.pos)
            name, _, n = upper.partition(":")
            if name in _DATE_RANGES and bool(n) == name.endswith("_N_DAYS"):
                self.advance()
                return Literal("date_range", (name, int(n) if n else 0), tok.pos)
            if re.match(r"(THIS|LAST|NEXT)_", upper):
                raise self.error(detail=f"unexpected token: '{tok.text}' (date literal not supported by the sandbox)")
        raise self.error()

    def _unescape(self, raw: str, pos: int) -> str:
        out = []
        chars = iter(enumerate(raw))
        for i, ch in chars:
            if ch != "\\":
                out.append(ch)
                continue
            _, nxt = next(chars)
            if nxt in "%_":
                out.append(nxt)
            elif nxt.lower() in _ESCAPES:
                out.append(_ESCAPES[nxt.lower()])
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{raw}'. Illegal character sequence '\\{nxt}' in string literal.",
                    self.text,
                    pos + 1 + i,
                )
        return "".join(out)

    def _datetime(self, tok: Token) -> datetime:
        m = _DATETIME.match(tok.text)
        assert m is not None  # the tokenizer matched the same shape
        y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
        offset = timedelta(0) if z else (1 if sign == "+" else -1) * timedelta(hours=int(oh), minutes=int(om))
        try:
            micro = int((frac or "0").ljust(3, "0")) * 1000
            return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, timezone(offset))
        except ValueError:
            raise self.error(tok, f"invalid dateTime value '{tok.text}'") from None


def like_pattern(raw: str) -> str:
    """A SOQL LIKE string (quotes stripped) as an SQLite LIKE pattern with ESCAPE '\\'."""
    out = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            out.append(_LIKE_ESCAPES.get(nxt) or _ESCAPES.get(nxt.lower(), nxt))
        else:
            out.append(ch)
    return "".join(out)


# -- schema: what an object offers and where it lives in SQL ---------------------------

STRING_TYPES = frozenset({"id", "string", "picklist", "reference", "email", "textarea", "anyType"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
_CASELESS = STRING_TYPES - {"id", "reference"}  # ids compare exactly, so their indexes apply
_LITERAL_TYPES = {
    "string": STRING_TYPES,
    "number": NUMBER_TYPES,
    "boolean": frozenset({"boolean"}),
    "datetime": frozenset({"datetime"}),
    "date": frozenset({"date"}),
    "date_range": frozenset({"date", "datetime"}),
}


@dataclass(frozen=True)
class SField:
    """One field: its API name, describe type and SQL over the table alias ``{t}``."""

    name: str
    type: str
    sql: str
    compare_sql: str | None = None  # used in WHERE / ORDER BY when it differs (TEXT numbers)
    reference_to: str | None = None

    def select(self, alias: str) -> str:
        return self.sql.format(t=alias)

    def compare(self, alias: str) -> str:
        return (self.compare_sql or self.sql).format(t=alias)


@dataclass(frozen=True)
class Relationship:
    name: str  # e.g. Owner
    target: str  # e.g. User
    via: str  # the reference field on this object, e.g. OwnerId


@dataclass(frozen=True)
class SObject:
    """An object's fields over one store table. ``scope`` (SQL over ``{t}``) picks its
    rows; ``deleted`` (SQL over ``{t}``) marks soft-deleted rows and adds ``IsDeleted``.

    ``partitions`` split ``scope`` into disjoint scopes that each match an index prefix
    (Task = three activity types): an ordered query then merges per-partition index
    scans (UNION ALL ... ORDER BY) instead of sorting every row before the first page."""

    name: str
    key_prefix: str
    table: str
    scope: str
    fields: tuple[SField, ...]
    relationships: tuple[Relationship, ...] = ()
    deleted: str | None = None
    partitions: tuple[str, ...] = ()
    _by_name: dict[str, SField] = field(init=False, repr=False, compare=False)
    _rels: dict[str, Relationship] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = self.fields
        if self.deleted is not None:
            fields = (*fields, SField("IsDeleted", "boolean", f"({self.deleted})"))
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_by_name", {f.name.lower(): f for f in fields})
        object.__setattr__(self, "_rels", {r.name.lower(): r for r in self.relationships})

    def find_field(self, name: str) -> SField | None:
        return self._by_name.get(name.lower())

    def find_relationship(self, name: str) -> Relationship | None:
        return self._rels.get(name.lower())


Schema = Mapping[str, SObject]  # keyed by lower-cased object name


# -- compiled form -----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str  # canonical API name
    type: str


@dataclass(frozen=True)
class Nested:
    """A relationship's fields, served as one nested record (or null)."""

    name: str
    target: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Compiled:
    """A query as SQL. ``columns`` are the record id, then per output item one value
    (Column) or the related id followed by its values (Nested); ``tail`` is the rest of
    the statement (FROM ... LIMIT), so a caller may select other expressions of them."""

    sobject: SObject
    columns: tuple[str, ...]
    tail: str
    params: tuple[Any, ...]
    count_sql: str  # the number of rows the query yields
    count_params: tuple[Any, ...]
    output: tuple[Column | Nested, ...]
    count_only: bool

    @property
    def sql(self) -> str:
        return f"SELECT {', '.join(self.columns)} {self.tail}"


def compile_query(query: Query, schema: Schema, *, include_deleted: bool, today: date) -> Compiled:
    """Translate a parsed query to SQL; raises INVALID_TYPE / INVALID_FIELD like the API."""
    return _Compiler(query, schema, today).compile(include_deleted=include_deleted)


def translate(text: str, schema: Schema, *, include_deleted: bool, today: date) -> Compiled:
    return compile_query(parse(text), schema, include_deleted=include_deleted, today=today)


_FIELD_HINT = (
    " If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."
    " Please reference your WSDL or the describe call for the appropriate names."
)
_RELATIONSHIP_HINT = (
    " If you are attempting to use a custom relationship, be sure to append the '__r' after the custom"
    " relationship name. Please reference your WSDL or the describe call for the appropriate names."
)
_TYPE_HINT = (
    " If you are attempting to use a custom object, be sure to append the '__c' after the entity name."
    " Please reference your WSDL or the describe call for the appropriate names."
)


class _Compiler:
    def __init__(self, query: Query, schema: Schema, today: date) -> None:
        self.q = query
        self.schema = schema
        self.today = today
        obj = schema.get(query.sobject.lower())
        if obj is None:
            raise self.error(
                "INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.{_TYPE_HINT}", query.sobject_pos
            )
        self.obj = obj
        self.joins: dict[str, tuple[Relationship, SObject]] = {}  # alias -> joined relationship

    def error(self, code: str, detail: str, pos: int) -> SoqlError:
        return SoqlError(code, detail, self.q.text, pos)

    def resolve(self, ref: FieldRef) -> tuple[SField, str, Relationship | None]:
        """The field a path names, the SQL alias it is read from and its relationship."""
        if len(ref.path) == 1:
            return self._field(self.obj, ref.path[0], ref.pos), "t", None
        if len(ref.path) > 2:
            detail = "relationship paths deeper than one level are not supported by the sandbox"
            raise self.error("INVALID_FIELD", detail, ref.pos)
        rel = self.obj.find_relationship(ref.path[0])
        if rel is None:
            detail = f"Didn't understand relationship '{ref.path[0]}' in field path.{_RELATIONSHIP_HINT}"
            raise self.error("INVALID_FIELD", detail, ref.pos)
        target = self.schema[rel.target.lower()]
        alias = f"r_{rel.name}"
        self.joins[alias] = (rel, target)
        return self._field(target, ref.path[1], ref.pos), alias, rel

    def _field(self, obj: SObject, name: str, pos: int) -> SField:
        f = obj.find_field(name)
        if f is None:
            raise self.error("INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'.{_FIELD_HINT}", pos)
        return f

    def compile(self, *, include_deleted: bool) -> Compiled:
        q, obj = self.q, self.obj
        columns, output = self.select_list()
        params: list[Any] = []
        where = []
        if obj.deleted is not None and not include_deleted:
            where.append(f"NOT ({obj.deleted.format(t='t')})")
        if q.where is not None:
            where.append(self.condition(q.where, params))
        order = [self.order_item(item) for item in q.order_by]
        joins = "".join(
            f" LEFT JOIN {target.table} AS {alias} ON {target.scope.format(t=alias)}"
            f" AND {alias}.id = {self._field(obj, rel.via, 0).select('t')}"
            for alias, (rel, target) in self.joins.items()
        )

        def body(scope: str) -> str:
            return f"FROM {obj.table} AS t{joins} WHERE {' AND '.join([scope.format(t='t'), *where])}"

        limit = " LIMIT ?" if q.limit is not None else ""
        limit_params = (q.limit,) if q.limit is not None else ()
        count_sql = f"SELECT COUNT(*) FROM (SELECT 1 {body(obj.scope)}{limit})"
        count_params = (*params, *limit_params)
        if order and obj.partitions:
            selected = [f"{c} AS c{i}" for i, c in enumerate(columns)]
            selected += [f"{expr} AS k{i}" for i, (expr, _) in enumerate(order)]
            arms = " UNION ALL ".join(f"SELECT {', '.join(selected)} {body(p)}" for p in obj.partitions)
            keys = ", ".join(f"k{i}{suffix}" for i, (_, suffix) in enumerate(order))
            columns = [f"c{i}" for i in range(len(columns))]
            tail = f"FROM ({arms} ORDER BY {keys}{limit})"
            params = params * len(obj.partitions)
        else:
            order_sql = f" ORDER BY {', '.join(expr + suffix for expr, suffix in order)}" if order else ""
            tail = f"{body(obj.scope)}{order_sql}{limit}"
        return Compiled(
            sobject=obj,
            columns=tuple(columns),
            tail=tail,
            params=(*params, *limit_params),
            count_sql=count_sql,
            count_params=count_params,
            output=tuple(output),
            count_only=isinstance(q.select, CountAll),
        )

    def select_list(self) -> tuple[list[str], list[Column | Nested]]:
        columns = ["t.id"]
        if isinstance(self.q.select, CountAll):
            return columns, []
        seen: set[str] = set()
        entries: list[SField | str] = []  # a field of the object, or a relationship name
        groups: dict[str, list[tuple[SField, str]]] = {}
        for ref in self.q.select:
            f, alias, rel = self.resolve(ref)
            key = f"{rel.name}.{f.name}" if rel else f.name
            if key.lower() in seen:
                raise self.error("MALFORMED_QUERY", f"duplicate field selected: {key}", ref.pos)
            seen.add(key.lower())
            if rel is None:
                entries.append(f)
                continue
            if rel.name not in groups:  # a relationship is served where it first appears
                groups[rel.name] = []
                entries.append(rel.name)
            groups[rel.name].append((f, alias))
        output: list[Column | Nested] = []
        for entry in entries:
            if isinstance(entry, SField):
                columns.append(entry.select("t"))
                output.append(Column(entry.name, entry.type))
                continue
            members = groups[entry]
            alias = members[0][1]
            columns.append(f"{alias}.id")
            columns.extend(f.select(alias) for f, _ in members)
            target = self.joins[alias][1]
            output.append(Nested(entry, target.name, tuple(Column(f.name, f.type) for f, _ in members)))
        return columns, output

    def order_item(self, item: OrderItem) -> tuple[str, str]:
        """The sort expression and its direction / nulls suffix."""
        f, alias, _ = self.resolve(item.field)
        suffix = (" DESC" if item.descending else "") + (f" NULLS {item.nulls}" if item.nulls else "")
        return f.compare(alias), suffix

    def condition(self, cond: Condition, params: list[Any]) -> str:
        if isinstance(cond, BoolOp):
            return "(" + f" {cond.op} ".join(self.condition(c, params) for c in cond.operands) + ")"
        if isinstance(cond, Not):
            return f"(NOT {self.condition(cond.operand, params)})"
        f, alias, _ = self.resolve(cond.field)
        expr = f.compare(alias)
        collate = " COLLATE NOCASE" if f.type in _CASELESS else ""
        if isinstance(cond.value, tuple):
            return self.membership(expr, collate, f, cond.op, cond.value, params)
        lit = cond.value
        self.check_type(f, lit)
        if lit.kind == "null":
            if cond.op not in ("=", "!="):
                raise self.error("MALFORMED_QUERY", f"invalid operator {cond.op} for null", lit.pos)
            return f"{expr} IS {'NOT ' if cond.op == '!=' else ''}NULL"
        if cond.op == "LIKE":
            params.append(like_pattern(lit.raw))
            return f"{expr} LIKE ? ESCAPE '\\'"
        if lit.kind == "date_range":
            return self.date_range(expr, f, cond.op, lit, params)
        params.append(self.param(lit))
        if cond.op == "!=":
            return f"{expr} IS NOT ?{collate}"  # null-safe: SOQL's != keeps null values
        return f"{expr} {cond.op} ?{collate}"

    def membership(
        self, expr: str, collate: str, f: SField, op: str, literals: tuple[Literal, ...], params: list[Any]
    ) -> str:
        for lit in literals:
            self.check_type(f, lit)
            if lit.kind == "date_range":
                raise self.error("MALFORMED_QUERY", f"date literal {lit.value[0]} cannot be used with {op}", lit.pos)
        values = [self.param(lit) for lit in literals if lit.kind != "null"]
        params.extend(values)
        has_null = len(values) < len(literals)
        marks = ", ".join("?" for _ in values) or "NULL"
        if op == "IN":
            return f"({expr}{collate} IN ({marks})" + (f" OR {expr} IS NULL)" if has_null else ")")
        null_part = f"{expr} IS NOT NULL AND " if has_null else f"{expr} IS NULL OR "
        return f"({null_part}{expr}{collate} NOT IN ({marks}))"

    def check_type(self, f: SField, lit: Literal) -> None:
        if lit.kind == "null" or f.type in _LITERAL_TYPES[lit.kind]:
            return
        if f.type in STRING_TYPES:
            detail = f"value of filter criterion for field '{f.name}' must be of type string"
            detail += " and should be enclosed in quotes"
        else:
            detail = f"value of filter criterion for field '{f.name}' must be of type"
            detail += f" {'dateTime' if f.type == 'datetime' else f.type} and should not be enclosed in quotes"
        raise self.error("INVALID_FIELD", detail, lit.pos)

    @staticmethod
    def param(lit: Literal) -> Any:
        """A literal as the store holds it (booleans 0/1, times as ISO text in UTC)."""
        if lit.kind == "boolean":
            return int(lit.value)
        if lit.kind == "datetime":
            return iso_utc(lit.value)
        if lit.kind == "date":
            return lit.value.isoformat()
        return lit.value

    def date_range(self, expr: str, f: SField, op: str, lit: Literal, params: list[Any]) -> str:
        """A relative date literal is a [start, end) range of days: '=' means inside it,
        '<' before its start, '>' after its end (SOQL "Date Formats and Date Literals")."""
        name, n = lit.value
        if op == "LIKE":
            raise self.error("MALFORMED_QUERY", f"date literal {name} cannot be used with LIKE", lit.pos)
        start, days = {
            "TODAY": (self.today, 1),
            "YESTERDAY": (self.today - timedelta(days=1), 1),
            "TOMORROW": (self.today + timedelta(days=1), 1),
            "LAST_N_DAYS": (self.today - timedelta(days=n), n + 1),  # includes today
            "NEXT_N_DAYS": (self.today + timedelta(days=1), n),  # starts tomorrow
        }[name]
        end = start + timedelta(days=days)

        def bound(day: date) -> str:
            return iso_utc(datetime.combine(day, time(), UTC)) if f.type == "datetime" else day.isoformat()

        lo, hi = bound(start), bound(end)
        sql, values = {
            "=": (f"({expr} >= ? AND {expr} < ?)", (lo, hi)),
            "!=": (f"({expr} IS NULL OR {expr} < ? OR {expr} >= ?)", (lo, hi)),
            "<": (f"{expr} < ?", (lo,)),
            "<=": (f"{expr} < ?", (hi,)),
            ">": (f"{expr} >= ?", (hi,)),
            ">=": (f"{expr} >= ?", (lo,)),
        }[op]
        params.extend(values)
        return sql
