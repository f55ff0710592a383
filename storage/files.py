"""The files a user hands in and the files we write, both bounded.

Reading: every file a user names (a study spec, a profile file, a preset) goes through
`load_document` (or `read_text` for CSV): a size cap on disk and after decompression,
UTF-8 checked, then JSON, or YAML with caps on aliases, nesting and the size the aliases
expand to, before any schema sees it. A hostile file fails fast in bounded memory.

Writing: `output_folder` and `write_files` turn an unwritable destination into one
UserInputError, write each file under a temporary name first and rename it into place
only when every file was written, and refuse a name that would land outside the folder.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from storage.errors import UserInputError

MB = 1_000_000
# A spec or preset is a few KB; 1 MB leaves room for comments and long lists.
MAX_SPEC_BYTES = 1 * MB
MAX_PRESET_BYTES = 1 * MB
# The testbed's full profile is 5.2 MB of JSON (12,800 records, ~400 bytes each); MATH-500
# with 64 samples per question for 3 models is ~80 MB. Refusing a gzip bomb costs inflating
# the cap once (~0.3 s for 128 MB on an idle core); parsed, JSON takes ~10x its size.
MAX_PROFILE_BYTES = 128 * MB
# A benchmark's questions: MATH-500 is 0.4 MB, GSM8K's test set 0.7 MB.
MAX_TASK_BYTES = 64 * MB
# Specs and presets nest 3-4 levels and use an alias or two, if any.
YAML_MAX_DEPTH = 32
YAML_MAX_ALIASES = 100
YAML_MAX_VALUES = 100_000  # after expanding aliases ("billion laughs")
CHUNK_BYTES = 1 << 22


def read_text(path: Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of `path` (gunzipped when it ends in .gz), at most `max_bytes` long.

    `what` names the kind of file in messages ("study spec"). Raises UserInputError when
    the file cannot be read, is too large (checked before reading it whole), is a corrupt
    gzip stream or is not UTF-8.
    """
    try:
        with open(path, "rb") as stream:
            _check_size(path, os.fstat(stream.fileno()).st_size, what, max_bytes)
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise UserInputError(f"{path}: cannot read {what} ({error.strerror or error})"
                             ) from None
    _check_size(path, len(data), what, max_bytes)  # it grew while we read
    if path.name.lower().endswith(".gz"):
        data = _gunzip(path, data, what, max_bytes)
    return _utf8(path, data)


def _check_size(path: Path, size_bytes: int, what: str, max_bytes: int) -> None:
    if size_bytes > max_bytes:
        raise UserInputError(f"{path} is {size_bytes / MB:.1f} MB; a {what} is at most "
                             f"{max_bytes / MB:g} MB")


def _gunzip(path: Path, data: bytes, what: str, max_bytes: int) -> bytes:
    """Decompress twice: first counting the size chunk by chunk and keeping nothing, so a
    small file that expands to gigabytes is refused in constant memory; then, known to be
    under the cap, into memory."""
    try:
        _check_unzipped_size(path, data, what, max_bytes)
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UserInputError(f"{path} is not a readable {what} (truncated or corrupt?): "
                             f"{_first_line(error)}") from None


def _check_unzipped_size(path: Path, data: bytes, what: str, max_bytes: int) -> None:
    size_bytes = 0
    pending = data
    while pending:  # a gzip file is one or more members
        inflater = zlib.decompressobj(wbits=31)
        while not inflater.eof:
            chunk = inflater.decompress(pending, CHUNK_BYTES)
            pending = inflater.unconsumed_tail
            size_bytes += len(chunk)
            if size_bytes > max_bytes:
                raise UserInputError(f"{path} expands to more than {max_bytes / MB:g} MB; a "
                                     f"{what} is at most {max_bytes / MB:g} MB uncompressed")
            if not chunk and not pending:
                raise EOFError("Compressed file ended before the end-of-stream marker was "
                               "reached")
        pending = inflater.unused_data


def _utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                             f"offset {error.start}); save it as UTF-8") from None


def load_document(path: Path, what: str, max_bytes: int) -> object:
    """The JSON (`.json`, `.json.gz`) or YAML (anything else) value in `path`, read by
    `read_text` and parsed within the caps; UserInputError for anything unreadable."""
    text = read_text(path, what, max_bytes)
    if path.name.lower().endswith((".json", ".json.gz")):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as error:
            raise UserInputError(f"{path} is not a readable {what} (truncated or corrupt?): "
                                 f"{_first_line(error)}") from None
    try:
        return load_yaml(text)
    except YamlRefused as error:
        raise UserInputError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"{path}: not valid YAML: {_first_line(error)}") from None


# -- YAML ------------------------------------------------------------------------------------


class YamlRefused(yaml.YAMLError):
    """A YAML document over one of the caps (aliases, nesting, expanded size)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and nesting while it composes the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > YAML_MAX_ALIASES:
                raise YamlRefused(f"more than {YAML_MAX_ALIASES} YAML aliases")
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > YAML_MAX_DEPTH:
                raise YamlRefused(f"YAML nested deeper than {YAML_MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str) -> object:
    """The value of a one-document YAML (or JSON) text, like `yaml.safe_load`, with caps.

    Raises YamlRefused (a yaml.YAMLError) over a cap, before anything is constructed, and
    yaml.YAMLError for invalid YAML.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, 1, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]],
                   open_nodes: set[int]) -> tuple[int, int]:
    """(values, height) of `node` with every alias expanded; each node is walked once, so a
    document whose aliases expand to 10^9 values is refused after a few hundred steps."""
    key = id(node)
    if key in sizes:
        values, height = sizes[key]
        if depth - 1 + height > YAML_MAX_DEPTH:
            raise YamlRefused(f"YAML nested deeper than {YAML_MAX_DEPTH} levels")
        return values, height
    if key in open_nodes:
        raise YamlRefused("a YAML alias refers to a value that contains it")
    if depth > YAML_MAX_DEPTH:
        raise YamlRefused(f"YAML nested deeper than {YAML_MAX_DEPTH} levels")
    open_nodes.add(key)
    values, height = 1, 1
    for child in _children(node):
        child_values, child_height = _expanded_size(child, depth + 1, sizes, open_nodes)
        values += child_values
        height = max(height, child_height + 1)
        if values > YAML_MAX_VALUES:
            raise YamlRefused(f"YAML aliases expand to more than {YAML_MAX_VALUES:,} values")
    open_nodes.discard(key)
    sizes[key] = (values, height)
    return values, height


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


# -- writing ---------------------------------------------------------------------------------


def output_folder(directory: Path) -> Path:
    """`directory`, created if missing; UserInputError when it cannot be (under a file,
    in /proc, read-only)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(directory, error) from None
    if not directory.is_dir():
        raise UserInputError(f"cannot write to {directory}: it is not a folder; pick another "
                             "output folder")
    return directory


def inside(directory: Path, name: str) -> Path:
    """`directory / name`, refused unless it is a file directly in `directory` (a name
    holding '/' or '..' would write elsewhere)."""
    path = directory / name
    if path.parent.resolve() != directory.resolve() or name in ("", ".", ".."):
        raise UserInputError(f"refusing to write {name!r}: the file name would leave "
                             f"{directory}")
    return path


def write_files(contents: Mapping[Path, str | bytes]) -> list[Path]:
    """Write every file or none (see `staged_files`); returns the paths."""
    with staged_files(contents) as paths:
        return paths


@contextmanager
def staged_files(contents: Mapping[Path, str | bytes]) -> Iterator[list[Path]]:
    """Write each file under a temporary name beside it; when the block ends without an
    error, rename them all into place, else remove them. An error (disk full, a database
    refusing the matching write, Ctrl-C) thus leaves no file, whole or half-written.
    UserInputError when a file cannot be written."""
    staged: dict[Path, Path] = {}
    try:
        for path, content in contents.items():
            try:
                staged[path] = _stage(path, content)
            except OSError as error:
                raise _unwritable(path, error) from None
        yield list(contents)
        for path, temporary in staged.items():
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise _unwritable(path, error) from None
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _stage(path: Path, content: str | bytes) -> Path:
    temporary = path.with_name(f".{path.name}.partial")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        temporary.write_bytes(data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _unwritable(path: Path, error: OSError) -> UserInputError:
    return UserInputError(f"cannot write {path}: {error.strerror or error}; pick a writable "
                          "output folder")


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
