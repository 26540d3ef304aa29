"""Read products and events from CSV, JSONL and Parquet files, row by row validated.

>>> result = read_products(Path("catalog.csv"), mapping={"item_id": "sku", "title": "name"})  # doctest: +SKIP
>>> result.records, result.problems  # doctest: +SKIP

Line numbers are 1-based lines of the file (the CSV header is line 1); for
Parquet they are 1-based row numbers. Bytes that are not UTF-8 cost only the
row that holds them, not the file. Files are read whole into memory.
"""

from __future__ import annotations

import csv
import gc
import gzip
import io
import json
import sys
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from shopfusion.data.schema import Event, Product
from shopfusion.data.validation import (
    ROW,
    ReadResult,
    RecordT,
    RowProblem,
    RowValidator,
    drop_duplicate_events,
    keep_last_products,
    reject_unknown_items,
    unused_columns,
)
from shopfusion.errors import DataError

Format = Literal["csv", "jsonl", "parquet"]
RawRow = tuple[int, dict[str, Any]]

_SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_BOM_BYTES = b"\xef\xbb\xbf"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long product descriptions are legitimate


def detect_format(path: Path) -> Format:
    """The format from the extension: .csv, .jsonl/.ndjson, .parquet (.gz allowed for csv/jsonl)."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = _SUFFIXES.get(ext)
    if fmt is None or (gz and fmt == "parquet"):
        raise DataError(
            f"cannot tell the format of {path.name}: name it .csv, .jsonl, .ndjson or .parquet "
            "(.csv.gz and .jsonl.gz are read too)"
        )
    return fmt


def read_products(
    path: Path, mapping: Mapping[str, str] | None = None, *, fmt: Format | None = None
) -> ReadResult[Product]:
    """Validated products; a repeated ``item_id`` keeps its last row (earlier ones are warned about)."""
    result = _read(path, Product, mapping, fmt)
    keep_last_products(result, (mapping or {}).get("item_id", "item_id"))
    result.problems.sort(key=lambda p: p.line)
    return result


def read_events(
    path: Path,
    mapping: Mapping[str, str] | None = None,
    *,
    known_items: Container[str] | None = None,
    fmt: Format | None = None,
) -> ReadResult[Event]:
    """Validated events with UTC timestamps; exact duplicates are dropped and counted.

    With ``known_items`` (the catalog's ids), events about other items are rejected.
    """
    validator_mapping = dict(mapping or {})
    result = _read(path, Event, validator_mapping, fmt)
    drop_duplicate_events(result)
    if known_items is not None:
        reject_unknown_items(result, known_items, validator_mapping.get("item_id", "item_id"))
    result.problems.sort(key=lambda p: p.line)
    return result


def _read(
    path: Path, model: type[RecordT], mapping: Mapping[str, str] | None, fmt: Format | None
) -> ReadResult[RecordT]:
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file; check the path")
    fmt = fmt or detect_format(path)
    validator = RowValidator(model, str(path), mapping)
    result: ReadResult[RecordT] = ReadResult(str(path))
    columns: dict[str, int] = {}  # every column seen -> its first line, filled by the row reader
    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[fmt](
        path, result.problems, columns
    )
    with _gc_paused():
        for line, row in rows:
            result.n_rows += 1
            if not row:
                continue  # unreadable row, already reported
            record = validator.validate(line, row)
            if isinstance(record, list):
                result.problems.extend(record)
            else:
                result.records.append(record)
                result.lines.append(line)
    result.problems.extend(unused_columns(result.file, columns, validator.columns_of, model))
    return result


def _read_text(path: Path) -> tuple[str, bool]:
    """The file's text and whether it all was valid UTF-8.

    If not, undecodable bytes are kept as lone surrogates (``surrogateescape``), so that each
    row can be checked on its own and only the bad rows are lost.
    """
    raw = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    raw = raw.removeprefix(_BOM_BYTES)
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="surrogateescape"), False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building many small objects triggers needless full collections; pause them meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _bad_bytes(file: str, line: int, text: str, column: str) -> RowProblem | None:
    """A problem if ``text`` holds bytes that were not valid UTF-8, else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) - 0xDC00
        return RowProblem(
            file,
            line,
            column,
            f"invalid UTF-8 (byte 0x{byte:02x}); re-save the file as UTF-8 — this row was skipped",
        )
    return None


def _csv_rows(path: Path, problems: list[RowProblem], columns: dict[str, int]) -> Iterator[RawRow]:
    file = str(path)
    text, clean = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"{file}:1: cannot read the CSV header ({exc}); fix the first line") from None
    if not clean and any(_bad_bytes(file, 1, name, ROW) for name in header):
        raise DataError(f"{file}:1: the CSV header is not valid UTF-8; re-save the file as UTF-8")
    columns.update(dict.fromkeys(header, 1))
    yield from _csv_records(reader, header, file, problems, check_bytes=not clean)


def _csv_records(
    reader: Any, header: list[str], file: str, problems: list[RowProblem], check_bytes: bool
) -> Iterator[RawRow]:
    end = reader.line_num
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            problems.append(
                RowProblem(file, start, ROW, f"malformed CSV ({exc}); check the quoting of this row")
            )
            yield start, {}
            continue
        end = reader.line_num
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        if len(values) != len(header):
            problems.append(
                RowProblem(
                    file,
                    start,
                    ROW,
                    f"row has {len(values)} values but the header has {len(header)} columns; "
                    "quote values that contain commas",
                )
            )
            yield start, {}
            continue
        problem = _first_bad_value(file, start, header, values) if check_bytes else None
        if problem:
            problems.append(problem)
            yield start, {}
            continue
        yield start, dict(zip(header, values, strict=True))


def _first_bad_value(file: str, line: int, header: list[str], values: list[str]) -> RowProblem | None:
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        for name, value in zip(header, values, strict=True):
            problem = _bad_bytes(file, line, value, name)
            if problem:
                return problem
    return None


def _jsonl_rows(path: Path, problems: list[RowProblem], columns: dict[str, int]) -> Iterator[RawRow]:
    file = str(path)
    text, clean = _read_text(path)
    for line, chunk in enumerate(text.split("\n"), 1):
        if not chunk.strip():
            continue
        row = _json_row(file, line, chunk, problems, check_bytes=not clean)
        if row is None:
            yield line, {}
            continue
        for key in row:
            if key not in columns:
                columns[key] = line
        yield line, row


def _json_row(
    file: str, line: int, text: str, problems: list[RowProblem], check_bytes: bool
) -> dict[str, Any] | None:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = _bad_bytes(file, line, text, ROW) or RowProblem(
            file,
            line,
            ROW,
            f"malformed JSON ({exc.msg} at column {exc.colno}); write one JSON object per line",
        )
        problems.append(problem)
        return None
    if not isinstance(row, dict):
        problems.append(
            RowProblem(
                file,
                line,
                ROW,
                f"expected a JSON object, got {type(row).__name__}; write one object per line",
            )
        )
        return None
    whole_line = _bad_bytes(file, line, text, ROW) if check_bytes else None
    if whole_line:
        values = (json.dumps(value, ensure_ascii=False) + str(key) for key, value in row.items())
        by_key = (_bad_bytes(file, line, dumped, str(key)) for dumped, key in zip(values, row, strict=True))
        problems.append(next((p for p in by_key if p), whole_line))  # name the field when we can
        return None
    return row


def _parquet_rows(path: Path, problems: list[RowProblem], columns: dict[str, int]) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path} is not a readable Parquet file ({exc}); re-export it") from None
    with parquet:
        columns.update(dict.fromkeys(parquet.schema_arrow.names, 1))
        line = 0
        for batch in parquet.iter_batches(batch_size=16_384):
            for row in batch.to_pylist():
                line += 1
                yield line, row
