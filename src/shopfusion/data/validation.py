"""Row-level validation: raw rows in, typed records plus :class:`RowProblem` reports out.

A bad row never stops a file: it becomes a problem that names the file, the
1-based line, the column and what to do about it, and the valid rows are kept.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shopfusion.data.schema import Event, EventType, Product
from shopfusion.errors import ConfigError

Severity = Literal["error", "warning"]
RecordT = TypeVar("RecordT", Product, Event)

#: The field holding whole-row problems (undecodable, malformed, wrong column count).
ROW = "(row)"

_ID_FIELDS = frozenset({"item_id", "user_id", "session_id"})
_JSON_FIELDS = frozenset({"attributes", "context", "category"})
_TEXT_PREPARED = _JSON_FIELDS | {"type"}  # fields whose *string* values need _prepare
_EVENT_TYPES = ", ".join(t.value for t in EventType)


@dataclass(frozen=True)
class RowProblem:
    """One bad row (or a warning about one): ``file:line: field 'x': message``."""

    file: str
    line: int
    field: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: field '{self.field}': {self.message}"


@dataclass
class ReadResult(Generic[RecordT]):
    """The valid records of one file, the problems found, and how many data rows it had.

    ``lines[i]`` is the line of ``records[i]`` in the file.
    """

    file: str
    records: list[RecordT] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    n_rows: int = 0
    n_duplicates: int = 0

    @property
    def n_kept(self) -> int:
        return len(self.records)

    @property
    def n_rejected(self) -> int:
        """Rows dropped because they were invalid (duplicates are counted apart)."""
        return self.n_rows - self.n_kept - self.n_duplicates

    @property
    def errors(self) -> list[RowProblem]:
        return [p for p in self.problems if p.severity == "error"]


def resolve_mapping(model: type[BaseModel], mapping: Mapping[str, str] | None) -> dict[str, str]:
    """``{field: source column}`` for every field of ``model`` (identity unless mapped)."""
    fields = list(model.model_fields)
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            f"cannot map {', '.join(map(repr, unknown))}: not a {model.__name__} field; "
            f"map one of {', '.join(fields)}"
        )
    return {f: mapping.get(f, f) for f in fields}


def unused_columns(
    file: str, first_line: Mapping[str, int], columns_of: Mapping[str, str], model: type[BaseModel]
) -> list[RowProblem]:
    """Warn once per column that feeds no field (a typo or a missing ``--map``).

    ``first_line`` maps each column seen in the file to the line where it first appeared.
    """
    used = set(columns_of.values())
    return [
        RowProblem(
            file,
            line,
            col,
            f"column is not a field of {model.__name__} and was ignored; "
            f"if it holds one, map it with --map FIELD={col}",
            "warning",
        )
        for col, line in first_line.items()
        if col not in used
    ]


class RowValidator(Generic[RecordT]):
    """Validates raw rows (source column -> value) into records of ``model``."""

    def __init__(self, model: type[RecordT], file: str, mapping: Mapping[str, str] | None = None) -> None:
        self.model: type[RecordT] = model
        self.file = file
        self.columns_of = resolve_mapping(model, mapping)
        fields_of: dict[str, list[str]] = {}
        for name, column in self.columns_of.items():
            fields_of.setdefault(column, []).append(name)  # one column may feed two fields
        self._fields_of = {c: tuple(f) for c, f in fields_of.items()}

    def validate(self, line: int, row: Mapping[str, Any]) -> RecordT | list[RowProblem]:
        data: dict[str, Any] = {}
        for column, value in row.items():  # the hot loop of every reader: keep it lean
            names = self._fields_of.get(column)
            if names is None or not _present(value):
                continue
            for name in names:
                data[name] = (
                    _prepare(name, value) if value.__class__ is not str or name in _TEXT_PREPARED else value
                )
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            return [self._problem(line, err) for err in exc.errors(include_url=False)]

    def _problem(self, line: int, err: ErrorDetails) -> RowProblem:
        name = str(err["loc"][0]) if err["loc"] else ""
        if not name and "item_id is required" in err["msg"]:
            name = "item_id"
        column = self.columns_of.get(name, ROW)
        return RowProblem(self.file, line, column, explain(name, err))


def _present(value: Any) -> bool:
    if value is None:
        return False
    if value.__class__ is str:
        return value != "" and not value.isspace()
    return not (isinstance(value, float) and value != value)  # NaN from Parquet/pandas means "missing"


def _prepare(name: str, value: Any) -> Any:
    """Lenient coercions that real exports need: numeric ids, JSON in CSV cells, 'Purchase'."""
    if name in _ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name in _JSON_FIELDS and isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value  # pydantic reports it with the right message
    if name in ("attributes", "context") and isinstance(value, dict):
        return {
            str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in value.items()
        }
    if name == "type" and isinstance(value, str):
        return value.strip().lower().replace("-", "_").replace(" ", "_")
    return value


def explain(name: str, err: ErrorDetails) -> str:
    """A message that says what is wrong with the value and how to fix it."""
    kind, value = err["type"], err.get("input")
    shown = repr(value)[:80]
    detail = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"required value is missing; add a non-empty {name} to this row"
    if name == "timestamp":
        return detail if "cannot parse" in detail else f"{detail}; use ISO-8601 or seconds since the epoch"
    if name == "price" and kind in ("value_error", "float_parsing", "float_type"):
        return f"cannot read price {shown}: write a plain number such as 12.99"
    if kind == "enum" and name == "type":
        return f"unknown event type {shown}: use one of {_EVENT_TYPES}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{shown} is not a whole number; write an integer such as 3"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{shown} is negative; {name} must be >= 0"
    if kind == "string_too_short":
        return f"is empty; give a non-empty {name}"
    if kind == "string_pattern_mismatch":
        return f"{shown} contains a tab or line break; ids must be one line"
    if kind == "string_too_long":
        return f"is longer than the limit ({detail}); shorten it"
    if kind in ("dict_type", "list_type") or (name in _JSON_FIELDS and kind == "string_type"):
        example = '["Beauty", "Nails"]' if name == "category" else '{"color": "red"}'
        return f"{shown} is not valid here; write a JSON value such as {example}"
    if "item_id is required" in detail:
        return f"{detail}; add the item id, or set type to 'search' for a search without a click"
    return f"{detail} (got {shown}); fix the value or drop the row"


def keep_last_products(result: ReadResult[Product], column: str = "item_id") -> None:
    """Same ``item_id`` twice: the last row wins (at the place of the first), earlier rows become warnings."""
    last: dict[str, int] = {}
    for i, product in enumerate(result.records):
        last[product.item_id] = i  # dict order stays that of first appearance
    if len(last) == len(result.records):
        return
    for i, product in enumerate(result.records):
        j = last[product.item_id]
        if j != i:
            result.problems.append(
                RowProblem(
                    result.file,
                    result.lines[i],
                    column,
                    f"duplicate item_id {product.item_id!r}: replaced by line {result.lines[j]} "
                    "(the last row wins); remove the earlier rows to silence this",
                    "warning",
                )
            )
    result.n_duplicates += len(result.records) - len(last)
    result.records = [result.records[j] for j in last.values()]
    result.lines = [result.lines[j] for j in last.values()]


def event_key(event: Event) -> tuple[Any, ...]:
    """Every field of the event; equal keys mean exact duplicates."""
    # Read __dict__ and the enum's _value_: hashing Enum members and datetimes is slow in bulk.
    d = event.__dict__
    context = frozenset(d["context"].items()) if d["context"] else None
    return (
        d["user_id"],
        d["item_id"],
        d["type"]._value_,
        d["timestamp"].timestamp(),
        d["query"],
        d["position"],
        d["session_id"],
        context,
    )


def drop_duplicate_events(result: ReadResult[Event]) -> None:
    """Exact duplicates (every field equal) are dropped, counted and reported as warnings."""
    first_line: dict[tuple[Any, ...], int] = {}
    records: list[Event] = []
    lines: list[int] = []
    for event, line in zip(result.records, result.lines, strict=True):
        key = event_key(event)
        seen = first_line.setdefault(key, line)
        if seen != line:
            result.n_duplicates += 1
            result.problems.append(
                RowProblem(result.file, line, ROW, f"exact duplicate of line {seen}; dropped", "warning")
            )
            continue
        records.append(event)
        lines.append(line)
    result.records, result.lines = records, lines


def reject_unknown_items(result: ReadResult[Event], known_items: Container[str], column: str) -> None:
    """Events about items that are not in the catalog become errors."""
    records: list[Event] = []
    lines: list[int] = []
    for event, line in zip(result.records, result.lines, strict=True):
        if event.item_id is not None and event.item_id not in known_items:
            result.problems.append(
                RowProblem(
                    result.file,
                    line,
                    column,
                    f"item {event.item_id!r} is not in the catalog; ingest its product first "
                    "(--catalog), or use --allow-unknown-items for an id-only stream with no catalog",
                )
            )
            continue
        records.append(event)
        lines.append(line)
    result.records, result.lines = records, lines
