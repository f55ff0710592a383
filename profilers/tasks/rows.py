"""Shared by file-backed tasks: reading JSONL rows and assigning them to splits."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from storage import MAX_TASK_BYTES, UserInputError, read_text

# Hash buckets out of 10 per split. "test" is every row (a benchmark's own full set; it
# overlaps the others): use it to report one number, the others to tune and validate.
SPLIT_BUCKETS = {"heldout": range(0, 6), "validation": range(6, 9), "train": range(9, 10)}
SPLITS = (*SPLIT_BUCKETS, "test")


def split_of(key: str) -> str:
    """The split a row belongs to: a stable hash of its id (crc32), so splits are disjoint
    and a row never moves when rows are added or reordered."""
    bucket = zlib.crc32(key.encode()) % 10
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def rows_of_split(rows: list[dict], key_field: str, split: str, count: int,
                  source: str) -> list[dict]:
    """The first `count` rows of `split`, in file order; refuses more than there are."""
    if split not in SPLITS:
        raise UserInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    chosen = [row for row in rows if split == "test" or split_of(str(row[key_field])) == split]
    if count > len(chosen):
        raise UserInputError(f"{source}: split {split!r} has {len(chosen)} questions, "
                             f"{count} asked; ask for at most {len(chosen)}")
    return chosen[:count]


def read_jsonl(path: str | Path, required: tuple[str, ...],
               max_bytes: int = MAX_TASK_BYTES) -> list[dict]:
    """Rows of a JSONL file of at most `max_bytes`, each a JSON object holding every
    `required` field."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserInputError(f"task file '{path}' does not exist; pass the path of a JSONL file")
    rows = []
    text = read_text(file, "task file", max_bytes)  # bounded, UTF-8 checked
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise UserInputError(f"{path}:{number}: not JSON ({reason}); "
                                 "write one JSON object per line") from error
        missing = [field for field in required if not isinstance(row, dict) or field not in row]
        if missing:
            raise UserInputError(f"{path}:{number}: missing field(s) {', '.join(missing)}; "
                                 f"each row needs {', '.join(required)}")
        rows.append(row)
    if not rows:
        raise UserInputError(f"{path}: no rows; write one JSON object per line")
    return rows
