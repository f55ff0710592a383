"""Engines are expensive to start (20-30 s on a CPU): keep one per configuration, reuse it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from profilers.engine import Engine, SpeculativeConfig, model_name

logger = logging.getLogger(__name__)

EngineFactory = Callable[[str, SpeculativeConfig | None], Engine]


__all__ = ["EngineFactory", "EnginePool", "model_name"]


class EnginePool:
    """Starts engines on demand and keeps at most `max_live` running (oldest closed first)."""

    def __init__(self, factory: EngineFactory, max_live: int = 1) -> None:
        self._factory = factory
        self._max_live = max_live
        self._engines: dict[tuple[str, SpeculativeConfig | None], Engine] = {}

    def get(self, model: str, speculative: SpeculativeConfig | None = None) -> Engine:
        key = (model, speculative)
        if key not in self._engines:
            while len(self._engines) >= self._max_live:
                oldest = next(iter(self._engines))
                self._engines.pop(oldest).close()
            logger.info("starting engine for %s (speculative: %s)", model, speculative)
            self._engines[key] = self._factory(model, speculative)
        return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
