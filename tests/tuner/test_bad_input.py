"""docs/bad-input.md, row by row: each bad input gets one `Error: ...` line, exit code 2, and
leaves the database exactly as it was (compared as a full SQL dump)."""

from __future__ import annotations

import gzip
import json
import sqlite3

import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore
from tuner.cli import cli

PROFILE = family_profile(questions=10, k=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A database with a profile, a study (`fam-6s-q0.9`), its preset and spec files."""
    root = tmp_path_factory.mktemp("bad-input")
    url = f"sqlite:///{root / 'latts.db'}"
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    files = {
        "fam.yaml": "name: fam\ntask: arithmetic\n",
        "unknown-field.yaml": "name: fam\ntask: arithmetic\nbranchez: 4\n",
        "unknown-model.yaml": "name: fam\ntask: arithmetic\nmodels: [huge]\n",
        "list.yaml": "- name\n- task\n",
        "too-many-branches.yaml": "name: fam\ntask: arithmetic\nbranches: {min: 16}\n",
        "bad-gamma.yaml": "name: fam\ntask: arithmetic\ngamma: {max: -1}\n",
        "not-a-profile.json": json.dumps({"hello": 1}),
        "other-version.json": json.dumps({"latts_profile": 999}),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "truncated.json.gz").write_bytes(gzip.compress(b'{"format_version": 1, "hard')[:-8])
    _ok(url, "run", "--deadline", "6s", "--spec", str(root / "fam.yaml"))
    _ok(url, "export", "--study", "fam-6s-q0.9", "-o", str(root / "presets"))
    _ok(url, "export", "--study", "fam-6s-q0.9", "--format", "json", "-o", str(root / "json"))
    _hand_edited_presets(root, json.loads(next((root / "json").glob("*.preset.json")).read_text()))
    return url, root


def _hand_edited_presets(root, preset: dict) -> None:
    """Preset files a user broke by hand: each keeps the rest of a valid preset."""
    edits = {
        "preset-n0.json": lambda p: p["request"].update(n=0),
        "preset-v2.json": lambda p: p.update(latts_preset=2),
        "preset-noname.json": lambda p: p.pop("name"),
        "preset-extra.json": lambda p: p["request"].update(branches=4),
    }
    for name, edit in edits.items():
        broken = json.loads(json.dumps(preset))
        edit(broken)
        (root / name).write_text(json.dumps(broken))
    (root / "preset-garbage.json").write_text('{"latts_preset": 1, "name": ')


def _ok(url, *args):
    result = CliRunner().invoke(cli, ["--storage", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _dump(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        return list(connection.iterdump())


DEADLINE_HINT = "write e.g. 60s, 1.5s, 500ms or 2m"
# id -> (arguments, expected line); {root} is the world's directory, {url} its database.
CASES = {
    "deadline-no-unit": ("run --deadline 60",
                         "Error: Invalid value for '--deadline': deadline '60' has no unit; "
                         "write 60s, 500ms or 2m"),
    "deadline-not-a-duration": ("run --deadline abc",
                                "Error: Invalid value for '--deadline': deadline 'abc' is not "
                                f"a duration; {DEADLINE_HINT}"),
    "deadline-zero": ("run --deadline 0",
                      "Error: Invalid value for '--deadline': deadline '0' must be greater "
                      f"than 0; {DEADLINE_HINT}"),
    "deadline-range-backwards": ("frontier --deadlines 5s:1s:3",
                                 "Error: Invalid value for '--deadlines': deadline range "
                                 "'5s:1s:3': STOP must not be below START"),
    "quantile-and-mean": ("run --deadline 6s --mean --quantile 0.5 --spec {root}/fam.yaml",
                          "Error: give --quantile or --mean, not both"),
    "unknown-study": ("export --study nosuch -o {root}/out",
                      "Error: no study named 'nosuch' in {url}; run `latts-tune run` first"),
    "unknown-trial": ("export --study fam-6s-q0.9 --trial 9999 -o {root}/out",
                      "Error: study 'fam-6s-q0.9' has no completed trial 9999"),
    "study-other-settings": ("run --deadline 7s --spec {root}/fam.yaml --study-name fam-6s-q0.9",
                             "Error: study 'fam-6s-q0.9' exists with different deadline_s "
                             "(deadline_s=6.0); pass another --study-name"),
    "worker-unknown-study": ("worker --study nosuch --spec {root}/fam.yaml",
                             "Error: study 'nosuch' does not exist in {url}; give --deadline "
                             "(e.g. --deadline 150ms) to create it"),
    "worker-grace-below-heartbeat": ("worker --study w --spec {root}/fam.yaml --deadline 6s "
                                     "--heartbeat-seconds 5 --grace-seconds 3",
                                     "Error: --grace-seconds (3) must exceed "
                                     "--heartbeat-seconds (5), or live workers' trials count "
                                     "as dead"),
    "unknown-preset": ("presets show nosuch",
                       "Error: no preset 'nosuch' in {url}; known presets: fam-6s-q0.9-t10"),
    "unknown-model": ("profiles show huge",
                      "Error: no model 'huge' in this profile; known models: big, draft, small"),
    "spec-unknown-field": ("run --deadline 6s --spec {root}/unknown-field.yaml",
                           "Error: {root}/unknown-field.yaml: branchez: Extra inputs are not "
                           "permitted"),
    "spec-bad-value": ("run --deadline 6s --spec {root}/bad-gamma.yaml",
                       "Error: {root}/bad-gamma.yaml: gamma.max: Input should be greater than "
                       "or equal to 0"),
    "spec-not-a-mapping": ("run --deadline 6s --spec {root}/list.yaml",
                           "Error: {root}/list.yaml: a study spec is a mapping (name: ..., "
                           "task: ...)"),
    "spec-unprofiled-model": ("run --deadline 6s --spec {root}/unknown-model.yaml",
                              "Error: models: huge not profiled for this task; profiled: big, "
                              "small"),
    "too-few-samples-for-branches": ("run --deadline 6s --spec {root}/too-many-branches.yaml",
                                     "Error: branches.min is 16 but the accuracy profile has 8 "
                                     "samples per question; lower branches.min or profile "
                                     "accuracy with --samples 16"),
    "profile-truncated": ("profiles import {root}/truncated.json.gz",
                          "Error: {root}/truncated.json.gz is not a readable profile file "
                          "(truncated or corrupt?): Compressed file ended before the "
                          "end-of-stream marker was reached"),
    "profile-other-version": ("profiles import {root}/other-version.json",
                              "Error: {root}/other-version.json has profile format version "
                              "999; this latts-tune (0.1.0) reads version 1"),
    "preset-bad-value": ("presets import {root}/preset-n0.json",
                         "Error: {root}/preset-n0.json: request.n: Input should be greater "
                         "than or equal to 1"),
    "preset-other-version": ("presets import {root}/preset-v2.json",
                             "Error: {root}/preset-v2.json: latts_preset: Input should be 1"),
    "preset-missing-field": ("presets import {root}/preset-noname.json",
                             "Error: {root}/preset-noname.json: name: Field required"),
    "preset-unknown-field": ("presets import {root}/preset-extra.json",
                             "Error: {root}/preset-extra.json: request.branches: Extra inputs "
                             "are not permitted"),
    "preset-truncated": ("presets import {root}/preset-garbage.json",
                         "Error: {root}/preset-garbage.json: not a readable preset file "
                         "(ParserError)"),
    "profile-not-ours": ("profiles import {root}/not-a-profile.json",
                         "Error: {root}/not-a-profile.json is not a latts-tune profile file "
                         "(no 'latts_profile' version)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(world, case):
    url, root = world
    args, expected = CASES[case]
    before = _dump(url)
    result = CliRunner().invoke(cli, ["--storage", url, *args.format(root=root).split()])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == expected.format(root=root, url=url)
    assert _dump(url) == before


STORAGE_CASES = {
    "storage-invalid-url": ("sqlit:///x.db",
                            "Error: invalid database URL 'sqlit:///x.db': Can't load plugin: "
                            "sqlalchemy.dialects:sqlit; use a file path or a URL like "
                            "sqlite:///latts-tune.db or postgresql://user@host/db"),
    "storage-unreachable": ("postgresql+psycopg://u@127.0.0.1:1/db",
                            "Error: cannot open database 'postgresql+psycopg://u@127.0.0.1:1/db':"
                            " connection failed: connection to server at \"127.0.0.1\", port 1 "
                            "failed: Connection refused; check the --storage URL"),
    "storage-read-only": ("sqlite:///file:{root}/latts.db?mode=ro&uri=true",
                          "Error: database 'sqlite:///file%3A{root}/latts.db?mode=ro&uri=true' "
                          "refused a write: (sqlite3.OperationalError) attempt to write a "
                          "readonly database; check that it is writable"),
}


@pytest.mark.parametrize("case", sorted(STORAGE_CASES))
def test_bad_storage_is_one_line_and_changes_nothing(world, case):
    url, root = world
    storage, expected = STORAGE_CASES[case]
    before = _dump(url)
    args = ["--storage", storage.format(root=root), "run", "--deadline", "5s", "--spec",
            str(root / "fam.yaml")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == expected.format(root=root)
    assert _dump(url) == before


def test_an_exported_preset_file_imports_back_unchanged(world):
    url, root = world
    path = next((root / "json").glob("*.preset.json"))
    exported = json.loads(path.read_text())
    _ok(url, "presets", "import", str(path))
    result = CliRunner().invoke(cli, ["--storage", url, "presets", "show", exported["name"]],
                                catch_exceptions=False)
    assert json.loads(result.output) == exported
