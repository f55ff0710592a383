"""ORM tables (private to storage/): every name starts with `latts_` so they share a
database with Optuna's RDBStorage tables (studies, trials, ..., alembic_version).

Column names equal the field names of the frozen records in `records.py`, so rows and
records convert field by field (see `rows.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names keep future Alembic migrations portable across backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Stored instead of NULL for "no draft": NULLs are distinct in unique constraints.
NO_DRAFT = ""

NAME = String(256)
METHOD = String(32)
HARDWARE_FK = "latts_hardware.fingerprint"
MODEL_FK = "latts_models.name"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class HardwareRow(Base):
    __tablename__ = "latts_hardware"

    fingerprint: Mapped[str] = mapped_column(String(128), primary_key=True)
    cpu_model: Mapped[str] = mapped_column(NAME)
    cpu_cores: Mapped[int] = mapped_column(Integer)
    memory_gib: Mapped[float] = mapped_column(Float)
    gpu_model: Mapped[str | None] = mapped_column(NAME)
    gpu_count: Mapped[int] = mapped_column(Integer)
    gpu_memory_gib: Mapped[float | None] = mapped_column(Float)


class ModelRow(Base):
    __tablename__ = "latts_models"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    vocab_size: Mapped[int] = mapped_column(Integer)


class CostPointRow(Base):
    __tablename__ = "latts_cost_points"
    __table_args__ = (
        UniqueConstraint(
            "hardware_fingerprint", "engine_version", "model", "method", "draft", "gamma",
            "spec_options", "phase", "batch_size", "context_tokens",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hardware_fingerprint: Mapped[str] = mapped_column(ForeignKey(HARDWARE_FK))
    engine_version: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(ForeignKey(MODEL_FK))
    draft: Mapped[str] = mapped_column(NAME, default=NO_DRAFT)
    gamma: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16))
    batch_size: Mapped[int] = mapped_column(Integer)
    context_tokens: Mapped[int] = mapped_column(Integer)
    seconds_samples: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    measured_at: Mapped[datetime | None] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(METHOD, default="", server_default="")
    spec_options: Mapped[str] = mapped_column(NAME, default="", server_default="")


class AcceptanceRow(Base):
    __tablename__ = "latts_acceptance"
    __table_args__ = (
        UniqueConstraint(
            "hardware_fingerprint", "engine_version", "target", "method", "draft", "gamma",
            "spec_options", "task", "temperature",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hardware_fingerprint: Mapped[str] = mapped_column(ForeignKey(HARDWARE_FK))
    engine_version: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(ForeignKey(MODEL_FK))
    # not a foreign key: draft-free methods (n-gram) have none, heads need no model row
    draft: Mapped[str] = mapped_column(NAME, default=NO_DRAFT)
    gamma: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(128))
    temperature: Mapped[float] = mapped_column(Float)
    num_drafts: Mapped[int] = mapped_column(BigInteger)
    num_draft_tokens: Mapped[int] = mapped_column(BigInteger)
    num_accepted_tokens: Mapped[int] = mapped_column(BigInteger)
    accepted_per_position: Mapped[list] = mapped_column(JSON)
    measured_at: Mapped[datetime | None] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(METHOD, default="", server_default="")
    spec_options: Mapped[str] = mapped_column(NAME, default="", server_default="")
    verification_steps: Mapped[int | None] = mapped_column(BigInteger)


class AccuracySampleRow(Base):
    __tablename__ = "latts_accuracy_samples"
    __table_args__ = (
        UniqueConstraint(
            "hardware_fingerprint", "engine_version", "model", "task", "temperature",
            "question_id", "sample_index",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hardware_fingerprint: Mapped[str] = mapped_column(ForeignKey(HARDWARE_FK))
    engine_version: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(ForeignKey(MODEL_FK))
    task: Mapped[str] = mapped_column(String(128))
    split: Mapped[str] = mapped_column(String(64))
    question_id: Mapped[str] = mapped_column(NAME)
    sample_index: Mapped[int] = mapped_column(Integer)
    temperature: Mapped[float] = mapped_column(Float)
    max_tokens: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str | None] = mapped_column(Text)
    correct: Mapped[bool] = mapped_column(Boolean)
    generated_tokens: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str] = mapped_column(String(32))
    mean_logprob: Mapped[float | None] = mapped_column(Float)


class PresetRow(Base):
    __tablename__ = "latts_presets"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    study_name: Mapped[str] = mapped_column(NAME)
    trial_number: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class ValidationRow(Base):
    __tablename__ = "latts_validations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    preset_name: Mapped[str] = mapped_column(ForeignKey("latts_presets.name"), index=True)
    task: Mapped[str] = mapped_column(String(128))
    split: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    hardware_fingerprint: Mapped[str] = mapped_column(String(128))
    engine_version: Mapped[str] = mapped_column(String(64))
    tool_version: Mapped[str] = mapped_column(String(64))
    predicted_accuracy: Mapped[float] = mapped_column(Float)
    predicted_accuracy_low: Mapped[float] = mapped_column(Float)
    predicted_accuracy_high: Mapped[float] = mapped_column(Float)
    predicted_mean_latency_s: Mapped[float] = mapped_column(Float)
    predicted_p50_latency_s: Mapped[float] = mapped_column(Float)
    predicted_p90_latency_s: Mapped[float] = mapped_column(Float)
    measured_accuracy: Mapped[float] = mapped_column(Float)
    measured_accuracy_low: Mapped[float] = mapped_column(Float)
    measured_accuracy_high: Mapped[float] = mapped_column(Float)
    measured_mean_latency_s: Mapped[float] = mapped_column(Float)
    measured_p50_latency_s: Mapped[float] = mapped_column(Float)
    measured_p90_latency_s: Mapped[float] = mapped_column(Float)
    latencies_s: Mapped[list] = mapped_column(JSON)
    correct: Mapped[list] = mapped_column(JSON)
    aborted_branches: Mapped[int] = mapped_column(Integer)
    expected_accuracy_low: Mapped[float | None] = mapped_column(Float)
    expected_accuracy_high: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class ClaimRow(Base):
    """A unit of profiling work taken by one worker, so no point is measured twice."""

    __tablename__ = "latts_claims"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    owner: Mapped[str] = mapped_column(String(256))
    claimed_at: Mapped[datetime] = mapped_column(DateTime)


class LatencyCheckRow(Base):
    """One run of a configuration on a machine: each request's measured latency beside the
    latency the simulator replays for the branch lengths that run produced."""

    __tablename__ = "latts_latency_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hardware_fingerprint: Mapped[str] = mapped_column(ForeignKey(HARDWARE_FK), index=True)
    engine_version: Mapped[str] = mapped_column(String(64))
    cost_fingerprint: Mapped[str] = mapped_column(String(128))
    cost_engine_version: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(NAME)
    method: Mapped[str] = mapped_column(METHOD, default="")
    draft: Mapped[str] = mapped_column(NAME, default=NO_DRAFT)
    gamma: Mapped[int] = mapped_column(Integer)
    spec_options: Mapped[str] = mapped_column(NAME, default="")
    branches: Mapped[int] = mapped_column(Integer)
    temperature: Mapped[float] = mapped_column(Float)
    task: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(NAME)
    measured_latencies_s: Mapped[list] = mapped_column(JSON)
    replayed_latencies_s: Mapped[list] = mapped_column(JSON)
    measured_at: Mapped[datetime | None] = mapped_column(DateTime)


class TaskDefinitionRow(Base):
    """A task defined by a file (id, questions, grader, prompt, stop strings), stored once
    under its id so profiles can name the task by id and another machine rebuild it."""

    __tablename__ = "latts_task_definitions"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the body's canonical JSON
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)
