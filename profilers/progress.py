"""How long-running profilers report progress without printing (the CLI draws the bars)."""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    """Receives the size of each stage of work and one call per finished unit."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, units: int = 1) -> None: ...


class SilentProgress:
    """A reporter that reports nothing (library use, tests)."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, units: int = 1) -> None:
        pass
