"""A client's table file read into a DataFrame, within bounds (docs/agents.md).

CSV, XLSX and JSON (an array of flat objects), told apart by the file's
extension. Whatever goes wrong while parsing comes out as `TableUnreadable`,
whose message may be shown to the client as it is: it never carries a
traceback or a path, only what is wrong with their file.
"""

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterable
from pathlib import PurePosixPath

import pandas as pd
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
MAX_COLUMNS = 200
# Enough lines for the sniffer to see the delimiter repeat; it reads no further.
SNIFF_BYTES = 4096
DELIMITERS = ",;\t"
EXTENSIONS = (".csv", ".xlsx", ".json")


class TableUnreadable(Exception):
    """The file is not a table this agent can profile; the message says why, in the client's terms."""

    def __init__(self, reason: str):
        super().__init__(f"The file is not a CSV, XLSX or JSON table: {reason}")


def table_is_supported(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in EXTENSIONS


def table_read(*, name: str, content: bytes) -> pd.DataFrame:
    """The file's table; `TableUnreadable` when it cannot be parsed or is empty or out of bounds."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise TableUnreadable(f"{name!r} has an unsupported extension (expected .csv, .xlsx or .json).")
    if len(content) > MAX_BYTES:
        raise TableUnreadable(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    readers = {".csv": _csv_read, ".xlsx": _xlsx_read, ".json": _json_read}
    df = readers[suffix](content)
    _bounds_check(df)
    return _infinities_dropped(df)


def _bounds_check(df: pd.DataFrame) -> None:
    if df.shape[1] == 0:
        raise TableUnreadable("it has no columns.")
    if df.shape[1] > MAX_COLUMNS:
        raise TableUnreadable(f"it has {df.shape[1]:,} columns; at most {MAX_COLUMNS:,} are profiled.")
    if df.shape[0] == 0:
        raise TableUnreadable("it has no rows.")
    if df.shape[0] > MAX_ROWS:
        raise TableUnreadable(f"it has more than {MAX_ROWS:,} rows.")


def _infinities_dropped(df: pd.DataFrame) -> pd.DataFrame:
    """±inf (pandas reads "inf" in a CSV as a number) becomes missing: no sum, mean or bar can hold it."""
    numeric = df.select_dtypes("number").columns
    if len(numeric):
        df[numeric] = df[numeric].replace([math.inf, -math.inf], math.nan)
    return df


# --- CSV --------------------------------------------------------------------------------------


def _text_decode(content: bytes) -> str:
    try:
        text = content.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise TableUnreadable("it is not UTF-8 text.") from exc
    if "\x00" in text:
        raise TableUnreadable("it is a binary file, not text.")
    return text


def csv_delimiter(text: str) -> str:
    """`,`, `;` or a tab, guessed from the first lines; `,` when the sample is ambiguous.

    csv.Sniffer on a few KB rather than pandas' `sep=None`: pandas would sniff
    only the first line and then parse with its slow python engine, while a
    known delimiter lets the C engine parse 200 000 rows in a fraction of it.
    """
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut-off last line would skew the counts
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_read(content: bytes) -> pd.DataFrame:
    text = _text_decode(content)
    try:
        # One row past the bound is enough to know the bound is passed.
        return pd.read_csv(io.StringIO(text), sep=csv_delimiter(text), nrows=MAX_ROWS + 1)
    except pd.errors.EmptyDataError as exc:
        raise TableUnreadable("it is empty.") from exc
    except pd.errors.ParserError as exc:
        # pandas' tokenizer says which line broke ("Expected 2 fields in line 3, saw 3").
        raise TableUnreadable(f"the CSV is malformed ({str(exc).splitlines()[-1].strip()}).") from exc
    except (ValueError, OverflowError) as exc:
        raise TableUnreadable("the CSV could not be parsed.") from exc


# --- XLSX -------------------------------------------------------------------------------------


def _xlsx_read(content: bytes) -> pd.DataFrame:
    try:
        # data_only: the values Excel cached when it saved; formulas are never evaluated here.
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise TableUnreadable("it is not a readable XLSX workbook.") from exc
    try:
        if not workbook.worksheets:
            raise TableUnreadable("the workbook has no worksheet.")
        # One column past the bound is enough to know the bound is passed, whatever the sheet claims.
        rows = workbook.worksheets[0].iter_rows(max_col=MAX_COLUMNS + 1, values_only=True)
        return _rows_frame(_rows_bounded(rows))
    except TableUnreadable:
        raise
    except Exception as exc:  # openpyxl raises many kinds on a damaged sheet; all mean the same here
        raise TableUnreadable("the first worksheet could not be read.") from exc
    finally:
        workbook.close()


def _rows_bounded(rows: Iterable[tuple]) -> list[tuple]:
    """The non-blank rows, the header first, stopping one past the row bound."""
    kept = []
    for row in rows:
        if any(value is not None for value in row):
            kept.append(row)
            if len(kept) > MAX_ROWS + 1:
                break
    return kept


def _rows_frame(rows: list[tuple]) -> pd.DataFrame:
    if not rows:
        raise TableUnreadable("the first worksheet is empty.")
    header = rows[0]
    # Formatting can stretch a sheet's used range far to the right; the table ends at the last named column.
    width = max((i + 1 for i, value in enumerate(header) if value is not None), default=0)
    names = _names_unique(str(v) if v is not None else f"column_{i + 1}" for i, v in enumerate(header[:width]))
    body = [tuple(row[:width]) + (None,) * (width - len(row)) for row in rows[1:]]
    return pd.DataFrame(body, columns=names)


def _names_unique(names: Iterable[str]) -> list[str]:
    """Repeated header names get `.1`, `.2`… as pandas does for a CSV, so no column hides another."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(f"{name}.{count}" if count else name)
    return unique


# --- JSON -------------------------------------------------------------------------------------


def _json_read(content: bytes) -> pd.DataFrame:
    try:
        data = json.loads(_text_decode(content))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TableUnreadable("it is not valid JSON.") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise TableUnreadable("the JSON is not an array of objects.")
    if len(data) > MAX_ROWS:
        raise TableUnreadable(f"it has more than {MAX_ROWS:,} rows.")
    names: dict[str, None] = {}  # every key in order of first appearance; a dict keeps order
    for item in data:
        if any(isinstance(value, (dict, list)) for value in item.values()):
            raise TableUnreadable("the JSON objects are nested; only flat objects make a table.")
        names.update(dict.fromkeys(item))
        if len(names) > MAX_COLUMNS:
            raise TableUnreadable(f"it has more than {MAX_COLUMNS:,} columns.")
    return pd.DataFrame.from_records(data, columns=list(names))
