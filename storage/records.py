"""Frozen records that callers get from storage (ORM rows never leave this package).

Every measurement carries the hardware fingerprint and engine version it was taken on,
so profiles from different machines or engine builds never mix silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class HardwareRecord:
    """A machine measurements were taken on; `fingerprint` is a stable hash of the rest."""

    fingerprint: str
    cpu_model: str
    cpu_cores: int
    memory_gib: float
    gpu_model: str | None = None
    gpu_count: int = 0
    gpu_memory_gib: float | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A model known to the database (a target or a draft)."""

    name: str
    path: str
    role: str  # "target" or "draft"
    parameter_count: int
    size_bytes: int
    vocab_size: int


@dataclass(frozen=True)
class CostPoint:
    """Measured wall time of one engine operation at one operating point.

    phase "decode": seconds per engine step with `batch_size` live branches at
    `context_tokens` tokens of context; with a draft, one step verifies `gamma` drafts.
    phase "prefill": seconds from submission to the first token of `batch_size` branches
    sharing a prompt of `context_tokens` tokens.
    Failed points (e.g. out of memory) keep `status="failed"` and the reason.
    """

    hardware_fingerprint: str
    engine_version: str
    model: str
    draft: str | None
    gamma: int
    phase: str
    batch_size: int
    context_tokens: int
    seconds_samples: tuple[float, ...]
    status: str = "ok"
    failure_reason: str | None = None
    measured_at: datetime | None = None

    @property
    def seconds_median(self) -> float:
        ordered = sorted(self.seconds_samples)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class AcceptanceRecord:
    """Speculative-decoding counters for (target, draft, gamma) on a task's prompts.

    `accepted_per_position[k] / num_drafts` = P(first k+1 drafted tokens accepted).
    """

    hardware_fingerprint: str
    engine_version: str
    target: str
    draft: str
    gamma: int
    task: str
    temperature: float
    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_position: tuple[int, ...]
    measured_at: datetime | None = None

    def position_rates(self) -> tuple[float, ...]:
        """P(first k+1 drafts accepted) for k = 0..gamma-1."""
        if self.num_drafts == 0:
            return tuple(0.0 for _ in self.accepted_per_position)
        return tuple(count / self.num_drafts for count in self.accepted_per_position)


@dataclass(frozen=True)
class AccuracySample:
    """One sampled answer of `model` to one question."""

    hardware_fingerprint: str
    engine_version: str
    model: str
    task: str
    split: str
    question_id: str
    sample_index: int
    temperature: float
    max_tokens: int
    answer: str | None
    correct: bool
    generated_tokens: int
    prompt_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class PresetRecord:
    """A stored preset: its name, the study/trial it came from and the preset body."""

    name: str
    study_name: str
    trial_number: int
    body: dict = field(hash=False)
    created_at: datetime | None = None


@dataclass(frozen=True)
class ValidationRecord:
    """A preset run on the real engine over held-out questions: predicted vs measured.

    Fractions of questions and seconds. `latencies_s` and `correct` are the raw
    per-question measurements in question order; `id` is set by the store.
    """

    preset_name: str
    task: str
    split: str
    seed: int
    hardware_fingerprint: str
    engine_version: str
    tool_version: str
    predicted_accuracy: float
    predicted_accuracy_low: float
    predicted_accuracy_high: float
    predicted_mean_latency_s: float
    predicted_p50_latency_s: float
    predicted_p90_latency_s: float
    measured_accuracy: float
    measured_accuracy_low: float
    measured_accuracy_high: float
    measured_mean_latency_s: float
    measured_p50_latency_s: float
    measured_p90_latency_s: float
    latencies_s: tuple[float, ...]
    correct: tuple[bool, ...]
    aborted_branches: int = 0
    # 95% range predicted for a measurement on this many new questions
    expected_accuracy_low: float | None = None
    expected_accuracy_high: float | None = None
    id: int | None = None
    created_at: datetime | None = None

    @property
    def questions(self) -> int:
        return len(self.latencies_s)


@dataclass(frozen=True)
class ProfileSummary:
    """Counts of what is measured for one model on one hardware/engine pair."""

    hardware_fingerprint: str
    engine_version: str
    model: str
    role: str
    decode_points: int
    prefill_points: int
    failed_points: int
    acceptance_drafts: tuple[str, ...]
    accuracy_questions: int
    accuracy_samples_per_question: int


@dataclass(frozen=True)
class ProfileSet:
    """Everything measured on one hardware/engine pair: what the tuner reads."""

    hardware: HardwareRecord
    engine_version: str
    models: tuple[ModelRecord, ...]
    cost_points: tuple[CostPoint, ...]
    acceptance: tuple[AcceptanceRecord, ...]
    accuracy: tuple[AccuracySample, ...]
