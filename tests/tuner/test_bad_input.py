"""docs/bad-input.md, row by row: each bad input gets one `Error: ...` line, exit code 2, and
leaves the database exactly as it was (compared as a full SQL dump)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import sqlite3

import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile
from unavailable import missing

from storage import Database, ProfileRecords, ProfileStore, export_profiles
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
    _hostile_specs(root)
    _hostile_presets(root, json.loads(next((root / "json").glob("*.preset.json")).read_text()))
    with Database(url) as db:
        export_profiles(ProfileStore(db), root / "profile.json")
        export_profiles(ProfileStore(db), root / "profile.csv")
    _hostile_profiles(root, json.loads((root / "profile.json").read_text()))
    return url, root


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """YAML whose aliases expand to width**levels values in a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _hostile_specs(root) -> None:
    """Specs a hostile but fair user wrote (issue 18)."""
    base = "name: fam\ntask: arithmetic\n"
    files = {
        "spec-alias-bomb.yaml": base + "x-anchors:\n" + "".join(
            f"  {line}\n" for line in billion_laughs().splitlines()),
        "spec-deep.yaml": base + "branches: " + "[" * 40 + "]" * 40 + "\n",
        "spec-many-aliases.yaml": base + "v: &v 1\ntemperature: [" + ", ".join(["*v"] * 150)
        + "]\n",
        "spec-too-large.yaml": base + ("# padding" + " " * 90 + "\n") * 15_000,
        "spec-nan-temperature.yaml": base + "temperature: [.nan]\n",
        "fam-narrow.yaml": base + "branches: {max: 4}\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "spec-not-utf8.yaml").write_bytes(b"name: fam\ntask: arithm\xe9tic\n")


def _hostile_presets(root, preset: dict) -> None:
    """Preset files with impossible values, unsafe names and unchecked server flags."""
    edits = {
        "preset-spec-not-json.json": lambda p: p["serving"]["vllm"].update(
            {"speculative-config": "{not json"}),
        "preset-seqs-lots.json": lambda p: p["serving"]["vllm"].update({"max-num-seqs": "lots"}),
        "preset-accuracy.json": lambda p: p["predicted"].update(accuracy=7.5),
        "preset-nan-latency.json": lambda p: p["predicted"].update(latency_s=float("nan")),
        "preset-escape.json": lambda p: p.update(name="../x"),
        "preset-flag-name.json": lambda p: p["serving"]["vllm"].update(
            {"port; rm -rf ~": 1}),
        "preset-vllm-type.json": lambda p: p["serving"]["vllm"].update(
            {"tensor-parallel-size": "two"}),
        "preset-vllm-unknown.json": lambda p: p["serving"]["vllm"].update(
            {"max-num-sequences": 4}),
    }
    for name, edit in edits.items():
        broken = json.loads(json.dumps(preset))
        edit(broken)
        (root / name).write_text(json.dumps(broken))
    bomb = "".join(f"    {line}\n" for line in billion_laughs().splitlines())
    body = json.dumps({key: value for key, value in preset.items() if key != "serving"})
    (root / "preset-alias-bomb.yaml").write_text(
        f"serving:\n  sglang: {json.dumps(preset['serving']['sglang'])}\n  vllm:\n{bomb}"
        + "".join(f"{key}: {json.dumps(value)}\n" for key, value in json.loads(body).items()))


def _hostile_profiles(root, profile: dict) -> None:
    """Profile files with values no engine measures."""
    def first(kind: str, field: str, value) -> dict:
        broken = json.loads(json.dumps(profile))
        broken[kind][0][field] = value
        return broken

    acceptance = profile["acceptance"][0]
    files = {
        "profile-nan.json": first("cost_points", "seconds_samples", [float("nan")]),
        "profile-inf.json": first("cost_points", "seconds_samples", [float("inf")]),
        "profile-negative-time.json": first("cost_points", "seconds_samples", [-0.01]),
        "profile-negative-tokens.json": first("accuracy", "generated_tokens", -5),
        "profile-over-accepted.json": first("acceptance", "num_accepted_tokens",
                                            acceptance["num_draft_tokens"] + 1),
    }
    for name, document in files.items():
        (root / name).write_text(json.dumps(document))
    with open(root / "profile.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    next(row for row in rows if row["record"] == "cost_point")["seconds_samples"] = "[NaN]"
    with open(root / "profile-nan.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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
                       "Error: no preset 'nosuch' in {url}; known presets: {preset}"),
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
                         "Error: {root}/preset-garbage.json is not a readable preset file "
                         "(truncated or corrupt?): Expecting value: line 1 column 29 (char 28)"),
    "profile-not-ours": ("profiles import {root}/not-a-profile.json",
                         "Error: {root}/not-a-profile.json is not a latts-tune profile file "
                         "(no 'latts_profile' version)"),
}

# Issue 18, "Hostile input and faults, round 2": one entry per case, grouped by class.
NAME_RULE = ("use letters, digits, '.', '_' and '-', starting with a letter or digit, at "
             "most 128 characters")
UNWRITABLE = "pick a writable output folder"
CASES.update({
    # Writes outside the folder asked for: names are checked where they enter.
    "study-name-escapes": ("run --deadline 6s --spec {root}/fam.yaml --study-name ../../escaped",
                           "Error: Invalid value for '--study-name': study name "
                           f"'../../escaped' cannot name a file; {NAME_RULE}"),
    "study-name-absolute": ("run --deadline 6s --spec {root}/fam.yaml --study-name /tmp/x/abs",
                            "Error: Invalid value for '--study-name': study name '/tmp/x/abs' "
                            f"cannot name a file; {NAME_RULE}"),
    "study-name-overlong": ("run --deadline 6s --spec {root}/fam.yaml --study-name " + "n" * 500,
                            "Error: Invalid value for '--study-name': study name of 500 "
                            f"characters is too long; {NAME_RULE}"),
    "worker-study-escapes": ("worker --study ../lock --spec {root}/fam.yaml --deadline 6s",
                             "Error: Invalid value for '--study': study name '../lock' cannot "
                             f"name a file; {NAME_RULE}"),
    "preset-name-escapes": ("presets import {root}/preset-escape.json",
                            "Error: {root}/preset-escape.json: name: String should match "
                            "pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"),
    # Unbounded inputs: caps before parsing (tests/tuner/test_hostile_caps.py: 10x over).
    "spec-too-large": ("run --deadline 6s --spec {root}/spec-too-large.yaml",
                       "Error: {root}/spec-too-large.yaml is 1.5 MB; a study spec is at most "
                       "1 MB"),
    "spec-alias-bomb": ("run --deadline 6s --spec {root}/spec-alias-bomb.yaml",
                        "Error: {root}/spec-alias-bomb.yaml: YAML aliases expand to more than "
                        "100,000 values"),
    "spec-too-many-aliases": ("run --deadline 6s --spec {root}/spec-many-aliases.yaml",
                              "Error: {root}/spec-many-aliases.yaml: more than 100 YAML "
                              "aliases"),
    "spec-too-deep": ("run --deadline 6s --spec {root}/spec-deep.yaml",
                      "Error: {root}/spec-deep.yaml: YAML nested deeper than 32 levels"),
    "preset-alias-bomb": ("presets import {root}/preset-alias-bomb.yaml",
                          "Error: {root}/preset-alias-bomb.yaml: YAML aliases expand to more "
                          "than 100,000 values"),
    # Impossible values: finite, non-negative, accepted <= drafted; presets' server flags.
    "profile-nan-time": ("profiles import {root}/profile-nan.json",
                         "Error: {root}/profile-nan.json: cost_points[0].seconds_samples: nan "
                         "is not a finite number"),
    "profile-infinite-time": ("profiles import {root}/profile-inf.json",
                              "Error: {root}/profile-inf.json: cost_points[0].seconds_samples: "
                              "inf is not a finite number"),
    "profile-negative-time": ("profiles import {root}/profile-negative-time.json",
                              "Error: {root}/profile-negative-time.json: cost_points[0]."
                              "seconds_samples: -0.01 is negative"),
    "profile-negative-tokens": ("profiles import {root}/profile-negative-tokens.json",
                                "Error: {root}/profile-negative-tokens.json: accuracy[0]."
                                "generated_tokens: -5 is negative"),
    "profile-accepted-over-drafted": ("profiles import {root}/profile-over-accepted.json",
                                      "Error: {root}/profile-over-accepted.json: acceptance[0]."
                                      "num_accepted_tokens: {accepted} accepted but only "
                                      "{drafted} drafted"),
    "profile-csv-nan": ("profiles import {root}/profile-nan.csv",
                        "Error: {root}/profile-nan.csv: line {csv_line} (cost_point)."
                        "seconds_samples: nan is not a finite number"),
    "spec-nan-temperature": ("run --deadline 6s --spec {root}/spec-nan-temperature.yaml",
                             "Error: {root}/spec-nan-temperature.yaml: temperature.0: Input "
                             "should be a finite number"),
    "preset-speculative-not-json": ("presets import {root}/preset-spec-not-json.json",
                                    "Error: {root}/preset-spec-not-json.json: serving.vllm: "
                                    "speculative-config: '{{not json' is not JSON (Expecting "
                                    "property name enclosed in double quotes: line 1 column 2 "
                                    "(char 1))"),
    "preset-max-num-seqs-lots": ("presets import {root}/preset-seqs-lots.json",
                                 "Error: {root}/preset-seqs-lots.json: serving.vllm: "
                                 "max-num-seqs: 'lots' is not a whole number >= 1"),
    "preset-flag-name": ("presets import {root}/preset-flag-name.json",
                         "Error: {root}/preset-flag-name.json: serving.vllm.port; rm -rf ~.[key]: "
                         "String should match pattern '^[a-z][a-z0-9_-]*$'"),
    "preset-vllm-refuses-type": ("presets import {root}/preset-vllm-type.json",
                                 "Error: {root}/preset-vllm-type.json: serving.vllm: vllm serve "
                                 "refuses it: argument --tensor-parallel-size/-tp: invalid int "
                                 "value: 'two'"),
    "preset-vllm-refuses-flag": ("presets import {root}/preset-vllm-unknown.json",
                                 "Error: {root}/preset-vllm-unknown.json: serving.vllm: vllm "
                                 "serve refuses it: unrecognized arguments: --max-num-sequences"),
    "preset-accuracy-over-1": ("presets import {root}/preset-accuracy.json",
                               "Error: {root}/preset-accuracy.json: predicted.accuracy: Input "
                               "should be less than or equal to 1"),
    "preset-nan-latency": ("presets import {root}/preset-nan-latency.json",
                           "Error: {root}/preset-nan-latency.json: predicted.latency_s: Input "
                           "should be a finite number"),
    # Tracebacks: now one line each.
    "spec-not-utf8": ("run --deadline 6s --spec {root}/spec-not-utf8.yaml",
                      "Error: {root}/spec-not-utf8.yaml is not UTF-8 text (byte 0xe9 at offset "
                      "22); save it as UTF-8"),
    "run-quantile-nan": ("run --deadline 6s --spec {root}/fam.yaml --quantile nan",
                         "Error: Invalid value for '--quantile': 'nan' is not a finite number "
                         "in the range 0<x<=1"),
    "frontier-quantile-nan": ("frontier --deadlines 1s:6s:3 --spec {root}/fam.yaml --quantile nan",
                              "Error: Invalid value for '--quantile': 'nan' is not a finite "
                              "number in the range 0<x<=1"),
    "worker-min-trial-seconds-nan": ("worker --study w --spec {root}/fam.yaml --deadline 6s "
                                     "--min-trial-seconds nan",
                                     "Error: Invalid value for '--min-trial-seconds': 'nan' is "
                                     "not a finite number in the range x>=0"),
    "export-under-a-file": ("export --study fam-6s-q0.9 -o {root}/fam.yaml/out",
                            "Error: cannot write {root}/fam.yaml/out: Not a directory; "
                            f"{UNWRITABLE}"),
    "export-in-proc": ("export --study fam-6s-q0.9 -o /proc/latts-out",
                       f"Error: cannot write /proc/latts-out: No such file or directory; "
                       f"{UNWRITABLE}"),
    "export-read-only": ("export --study fam-6s-q0.9 -o /sys/latts-out",
                         f"Error: cannot write /sys/latts-out: Operation not permitted; "
                         f"{UNWRITABLE}"),
    "report-under-a-file": ("report --study fam-6s-q0.9 -o {root}/fam.yaml/report.html",
                            "Error: cannot write {root}/fam.yaml/report.html: Not a directory; "
                            f"{UNWRITABLE}"),
    "report-in-proc": ("report --study fam-6s-q0.9 -o /proc/report.html",
                       f"Error: cannot write /proc/report.html: No such file or directory; "
                       f"{UNWRITABLE}"),
    "report-read-only": ("report --study fam-6s-q0.9 -o /sys/report.html",
                         f"Error: cannot write /sys/report.html: Permission denied; "
                         f"{UNWRITABLE}"),
    "profiles-export-under-a-file": ("profiles export {root}/fam.yaml/p.json.gz",
                                     "Error: cannot write {root}/fam.yaml/p.json.gz: Not a "
                                     f"directory; {UNWRITABLE}"),
    "profiles-export-in-proc": ("profiles export /proc/p.json.gz",
                                "Error: cannot write /proc/p.json.gz: No such file or "
                                f"directory; {UNWRITABLE}"),
    "profiles-export-read-only": ("profiles export /sys/p.json.gz",
                                  f"Error: cannot write /sys/p.json.gz: Permission denied; "
                                  f"{UNWRITABLE}"),
    # State changed on error: checks come before writes.
    "deadline-infinite": ("run --deadline 1e400ms --spec {root}/fam.yaml",
                          "Error: Invalid value for '--deadline': deadline '1e400ms' is too "
                          f"large to be a number; {DEADLINE_HINT}"),
    "deadline-none-feasible": ("run --deadline 1e-9s --spec {root}/fam.yaml",
                               "Error: no configuration meets the 1e-06ms deadline; the "
                               "fastest is small N=1 T=1 with p90 latency 1.855s (at most "
                               "2.309s with 90% confidence); allow at least 2.309s"),
    "spec-same-name-other-space": ("run --deadline 6s --spec {root}/fam-narrow.yaml",
                                   "Error: study 'fam-6s-q0.9' was made from a spec with another "
                                   "search space (branches.max: None in the study, 4 in the "
                                   "spec); pass another --study-name or rename the spec"),
})


# Cases checked by vLLM's own `vllm serve` parser, which only an installed vLLM has.
NEEDS_VLLM = {"preset-vllm-refuses-type", "preset-vllm-refuses-flag"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(world, case):
    if case in NEEDS_VLLM and importlib.util.find_spec("vllm") is None:
        missing("vLLM is not installed: serving.vllm is checked by our schema only")
    url, root = world
    args, expected = CASES[case]
    before = _dump(url)
    result = CliRunner().invoke(cli, ["--storage", url, *args.format(root=root).split()])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == expected.format(
        root=root, url=url, **_found_in_files(root))
    assert _dump(url) == before
    assert not list(root.glob("**/.*.partial")), "a staged file was left behind"


def _found_in_files(root) -> dict:
    """Values the expected lines quote from the world's files."""
    acceptance = json.loads((root / "profile.json").read_text())["acceptance"][0]
    lines = (root / "profile-nan.csv").read_text().splitlines()
    (preset,) = root.joinpath("json").glob("*.preset.json")  # named for the best trial
    return {"preset": preset.name.removesuffix(".preset.json"),
            "accepted": acceptance["num_draft_tokens"] + 1,
            "drafted": acceptance["num_draft_tokens"],
            "csv_line": 1 + next(i for i, line in enumerate(lines) if "[NaN]" in line)}


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
