"""Export and import profiles as a versioned file: `.json`, `.json.gz` or `.csv`.

JSON: {"latts_profile": 1, "tool_version": ..., "hardware": [...], "models": [...],
"cost_points": [...], "acceptance": [...], "accuracy": [...]}, each record an object of
its fields. CSV: one flat table whose `record` column names the kind; a `meta` row first
(version), an `end` row last (so a file cut at a line break is still caught as truncated),
lists JSON-encoded in a cell, an empty cell for None.

Import reads and checks the whole file before writing anything, then writes it in one
transaction; records replace stored ones with the same key, so re-importing adds nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import types
from dataclasses import MISSING, fields
from datetime import datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, get_args, get_type_hints

from storage.errors import UserInputError
from storage.files import MAX_PROFILE_BYTES, load_document, read_text, write_files
from storage.plausible import impossible_value
from storage.profiles import ProfileRecords, ProfileStore
from storage.records import (
    AcceptanceRecord,
    AccuracySample,
    CostPoint,
    HardwareRecord,
    ModelRecord,
)

FORMAT_VERSION = 1
FORMAT_KEY = "latts_profile"
FORMATS = (".json.gz", ".json", ".csv")

# File key -> (CSV record name, record class); the order is the write order.
_KINDS: dict[str, tuple[str, type]] = {
    "hardware": ("hardware", HardwareRecord),
    "models": ("model", ModelRecord),
    "cost_points": ("cost_point", CostPoint),
    "acceptance": ("acceptance", AcceptanceRecord),
    "accuracy": ("accuracy", AccuracySample),
}
_CHOICES = {
    "role": {"target", "draft"},
    "phase": {"decode", "prefill"},
    "status": {"ok", "failed"},
}
_CSV_META = ("record", FORMAT_KEY, "tool_version")


def tool_version() -> str:
    """The installed latts-tune version, or "0+unknown" when running from a checkout."""
    try:
        return version("latts-tune")
    except PackageNotFoundError:
        return "0+unknown"


def export_profiles(
    store: ProfileStore, path: str | os.PathLike, hardware_fingerprint: str | None = None
) -> dict[str, int]:
    """Write every profile (or one hardware's) to `path`; returns records written per kind."""
    path = Path(path)
    file_format = _format_of(path)
    records = store.read(hardware_fingerprint)
    if not any(records.counts().values()):
        raise UserInputError(f"no profiles in {store.url}; nothing to export")
    if file_format == ".csv":
        content: str | bytes = _csv_text(records)
    else:
        content = _json_bytes(records, compressed=file_format == ".json.gz")
    write_files({path: content})  # never leaves a half-written export under the real name
    return records.counts()


def import_profiles(store: ProfileStore, path: str | os.PathLike) -> dict[str, int]:
    """Read `path`, check it, write it in one transaction; returns new records per kind.

    A corrupt or truncated file, another format version or a missing field raises
    UserInputError and writes nothing.
    """
    return store.write(read_profile_file(path))


def read_profile_file(path: str | os.PathLike) -> ProfileRecords:
    """Parse and check a profile file without touching any database."""
    path = Path(path)
    file_format = _format_of(path)
    records = _read_csv(path) if file_format == ".csv" else _read_json(path)
    _check_references(path, records)
    return records


# -- formats -------------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    for suffix in FORMATS:
        if path.name.lower().endswith(suffix):
            return suffix
    raise UserInputError(f"cannot tell the format of {str(path)!r}; name it *.json, "
                         "*.json.gz or *.csv")


def _json_bytes(records: ProfileRecords, compressed: bool) -> bytes:
    document: dict[str, Any] = {FORMAT_KEY: FORMAT_VERSION, "tool_version": tool_version()}
    for key in _KINDS:
        document[key] = [_jsonable(record) for record in getattr(records, key)]
    data = json.dumps(document, indent=1).encode("utf-8")
    # mtime=0: the same profile always gives the same bytes
    return gzip.compress(data, mtime=0) if compressed else data


def _read_json(path: Path) -> ProfileRecords:
    document = load_document(path, "profile file", MAX_PROFILE_BYTES)
    if not isinstance(document, dict):
        raise UserInputError(f"{path} is not a latts-tune profile file (not a JSON object)")
    _check_version(path, document.get(FORMAT_KEY))
    kinds = {}
    for key, (_name, record_class) in _KINDS.items():
        items = document.get(key)
        if not isinstance(items, list):
            raise UserInputError(f"{path}: missing list {key!r}")
        kinds[key] = tuple(
            _build(path, f"{key}[{index}]", record_class, item) for index, item in enumerate(items)
        )
    return ProfileRecords(**kinds)


def _csv_text(records: ProfileRecords) -> str:
    columns = list(_CSV_META)
    for _name, record_class in _KINDS.values():
        columns += [f.name for f in fields(record_class) if f.name not in columns]
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, columns, restval="")
    writer.writeheader()
    writer.writerow({"record": "meta", FORMAT_KEY: FORMAT_VERSION,
                     "tool_version": tool_version()})
    for key, (name, _record_class) in _KINDS.items():
        for record in getattr(records, key):
            cells = {k: _cell(v) for k, v in _jsonable(record).items()}
            writer.writerow({"record": name, **cells})
    writer.writerow({"record": "end"})
    return stream.getvalue()


def _read_csv(path: Path) -> ProfileRecords:
    text = read_text(path, "profile file", MAX_PROFILE_BYTES)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise UserInputError(f"{path} is not a readable profile file (truncated or corrupt?): "
                             f"{_first_line(error)}") from None
    if not rows or "record" not in rows[0] or rows[0]["record"] != "meta":
        raise UserInputError(f"{path} is not a latts-tune profile file (no 'meta' row first)")
    _check_version(path, _int_or_text(rows[0].get(FORMAT_KEY)))
    if rows[-1]["record"] != "end":
        raise UserInputError(f"{path} has no 'end' row (file truncated?)")
    by_name = {name: (key, record_class) for key, (name, record_class) in _KINDS.items()}
    kinds: dict[str, list] = {key: [] for key in _KINDS}
    for line, row in enumerate(rows[1:-1], start=3):  # line 1 is the header, 2 the meta row
        where = f"line {line}"
        if None in row or None in row.values():
            raise UserInputError(f"{path}: {where} has a different number of cells than the "
                                 "header (file truncated or corrupt?)")
        if row["record"] not in by_name:
            raise UserInputError(f"{path}: {where}: unknown record kind {row['record']!r}; "
                                 f"expected one of {', '.join(by_name)}")
        key, record_class = by_name[row["record"]]
        data = _from_cells(record_class, row)
        kinds[key].append(_build(path, f"{where} ({row['record']})", record_class, data))
    return ProfileRecords(**{key: tuple(items) for key, items in kinds.items()})


def _check_version(path: Path, found: object) -> None:
    if found is None or found == "":
        raise UserInputError(f"{path} is not a latts-tune profile file (no {FORMAT_KEY!r} "
                             "version)")
    if found != FORMAT_VERSION:
        raise UserInputError(f"{path} has profile format version {found!r}; this latts-tune "
                             f"({tool_version()}) reads version {FORMAT_VERSION}")


# -- records <-> plain values --------------------------------------------------------------


def _jsonable(record: Any) -> dict[str, Any]:
    values = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        values[field.name] = value
    return values


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def _from_cells(record_class: type, row: dict[str, str]) -> dict[str, Any]:
    """Typed values from a CSV row's cells for the fields of `record_class`."""
    data: dict[str, Any] = {}
    for name, (base, optional) in _field_types(record_class).items():
        text = row.get(name)
        if text is None:
            continue  # column absent: reported as a missing field
        if text == "" and (optional or base is not str):
            data[name] = None
        elif base in (list, dict) or base is tuple:
            data[name] = _json_cell(text)
        elif base is bool:
            data[name] = {"true": True, "false": False}.get(text.lower(), text)
        else:
            data[name] = _int_or_text(text) if base in (int, float) else text
    return data


def _json_cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # reported as a type error with the field name


def _int_or_text(text: str | None) -> Any:
    if text is None:
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _build(path: Path, where: str, record_class: type, data: object) -> Any:
    """The record for one item, or UserInputError saying which field is wrong."""
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: {where}: expected an object, got {data!r}")
    types_by_name = _field_types(record_class)
    unknown = sorted(set(data) - set(types_by_name))
    if unknown:
        raise UserInputError(f"{path}: {where}: unknown field(s) {', '.join(unknown)}")
    missing = [f.name for f in fields(record_class) if f.name not in data and _required(f)]
    if missing:
        raise UserInputError(f"{path}: {where}: missing field(s) {', '.join(missing)}")
    values = {}
    for name, value in data.items():
        base, optional = types_by_name[name]
        values[name] = _coerce(path, f"{where}.{name}", value, base, optional, record_class)
        allowed = _CHOICES.get(name)
        if allowed and values[name] not in allowed:
            raise UserInputError(f"{path}: {where}.{name}: {values[name]!r} is not one of "
                                 f"{', '.join(sorted(allowed))}")
    record = record_class(**values)
    problem = impossible_value(record)
    if problem:
        raise UserInputError(f"{path}: {where}.{problem}")
    return record


def _required(field: Any) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


def _coerce(
    path: Path, where: str, value: Any, base: type, optional: bool, record_class: type
) -> Any:
    if value is None:
        if optional:
            return None
        raise UserInputError(f"{path}: {where}: must not be empty")
    converted = _convert(value, base, record_class, where.rsplit(".", 1)[-1])
    if converted is _INVALID:
        raise UserInputError(f"{path}: {where}: expected {base.__name__}, got {value!r}")
    return converted


_INVALID = object()


def _convert(value: Any, base: type, record_class: type, name: str) -> Any:
    if base is tuple:
        element = _element_type(record_class, name)
        if not isinstance(value, list):
            return _INVALID
        items = [_convert(item, element, record_class, name) for item in value]
        return _INVALID if _INVALID in items else tuple(items)
    if base is datetime:
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else _INVALID
        except ValueError:
            return _INVALID
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is not bool and isinstance(value, bool):
        return _INVALID
    return value if isinstance(value, base) else _INVALID


@cache
def _element_type(record_class: type, name: str) -> type:
    return get_args(get_type_hints(record_class)[name])[0]


@cache
def _field_types(record_class: type) -> dict[str, tuple[type, bool]]:
    """Field name -> (base type, optional) from the record's annotations."""
    result = {}
    for name, hint in get_type_hints(record_class).items():
        args = get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        if optional:
            hint = next(arg for arg in args if arg is not type(None))
        origin = getattr(hint, "__origin__", None)
        result[name] = (origin or hint, optional)
    return result


def _check_references(path: Path, records: ProfileRecords) -> None:
    """Measurements must name hardware and models that the file itself describes."""
    fingerprints = {record.fingerprint for record in records.hardware}
    model_names = {record.name for record in records.models}
    for key in ("cost_points", "acceptance", "accuracy"):
        for index, record in enumerate(getattr(records, key)):
            if record.hardware_fingerprint not in fingerprints:
                raise UserInputError(f"{path}: {key}[{index}] names hardware "
                                     f"{record.hardware_fingerprint!r}, which the file lacks")
            for attr in ("model", "target", "draft"):
                name = getattr(record, attr, None)
                if key == "cost_points" and attr == "draft":
                    continue  # a cost point's draft may be a model measured elsewhere
                if name is not None and name not in model_names:
                    raise UserInputError(f"{path}: {key}[{index}] names model {name!r}, "
                                         "which the file lacks")


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
