"""storage.files: the bounded loader of user files and all-or-nothing writes;
storage.plausible: the physical checks of profile records."""

from __future__ import annotations

import dataclasses
import gzip

import pytest

from storage import UserInputError, load_document, load_yaml, read_text, staged_files
from storage.files import YAML_MAX_ALIASES, YAML_MAX_DEPTH, YamlRefused, inside, output_folder
from storage.plausible import impossible_value
from storage.records import AcceptanceRecord, AccuracySample, CostPoint


def test_yaml_within_the_caps_loads_like_safe_load():
    text = "a: &x [1, 2]\nb: *x\nc: {d: [e, f]}\n"
    assert load_yaml(text) == {"a": [1, 2], "b": [1, 2], "c": {"d": ["e", "f"]}}
    assert load_yaml("") is None


def test_yaml_alias_expansion_is_refused_before_construction():
    levels = "\n".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9))
    with pytest.raises(YamlRefused, match="expand to more than 100,000 values"):
        load_yaml("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + levels)


def test_yaml_alias_count_and_depth_are_capped():
    many = "v: &v 1\nw: [" + ", ".join(["*v"] * (YAML_MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(YamlRefused, match=f"more than {YAML_MAX_ALIASES} YAML aliases"):
        load_yaml(many)
    deep = "[" * (YAML_MAX_DEPTH + 1) + "]" * (YAML_MAX_DEPTH + 1)
    with pytest.raises(YamlRefused, match=f"deeper than {YAML_MAX_DEPTH} levels"):
        load_yaml(deep)
    load_yaml("[" * YAML_MAX_DEPTH + "]" * YAML_MAX_DEPTH)  # at the cap: fine


def test_yaml_aliases_nesting_past_the_depth_cap_are_refused():
    # Each level is shallow as written; the aliases make the value 40 levels deep.
    chain = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40))
    with pytest.raises(YamlRefused, match="deeper than"):
        load_yaml(chain)


def test_a_yaml_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(YamlRefused):
        load_yaml("a: &a [1, *a]\n")


def test_read_text_caps_size_on_disk_and_after_decompression(tmp_path):
    plain = tmp_path / "big.yaml"
    plain.write_text("x" * 2000)
    with pytest.raises(UserInputError, match="is 0.0 MB; a study spec is at most 0.001 MB"):
        read_text(plain, "study spec", 1000)
    packed = tmp_path / "big.json.gz"
    packed.write_bytes(gzip.compress(b" " * 5000))
    with pytest.raises(UserInputError, match="expands to more than 0.004 MB"):
        read_text(packed, "profile file", 4000)
    assert read_text(packed, "profile file", 5000) == " " * 5000


def test_read_text_names_the_first_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(UserInputError) as caught:
        read_text(path, "study spec", 1000)
    assert str(caught.value) == (f"{path} is not UTF-8 text (byte 0xe9 at offset 9); save it "
                                 "as UTF-8")


def test_load_document_reads_json_as_json_and_the_rest_as_yaml(tmp_path):
    (tmp_path / "a.json").write_text('{"x": NaN}')
    (tmp_path / "a.yaml").write_text("x: 1\n")
    assert load_document(tmp_path / "a.yaml", "spec", 100) == {"x": 1}
    assert str(load_document(tmp_path / "a.json", "preset", 100)["x"]) == "nan"
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(UserInputError, match="is not a readable preset"):
        load_document(tmp_path / "deep.json", "preset", 1_000_000)


def test_staged_files_leave_nothing_when_the_block_fails(tmp_path):
    contents = {tmp_path / "a.txt": "a", tmp_path / "b.txt": "b"}
    with pytest.raises(RuntimeError), staged_files(contents):
        raise RuntimeError("the database refused the matching write")
    assert list(tmp_path.iterdir()) == []
    with staged_files(contents) as paths:
        assert not any(path.exists() for path in paths)  # renamed into place at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_output_files_stay_inside_the_folder(tmp_path):
    assert inside(tmp_path, "x.preset.json") == tmp_path / "x.preset.json"
    for name in ("../x", "/tmp/x", "a/b", "..", ""):
        with pytest.raises(UserInputError, match="would leave"):
            inside(tmp_path, name)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserInputError, match="Not a directory"):
        output_folder(tmp_path / "file" / "out")


COST = CostPoint(hardware_fingerprint="h", engine_version="e", model="m", draft=None,
                 gamma=0, phase="decode", batch_size=1, context_tokens=8,
                 seconds_samples=(0.01, 0.011))
ACCEPTANCE = AcceptanceRecord(hardware_fingerprint="h", engine_version="e", target="m",
                              draft="d", gamma=2, task="t", temperature=1.0, num_drafts=10,
                              num_draft_tokens=20, num_accepted_tokens=12,
                              accepted_per_position=(7, 5))
SAMPLE = AccuracySample(hardware_fingerprint="h", engine_version="e", model="m", task="t",
                        split="s", question_id="q", sample_index=0, temperature=1.0,
                        max_tokens=64, answer="4", correct=True, generated_tokens=30,
                        prompt_tokens=12, finish_reason="stop")


@pytest.mark.parametrize(("record", "changes", "problem"), [
    (COST, {}, None),
    (COST, {"seconds_samples": (float("nan"),)}, "seconds_samples: nan is not a finite number"),
    (COST, {"seconds_samples": (-1.0,)}, "seconds_samples: -1.0 is negative"),
    (COST, {"seconds_samples": (0.0,)}, "seconds_samples: 0.0 seconds; an engine step takes"),
    (COST, {"seconds_samples": ()}, "seconds_samples: a measured point needs at least one"),
    (COST, {"batch_size": 0}, "batch_size: 0 live branches"),
    (ACCEPTANCE, {}, None),
    (ACCEPTANCE, {"num_accepted_tokens": 21}, "num_accepted_tokens: 21 accepted but only 20"),
    (ACCEPTANCE, {"num_draft_tokens": 21, "num_accepted_tokens": 12}, "num_draft_tokens: 21"),
    (ACCEPTANCE, {"accepted_per_position": (5, 7)}, "accepted_per_position: [5, 7] rises"),
    (ACCEPTANCE, {"accepted_per_position": (11, 1)},
     "accepted_per_position: 11 accepted at position 0 of only 10 drafts"),
    (ACCEPTANCE, {"temperature": float("inf")}, "temperature: inf is not a finite number"),
    (SAMPLE, {}, None),
    (SAMPLE, {"generated_tokens": -5}, "generated_tokens: -5 is negative"),
    (SAMPLE, {"generated_tokens": 65}, "generated_tokens: 65 generated with max_tokens 64"),
    # A log-probability is at most 0 (the engine's own figures are negative).
    (SAMPLE, {"mean_logprob": -0.05}, None),
    (SAMPLE, {"mean_logprob": 0.3}, "mean_logprob: 0.3 is positive; a log-probability is at"),
    (SAMPLE, {"mean_logprob": float("-inf")}, "mean_logprob: -inf is not a finite number"),
])
def test_impossible_values_are_named(record, changes, problem):
    found = impossible_value(dataclasses.replace(record, **changes))
    assert (found or "").startswith(problem) if problem else found is None
