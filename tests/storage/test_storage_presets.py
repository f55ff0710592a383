from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import PresetRecord, PresetStore, UserInputError

BODY = {
    "latts_preset": 1,
    "serving": {"vllm": {"model": "tb-small", "speculative-config": '{"method": "draft"}'}},
    "request": {"n": 8, "temperature": 0.7, "max_tokens": 256},
    "predicted": {"accuracy": 0.81, "latency_quantile": 0.9, "deadline_s": 10.0},
}


@pytest.fixture
def presets(database) -> PresetStore:
    return PresetStore(database)


def test_save_and_get_round_trip(presets):
    created_at = datetime(2025, 5, 2, 8, 0, tzinfo=UTC)
    preset = PresetRecord("fast-10s", "testbed", 17, BODY, created_at)
    assert presets.save(preset) == preset
    assert presets.get("fast-10s") == preset
    assert presets.get("fast-10s").body == BODY


def test_save_sets_creation_time(presets):
    before = datetime.now(UTC)
    saved = presets.save(PresetRecord("p", "testbed", 1, {}))
    assert before <= saved.created_at <= datetime.now(UTC)
    assert presets.get("p").created_at == saved.created_at


def test_save_replaces_by_name(presets):
    presets.save(PresetRecord("p", "testbed", 1, {"request": {"n": 1}}))
    presets.save(PresetRecord("p", "testbed", 2, {"request": {"n": 4}}))
    (only,) = presets.list()
    assert (only.trial_number, only.body) == (2, {"request": {"n": 4}})


def test_list_is_sorted_by_name(presets):
    for name in ("slow", "fast", "medium"):
        presets.save(PresetRecord(name, "testbed", 0, {}))
    assert [preset.name for preset in presets.list()] == ["fast", "medium", "slow"]


def test_missing_preset_names_known_ones(presets, database):
    presets.save(PresetRecord("fast", "testbed", 0, {}))
    with pytest.raises(UserInputError) as caught:
        presets.get("fats")
    assert str(caught.value) == (f"no preset 'fats' in {database.display_url}; known presets: "
                                 "fast")
