"""Deadlines as people write them ("60s", "1.5s", "500ms", "2m") and ranges of them."""

from __future__ import annotations

import math
import re

from storage.errors import UserInputError

_SECONDS_PER_UNIT = {"ms": 1e-3, "s": 1.0, "m": 60.0}
_DURATION = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|m)?\s*$")
_EXAMPLES = "write e.g. 60s, 1.5s, 500ms or 2m"


def parse_duration(text: str) -> float:
    """Seconds in `text` ("60s", "1.5s", "500ms", "2m"); UserInputError for anything else.

    A bare number is refused: "60" could mean seconds or milliseconds.
    """
    match = _DURATION.match(text)
    if match is None:
        raise UserInputError(f"deadline {text!r} is not a duration; {_EXAMPLES}")
    number, unit = float(match.group(1)), match.group(2)
    if number <= 0:
        raise UserInputError(f"deadline {text!r} must be greater than 0; {_EXAMPLES}")
    if unit is None:
        value = match.group(1)
        raise UserInputError(
            f"deadline {text!r} has no unit; write {value}s, 500ms or 2m"
        )
    seconds = number * _SECONDS_PER_UNIT[unit]
    if not math.isfinite(seconds):  # "1e400ms" reads as infinity
        raise UserInputError(f"deadline {text!r} is too large to be a number; {_EXAMPLES}")
    return seconds


def parse_duration_range(text: str) -> tuple[float, ...]:
    """Evenly spaced deadlines in seconds from "START:STOP:COUNT", e.g. "0.5s:5s:10"."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UserInputError(
            f"deadline range {text!r} must be START:STOP:COUNT, e.g. 0.5s:5s:10"
        )
    start_s, stop_s = parse_duration(parts[0]), parse_duration(parts[1])
    count = _parse_count(parts[2], text)
    if stop_s < start_s:
        raise UserInputError(f"deadline range {text!r}: STOP must not be below START")
    if count == 1:
        return (start_s,)
    step_s = (stop_s - start_s) / (count - 1)
    return tuple(start_s + index * step_s for index in range(count))


def format_duration(seconds: float) -> str:
    """A short human form: "850ms", "1.5s", "2m"."""
    if seconds < 1:
        return f"{seconds * 1000:.4g}ms"
    if seconds >= 120 and (seconds / 60).is_integer():
        return f"{seconds / 60:g}m"
    return f"{seconds:.4g}s"


def _parse_count(text: str, whole: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UserInputError(
            f"deadline range {whole!r}: COUNT must be a whole number >= 1, e.g. 0.5s:5s:10"
        )
    return count
