"""The load a deployment serves: how requests arrive (docs/design.md, "Load").

Each kind is a frozen value type registered with `@register_load`; `parse_load` reads the
text form people write:

- `2rps`, `0.5rps`: Poisson arrivals at that rate (requests per second), open loop;
- `4conc`: a fixed concurrency, closed loop: that many clients, each sending its next
  request the moment its previous one is answered;
- `trace:FILE`: open loop at the arrival times in FILE, one number of seconds per line
  (`#` comments and blank lines allowed), non-decreasing, at most `TRACE_MAX_ARRIVALS`.

`arrivals_s` gives an open-loop load's arrival offsets (seconds from the first request, a
fixed seed); a closed loop has `clients` instead. The simulator replays either
(`tuner.core.simulator.load`); the executor generates the same with timed submissions.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from storage.errors import UserInputError

TRACE_MAX_BYTES = 4_000_000
TRACE_MAX_ARRIVALS = 100_000
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_EXAMPLES = "write e.g. 2rps (Poisson arrivals), 4conc (4 clients) or trace:FILE"


@dataclass(frozen=True)
class Load(ABC):
    """How requests arrive; `key()` is its text form, parsed back by `parse_load`."""

    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> Load | None:
        """The load `text` names, None when `text` is not of this kind."""

    @abstractmethod
    def key(self) -> str:
        """The text form: "2rps", "4conc", "trace:FILE"."""

    def tag(self) -> str:
        """For study names (letters, digits, dots, dashes): "2rps"."""
        return self.key()

    def label(self) -> str:
        return self.key()

    @property
    def clients(self) -> int | None:
        """Closed loop: how many clients keep one request each in flight (None: open)."""
        return None

    def arrivals_s(self, requests: int, seed: int = 0) -> np.ndarray:
        """Open loop: arrival offsets (seconds, ascending, the first at 0) of `requests`."""
        raise NotImplementedError(f"{self.key()} is a closed loop: it has clients, not "
                                  "arrival times")

    def rate_rps(self) -> float | None:
        """Mean arrival rate of an open loop (None for a closed loop)."""
        return None


LOAD_KINDS: dict[str, type[Load]] = {}


def register_load(kind: type[Load]) -> type[Load]:
    """Class decorator: make a load kind available to `parse_load`."""
    if kind.kind in LOAD_KINDS and LOAD_KINDS[kind.kind] is not kind:
        raise ValueError(f"load kind {kind.kind!r} is registered already")
    LOAD_KINDS[kind.kind] = kind
    return kind


@lru_cache(maxsize=64)
def parse_load(text: str) -> Load:
    """The load `text` names (see the module docstring); UserInputError otherwise."""
    cleaned = text.strip()
    for kind in LOAD_KINDS.values():
        load = kind.parse(cleaned)
        if load is not None:
            return load
    raise UserInputError(f"load {text!r} is not a load; {_EXAMPLES}")


@register_load
@dataclass(frozen=True)
class PoissonLoad(Load):
    """Requests arrive as a Poisson process of `rate_rps` requests per second."""

    kind: ClassVar[str] = "poisson"
    rate: float  # requests per second

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise UserInputError(f"arrival rate must be above 0 (got {self.rate:g}rps); "
                                 f"{_EXAMPLES}")

    @classmethod
    def parse(cls, text: str) -> PoissonLoad | None:
        match = re.fullmatch(_NUMBER + r"\s*rps", text)
        return cls(float(match.group(1))) if match else None

    def key(self) -> str:
        return f"{self.rate:g}rps"

    def label(self) -> str:
        return f"{self.rate:g} requests/s (Poisson)"

    def arrivals_s(self, requests: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng([seed, requests, 7919])
        gaps_s = rng.exponential(1.0 / self.rate, size=requests)
        gaps_s[0] = 0.0  # the clock starts at the first request
        return np.cumsum(gaps_s)

    def rate_rps(self) -> float:
        return self.rate


@register_load
@dataclass(frozen=True)
class ConcurrencyLoad(Load):
    """`count` clients, each with one request in flight (closed loop, no think time)."""

    kind: ClassVar[str] = "concurrency"
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UserInputError(f"concurrency must be at least 1 (got {self.count}conc)")

    @classmethod
    def parse(cls, text: str) -> ConcurrencyLoad | None:
        match = re.fullmatch(r"(\d+)\s*conc", text)
        return cls(int(match.group(1))) if match else None

    def key(self) -> str:
        return f"{self.count}conc"

    def label(self) -> str:
        return f"{self.count} concurrent requests"

    @property
    def clients(self) -> int:
        return self.count


@register_load
@dataclass(frozen=True)
class TraceLoad(Load):
    """Arrivals at the times of a trace file (seconds from its first arrival)."""

    kind: ClassVar[str] = "trace"
    path: str
    offsets_s: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> TraceLoad | None:
        if not text.startswith("trace:"):
            return None
        name, _, digest = text.removeprefix("trace:").partition("#")
        load = read_trace(Path(name))
        if digest and digest != load.digest():
            raise UserInputError(f"trace {name} changed since it was used (digest "
                                 f"{load.digest()}, stored {digest}); pass a new study name")
        return load

    def key(self) -> str:
        return f"trace:{self.path}#{self.digest()}"

    def tag(self) -> str:
        return f"trace-{self.digest()}"

    def label(self) -> str:
        return f"trace {Path(self.path).name} ({len(self.offsets_s)} arrivals)"

    def digest(self) -> str:
        return hashlib.sha1(repr(self.offsets_s).encode()).hexdigest()[:8]

    def arrivals_s(self, requests: int, seed: int = 0) -> np.ndarray:
        # The trace is replayed as it is: its own count, not `requests`.
        return np.asarray(self.offsets_s, dtype=float)

    def rate_rps(self) -> float:
        span_s = self.offsets_s[-1] - self.offsets_s[0]
        return (len(self.offsets_s) - 1) / span_s if span_s > 0 else math.inf


def read_trace(path: Path) -> TraceLoad:
    """A trace file (see the module docstring); UserInputError naming the bad line."""
    try:
        size = path.stat().st_size
        if size > TRACE_MAX_BYTES:
            raise UserInputError(f"trace {path}: {size} bytes; at most {TRACE_MAX_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserInputError(f"trace {path}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UserInputError(f"trace {path}: not a text file of seconds") from None
    times_s: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if value:
            times_s.append(_trace_time(path, number, value, times_s))
    if not times_s:
        raise UserInputError(f"trace {path}: no arrival times; write one number of seconds "
                             "per line")
    return TraceLoad(str(path.resolve()), tuple(t - times_s[0] for t in times_s))


def _trace_time(path: Path, number: int, value: str, earlier: list[float]) -> float:
    if len(earlier) >= TRACE_MAX_ARRIVALS:
        raise UserInputError(f"trace {path}: more than {TRACE_MAX_ARRIVALS} arrivals")
    try:
        seconds = float(value)
    except ValueError:
        raise UserInputError(f"trace {path} line {number}: {value!r} is not a number of "
                             "seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UserInputError(f"trace {path} line {number}: {value!r} must be a finite "
                             "number of seconds >= 0")
    if earlier and seconds < earlier[-1]:
        raise UserInputError(f"trace {path} line {number}: {value!r} is before the line "
                             "above; arrival times must not decrease")
    return seconds


def parse_load_range(text: str) -> tuple[Load, ...]:
    """Evenly spaced loads of one kind from "START:STOP:COUNT", e.g. "0.5rps:8rps:6" or
    "1conc:8conc:8" (concurrencies are rounded to whole clients, repeats dropped)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UserInputError(f"load range {text!r} must be START:STOP:COUNT, e.g. "
                             "0.5rps:8rps:6")
    start, stop = parse_load(parts[0]), parse_load(parts[1])
    count = _count(parts[2], text)
    if type(start) is not type(stop) or isinstance(start, TraceLoad):
        raise UserInputError(f"load range {text!r}: START and STOP must both be rates (rps) "
                             "or both concurrencies (conc)")
    low, high = _level(start), _level(stop)
    if high < low:
        raise UserInputError(f"load range {text!r}: STOP must not be below START")
    levels = [low] if count == 1 else [low + i * (high - low) / (count - 1)
                                       for i in range(count)]
    if isinstance(start, ConcurrencyLoad):
        return tuple(dict.fromkeys(ConcurrencyLoad(round(level)) for level in levels))
    return tuple(PoissonLoad(round(level, 6)) for level in levels)


def _level(load: Load) -> float:
    return float(load.count) if isinstance(load, ConcurrencyLoad) else load.rate_rps() or 0.0


def _count(text: str, whole: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UserInputError(f"load range {whole!r}: COUNT must be a whole number >= 1, "
                             "e.g. 0.5rps:8rps:6")
    return count
