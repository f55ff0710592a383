from __future__ import annotations

import csv
import dataclasses
import gzip
import json

import pytest

from storage import (
    FORMAT_VERSION,
    Database,
    ProfileStore,
    UserInputError,
    export_profiles,
    import_profiles,
    read_profile_file,
)

FORMATS = ["profiles.json", "profiles.json.gz", "profiles.csv"]


@pytest.fixture
def other_store(tmp_path):
    db = Database(str(tmp_path / "other.db"))
    yield ProfileStore(db)
    db.close()


def _assert_same_content(store_a, store_b):
    a, b = store_a.read(), store_b.read()
    for kind in a.counts():
        assert set(getattr(a, kind)) == set(getattr(b, kind)), kind


@pytest.mark.parametrize("name", FORMATS)
def test_round_trip_into_an_empty_database(filled_store, other_store, records, tmp_path, name):
    path = tmp_path / name
    assert export_profiles(filled_store, path) == records.counts()
    assert import_profiles(other_store, path) == records.counts()
    _assert_same_content(filled_store, other_store)


@pytest.mark.parametrize("name", FORMATS)
def test_reimport_adds_nothing(filled_store, tmp_path, name):
    path = tmp_path / name
    export_profiles(filled_store, path)
    before = filled_store.read()
    assert set(import_profiles(filled_store, path).values()) == {0}
    assert filled_store.read() == before


def test_csv_keeps_empty_and_nonempty_values_apart(filled_store, other_store, records, tmp_path):
    sample = dataclasses.replace(records.accuracy[0], question_id="007", answer="0",
                                 split="")
    filled_store.add_accuracy_samples([sample])
    path = tmp_path / "p.csv"
    export_profiles(filled_store, path)
    import_profiles(other_store, path)
    assert sample in other_store.read().accuracy


def test_export_of_one_hardware(filled_store, make_records, tmp_path):
    filled_store.write(make_records(fingerprint="77be0123456789ab"))
    path = tmp_path / "p.json"
    counts = export_profiles(filled_store, path, hardware_fingerprint="77be")
    document = json.loads(path.read_text())
    assert counts["hardware"] == 1 and counts["models"] == 2
    assert {p["hardware_fingerprint"] for p in document["cost_points"]} == {"77be0123456789ab"}
    assert document["latts_profile"] == FORMAT_VERSION and document["tool_version"]


def test_export_of_empty_database_is_refused(store, tmp_path):
    with pytest.raises(UserInputError, match="nothing to export"):
        export_profiles(store, tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


def test_unknown_suffix_is_refused(filled_store, tmp_path):
    with pytest.raises(UserInputError, match=r"\*.json, \*.json.gz or \*.csv"):
        export_profiles(filled_store, tmp_path / "p.yaml")


def _truncate(path, keep_fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_file_writes_nothing(filled_store, other_store, tmp_path, name):
    path = tmp_path / name
    export_profiles(filled_store, path)
    _truncate(path)
    with pytest.raises(UserInputError, match="truncated"):
        import_profiles(other_store, path)
    assert other_store.read().counts() == dict.fromkeys(other_store.read().counts(), 0)


def test_csv_cut_at_a_line_break_is_caught(filled_store, tmp_path):
    path = tmp_path / "p.csv"
    export_profiles(filled_store, path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))
    with pytest.raises(UserInputError, match="no 'end' row"):
        read_profile_file(path)


def _rewrite_json(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_other_format_version_is_refused(filled_store, other_store, tmp_path):
    path = tmp_path / "p.json"
    export_profiles(filled_store, path)
    _rewrite_json(path, lambda document: document.update(latts_profile=2))
    with pytest.raises(UserInputError, match="format version 2; this latts-tune .* reads "
                                             "version 1"):
        import_profiles(other_store, path)
    assert other_store.hardware() == []


def test_not_a_profile_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"studies": []}')
    with pytest.raises(UserInputError, match="not a latts-tune profile file"):
        read_profile_file(path)


def test_missing_field_names_record_and_field(filled_store, other_store, tmp_path):
    path = tmp_path / "p.json"
    export_profiles(filled_store, path)
    _rewrite_json(path, lambda document: document["cost_points"][2].pop("gamma"))
    with pytest.raises(UserInputError, match=r"cost_points\[2\]: missing field\(s\) gamma$"):
        import_profiles(other_store, path)
    assert other_store.hardware() == []


def test_wrong_type_names_the_field(filled_store, tmp_path):
    path = tmp_path / "p.json"
    export_profiles(filled_store, path)
    _rewrite_json(path, lambda document: document["accuracy"][0].update(sample_index="one"))
    with pytest.raises(UserInputError, match=r"accuracy\[0\]\.sample_index: expected int"):
        read_profile_file(path)


def test_bad_choice_is_refused(filled_store, tmp_path):
    path = tmp_path / "p.json"
    export_profiles(filled_store, path)
    _rewrite_json(path, lambda document: document["cost_points"][0].update(phase="train"))
    with pytest.raises(UserInputError, match="'train' is not one of decode, prefill"):
        read_profile_file(path)


def test_measurement_of_hardware_not_in_file(filled_store, tmp_path):
    path = tmp_path / "p.json"
    export_profiles(filled_store, path)
    _rewrite_json(path, lambda document: document.update(hardware=[]))
    with pytest.raises(UserInputError, match="names hardware '3f2a9c0d11aa4b5e'"):
        read_profile_file(path)


def test_csv_missing_column_and_bad_cell(filled_store, tmp_path):
    path = tmp_path / "p.csv"
    export_profiles(filled_store, path)
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    rows[4]["batch_size"] = "many"  # rows[0] is meta, then hardware and two models
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(UserInputError, match=r"line 6 \(.*\)\.batch_size: expected int"):
        read_profile_file(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "p.json.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserInputError, match="not a readable profile file"):
        read_profile_file(path)


def test_gzip_file_is_compressed_json(filled_store, tmp_path):
    path = tmp_path / "p.json.gz"
    export_profiles(filled_store, path)
    with gzip.open(path, "rt") as stream:
        assert json.load(stream)["latts_profile"] == FORMAT_VERSION
