"""Frozen records that callers get from storage (ORM rows never leave this package).

Every measurement carries the hardware fingerprint and engine version it was taken on,
so profiles from different machines or engine builds never mix silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.speculation import NO_METHOD, Speculation, options_text, speculation_of


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
    `method` (and `spec_options`) with `draft` and `gamma` say which speculation ran
    (`speculation`); an empty method with no draft means none.
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
    method: str = ""
    spec_options: str = ""

    def __post_init__(self) -> None:
        _fill_method(self)

    @property
    def speculation(self) -> Speculation | None:
        return speculation_of(self.method, self.draft, self.gamma, self.spec_options)

    @property
    def seconds_median(self) -> float:
        ordered = sorted(self.seconds_samples)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class AcceptanceRecord:
    """Speculative-decoding counters of one speculation of `target` on a task's prompts.

    `accepted_per_position[k] / steps` = P(first k+1 drafted tokens accepted) in a target
    step. `draft` is None for draft-free methods (n-gram lookup). `verification_steps`:
    target steps of the measured run when some proposed nothing (a lookup without a match,
    which vLLM's draft counter skips); None when every step verified a draft.
    """

    hardware_fingerprint: str
    engine_version: str
    target: str
    draft: str | None
    gamma: int
    task: str
    temperature: float
    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_position: tuple[int, ...]
    measured_at: datetime | None = None
    method: str = ""
    spec_options: str = ""
    verification_steps: int | None = None

    def __post_init__(self) -> None:
        _fill_method(self)

    @property
    def steps(self) -> int:
        """Target steps the counts are over: with a draft proposed at every step, one per
        draft."""
        return self.num_drafts if self.verification_steps is None else self.verification_steps

    @property
    def speculation(self) -> Speculation:
        speculation = speculation_of(self.method, self.draft, self.gamma, self.spec_options)
        if speculation is None:
            raise ValueError("an acceptance record without a speculation method")
        return speculation

    def position_rates(self) -> tuple[float, ...]:
        """P(first k+1 drafts accepted) in a target step, for k = 0..gamma-1."""
        if self.steps == 0:
            return tuple(0.0 for _ in self.accepted_per_position)
        return tuple(count / self.steps for count in self.accepted_per_position)


def _fill_method(record: CostPoint | AcceptanceRecord | LatencyCheck) -> None:
    # Records from before speculation methods existed name only a draft model.
    if not record.method and record.draft:
        object.__setattr__(record, "method", "draft_model")


def speculation_columns(speculation: Speculation | None) -> dict:
    """The record fields (method, draft, gamma, spec_options) of a speculation."""
    if speculation is None:
        return {"method": NO_METHOD, "draft": None, "gamma": 0, "spec_options": ""}
    return {"method": speculation.method, "draft": speculation.draft,
            "gamma": speculation.gamma, "spec_options": options_text(speculation.options)}


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
    mean_logprob: float | None = None  # mean log-probability of the generated tokens


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


@dataclass(frozen=True)
class LatencyCheck:
    """A configuration run on a machine (by `latts-tune calibrate` or `validate`): each
    request's measured latency beside the latency the simulator replays, from the step
    costs of machine `cost_fingerprint`, for the branch lengths that request produced.
    Their ratio is how far that machine's costs are off here (seconds)."""

    hardware_fingerprint: str
    engine_version: str
    cost_fingerprint: str
    cost_engine_version: str
    model: str
    draft: str | None
    gamma: int
    branches: int
    temperature: float
    task: str
    source: str  # "calibrate" or "validate:<preset>"
    measured_latencies_s: tuple[float, ...]
    replayed_latencies_s: tuple[float, ...]
    method: str = ""
    spec_options: str = ""
    measured_at: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        _fill_method(self)

    @property
    def speculation(self) -> Speculation | None:
        return speculation_of(self.method, self.draft, self.gamma, self.spec_options)
