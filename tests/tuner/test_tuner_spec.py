"""Study specs: the embedded default loads; bad files name the file and the field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore, TaskDefinitionStore
from storage.errors import UserInputError
from tests.profilers.test_task_definition import write_task
from tuner.core.operations import open_workspace
from tuner.core.spec import DEFAULT_SPEC_PATH, load_spec

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_task_file_names_the_task_by_its_definitions_id(tmp_path):
    task_file = write_task(tmp_path / "sums")
    spec = load_spec(write(tmp_path, "name: x\ntask_file: sums/task.yaml\n"))
    assert (spec.task, spec.task_file) == ("sums", task_file.resolve())


@pytest.mark.parametrize(("body", "message"), [
    ("name: x\ntask: t\ntask_file: sums/task.yaml\n", "give task or task_file, not both"),
    ("name: x\ntask: task:sums/task.yaml\n", "name a task definition file with task_file:"),
    ("name: x\ntask_file: [a]\n", "task_file: a path"),
    ("name: x\ntask_file: nope.yaml\n", "task definition '.*nope.yaml' does not exist"),
])
def test_bad_task_files_are_named(tmp_path, body, message):
    write_task(tmp_path / "sums")
    with pytest.raises(UserInputError, match=message):
        load_spec(write(tmp_path, body))


def test_the_workspace_stores_the_definition_and_refuses_a_changed_one(tmp_path):
    write_task(tmp_path / "sums")
    spec = load_spec(write(tmp_path, "name: x\ntask_file: sums/task.yaml\n"))
    profile = family_profile(questions=20, k=8)
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=profile.models, cost_points=profile.cost_points,
            acceptance=tuple(replace(a, task="sums") for a in profile.acceptance),
            accuracy=tuple(replace(s, task="sums") for s in profile.accuracy)))
        workspace = open_workspace(db, spec)
        assert workspace.task().stop == ("\n", "Q:") and workspace.space.configurations()
        assert TaskDefinitionStore(db).ids() == ["sums"]
        write_task(tmp_path / "sums", stop=["\n"])
        with pytest.raises(UserInputError, match="defines task 'sums' differently"):
            open_workspace(db, load_spec(tmp_path / "x.yaml"))


def test_two_shipped_profiles_of_one_machine_share_a_database(tmp_path):
    """The testbed's and SmolLM2's shipped profiles were measured on one machine (the same
    fingerprint and engine): opening the second study imports its file all the same."""
    smollm2 = load_spec(ROOT / "studies" / "smollm2" / "smollm2.yaml")
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        testbed = open_workspace(db, load_spec(None))
        assert "SmolLM2-135M-Instruct" not in {m.name for m in testbed.profile.models}
        workspace = open_workspace(db, smollm2)
        assert {m.model for m in workspace.space.models} == {"SmolLM2-135M-Instruct"}
        assert {s.task for s in workspace.profile.accuracy} >= {"arithmetic", "smollm2-addition"}
        again = open_workspace(db, load_spec(None))  # and the testbed's study still opens
        assert {m.model for m in again.space.models} == {"tb-small", "tb-medium", "tb-large"}
