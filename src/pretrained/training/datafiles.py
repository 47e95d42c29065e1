"""Training data from files, for `pretrained train`: CSV, TSV, JSON lines, Parquet and CoNLL, read into rows
(dicts), checked column by column before any training, with errors that name the file, row and column.

CSV/TSV/JSON lines/CoNLL are read with the standard library; Parquet needs `datasets` (or pyarrow). Row numbers
in errors are the file's own: line numbers for CSV/TSV/JSON lines (the header is line 1), sentence numbers
for CoNLL, row indices for Parquet.
"""

from __future__ import annotations

import csv
import json
import os
import random

from ..errors import InputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".conll": "conll", ".txt": "conll"}


class Table:
    """Rows of one file, with where each came from (for errors)."""

    def __init__(self, path: str, rows: list[dict], lines: list[int]):
        self.path, self.rows, self.lines = path, rows, lines

    def where(self, i: int, column: str | None = None) -> str:
        unit = "sentence" if self.path.endswith((".conll", ".txt")) else "line" \
            if not self.path.endswith(".parquet") else "row"
        return f"{self.path}: {unit} {self.lines[i]}" + (f", column {column!r}" if column else "")

    def columns(self) -> set[str]:
        return set().union(*(r.keys() for r in self.rows)) if self.rows else set()


def read_table(path: str) -> Table:
    """Every row of a data file; the format comes from the extension."""
    path = os.fspath(path)
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise InputError(f"{path}: unknown data format; expected one of {sorted(FORMATS)}")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if kind in ("csv", "tsv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="," if kind == "csv" else "\t")
            if not reader.fieldnames:
                raise InputError(f"{path}: empty file (no header row)")
            rows, lines = [], []
            for row in reader:
                if None in row:
                    raise InputError(f"{path}: line {reader.line_num} has more fields than the header "
                                     f"({len(reader.fieldnames)})")
                rows.append(row)
                lines.append(reader.line_num)
        return Table(path, rows, lines)
    if kind == "jsonl":
        rows, lines = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}: line {number} is not JSON: {e.msg}") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object")
                rows.append(row)
                lines.append(number)
        return Table(path, rows, lines)
    if kind == "conll":
        return _read_conll(path)
    return _read_parquet(path)


def _read_conll(path: str) -> Table:
    """CoNLL: one token per line (the first field the word, the last its tag), sentences apart by blank lines."""
    rows, lines, tokens, tags = [], [], [], []

    def close():
        if tokens:
            rows.append({"tokens": list(tokens), "tags": list(tags)})
            lines.append(len(rows))
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                close()
                continue
            if len(fields) < 2:
                raise InputError(f"{path}: line {number} has a token without a tag ({line.strip()!r})")
            tokens.append(fields[0])
            tags.append(fields[-1])
    close()
    return Table(path, rows, lines)


def _read_parquet(path: str) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import datasets
        except ImportError:
            raise InputError(f"{path}: reading Parquet needs the datasets or pyarrow package") from None
        rows = list(datasets.Dataset.from_parquet(path))
    else:
        rows = pq.read_table(path).to_pylist()
    return Table(path, rows, list(range(len(rows))))


# --- checks ---

def require_columns(table: Table, *columns: str) -> None:
    if not table.rows:
        raise InputError(f"{table.path}: no rows")
    present = table.columns()
    for column in columns:
        if column not in present:
            raise InputError(f"{table.path}: no column {column!r}; the columns are {sorted(present)}")
        for i, row in enumerate(table.rows):
            if column not in row or row[column] is None:
                raise InputError(f"{table.where(i, column)}: missing value")


def texts(table: Table, column: str) -> list[str]:
    out = []
    for i, row in enumerate(table.rows):
        value = row[column]
        if not isinstance(value, str):
            raise InputError(f"{table.where(i, column)}: expected text, got {type(value).__name__} {value!r}")
        if not value.strip():
            raise InputError(f"{table.where(i, column)}: empty text")
        out.append(value)
    return out


def labels(table: Table, column: str) -> list[str]:
    """Class labels as strings: strings, or integers (JSON / Parquet ints; CSV text is a string already)."""
    out = []
    for i, row in enumerate(table.rows):
        value = row[column]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(f"{table.where(i, column)}: a label must be a string or an integer, got "
                             f"{type(value).__name__} {value!r}")
        if isinstance(value, str) and not value.strip():
            raise InputError(f"{table.where(i, column)}: empty label")
        out.append(str(value).strip())
    return out


def sequences(table: Table, column: str) -> list[list[str]]:
    """A column of lists of strings (tokens, tags); a JSON-encoded list in CSV text is decoded."""
    out = []
    for i, row in enumerate(table.rows):
        value = row[column]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = value.split()
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
            raise InputError(f"{table.where(i, column)}: expected a non-empty list of strings, got {value!r}")
        out.append([str(v) for v in value])
    return out


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): a seeded `fraction` held out, at least one row each side."""
    if n < 2:
        raise InputError(f"{n} row(s) cannot be split into training and validation data; give --valid")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = min(max(1, round(n * fraction)), n - 1)
    return sorted(order[held:]), sorted(order[:held])
