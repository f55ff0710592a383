"""Study specs: the embedded default loads; bad files name the file and the field."""

from __future__ import annotations

import pytest

from storage.errors import UserInputError
from tuner.core.spec import DEFAULT_SPEC_PATH, load_spec


def test_embedded_testbed_spec_loads_with_profile_path_resolved():
    spec = load_spec()
    assert spec.name == "testbed"
    assert spec.task == "arithmetic"
    assert spec.profiles == DEFAULT_SPEC_PATH.parent / "testbed" / "profile.json.gz"
    assert (spec.branches.min, spec.branches.max, spec.gamma.max) == (1, 16, 4)


def write(tmp_path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: x\ntask: t\nbranches: {max: 0}\n",
         "branches.max: Input should be greater than 0"),
        ("name: x\ntask: t\nbranches: {min: 4, max: 2}\n",
         "branches: Value error, max (2) must be >= min (4)"),
        ("name: x\n", "task: Field required"),
        ("name: x\ntask: t\nlatency: {statistic: median}\n",
         "latency.statistic: Input should be 'quantile' or 'mean'"),
        ("name: x\ntask: t\nbranchs: {max: 3}\n", "branchs: Extra inputs are not permitted"),
        ("name: x\ntask: t\ngamma: {max: -1}\n",
         "gamma.max: Input should be greater than or equal to 0"),
        ("name: 'a b'\ntask: t\n", "name: String should match pattern"),
    ],
)
def test_invalid_fields_are_named(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(UserInputError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(UserInputError, match="a study spec is a mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="cannot read study spec"):
        load_spec(tmp_path / "absent.yaml")
