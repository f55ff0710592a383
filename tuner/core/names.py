"""Names that reach the file system: study, spec and preset names.

`export` names its files after the study and a worker its lock file, so a study called
"../../x" or "/tmp/x" would write outside the folder the user named, and one of 500
characters would exceed the file system's name limit. Names are checked where they enter
(`run --study-name`, `worker --study`, a spec's `name`, a preset file's `name`); a study
stored by an older release is made safe by `file_stem` when it names a file.
"""

from __future__ import annotations

import hashlib
import re

from storage import UserInputError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A file name holds the name plus "-t12345.preset.json"; file systems allow 255 bytes.
MAX_NAME_CHARS = 128
MAX_SPEC_NAME_CHARS = 64  # a default study name adds deadline, statistic and machine
NAME_RULE = (f"use letters, digits, '.', '_' and '-', starting with a letter or digit, at "
             f"most {MAX_NAME_CHARS} characters")
_NAME = re.compile(NAME_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
DIGEST_CHARS = 8


def check_name(name: str, what: str = "study name") -> str:
    """`name` when it is safe as a file name; UserInputError saying the rule otherwise."""
    if len(name) > MAX_NAME_CHARS:
        raise UserInputError(f"{what} of {len(name)} characters is too long; {NAME_RULE}")
    if not _NAME.match(name):
        raise UserInputError(f"{what} {name!r} cannot name a file; {NAME_RULE}")
    return name


def file_stem(name: str) -> str:
    """`name` if it is safe, else a safe stem made from it (unsafe characters as '_', a
    digest of the whole name when it had to change, so two names never collide)."""
    if len(name) <= MAX_NAME_CHARS and _NAME.match(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:DIGEST_CHARS]
    stem = _UNSAFE.sub("_", name).lstrip("._-")[:MAX_NAME_CHARS - DIGEST_CHARS - 1]
    return f"{stem}-{digest}" if stem else digest
