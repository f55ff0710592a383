"""`latts-tune validate` on a scripted engine: prediction vs measurement, stored, printed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore, ValidationStore
from tests.profilers.fake_streaming import ScriptedEngine
from tuner.cli import cli
from tuner.cli import validate as cli_validate
from tuner.core.validate import configuration_of, select_questions, validate_preset

PROFILE = family_profile(questions=20, k=8)


def invoke(*args, catch=False):
    return CliRunner().invoke(cli, list(args), catch_exceptions=catch)


@pytest.fixture
def preset(tmp_path):
    """A stored preset exported from a study of the synthetic family."""
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    spec = tmp_path / "fam.yaml"
    spec.write_text("name: fam\ntask: arithmetic\n")
    invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec))
    exported = invoke("--storage", url, "export", "--study", "fam-6s-q0.9", "-o",
                      str(tmp_path / "presets"))
    name = exported.output.split()[1]
    return url, name


def scripted_starter(started: list):
    def start(model, speculative, max_model_len):
        started.append((model, speculative, max_model_len))
        return ScriptedEngine(["#7"])  # every branch answers 7 in two tokens

    return start


def test_validate_runs_the_preset_and_stores_predicted_vs_measured(preset):
    url, name = preset
    started: list = []
    with Database(url) as db:
        record = validate_preset(db, name, scripted_starter(started), questions=5)
        assert ValidationStore(db).for_preset(name) == [record]
        body = json.loads(invoke("--storage", url, "presets", "show", name).output)
    assert started[0][0] == body["serving"]["vllm"]["model"]
    assert record.questions == 5 and record.split == "validation"
    assert len(record.correct) == 5 and all(latency > 0 for latency in record.latencies_s)
    assert record.predicted_accuracy == pytest.approx(body["predicted"]["accuracy"])
    assert record.predicted_p90_latency_s == pytest.approx(body["predicted"]["latency_s"])
    assert record.predicted_p50_latency_s <= record.predicted_p90_latency_s
    assert record.measured_accuracy_low <= record.measured_accuracy <= \
        record.measured_accuracy_high


def test_validate_command_prints_the_comparison(preset, monkeypatch):
    url, name = preset
    monkeypatch.setattr(cli_validate, "_start_vllm_engine", scripted_starter([]))
    result = invoke("--storage", url, "validate", "--preset", name, "--questions", "3")
    assert result.exit_code == 0, result.output
    for label in ("accuracy (95% CI of the mean)", "95% prediction for 3 new questions",
                  "mean latency", "p50 latency", "p90 latency"):
        assert label in result.output
    assert f"Stored as validation 1 of preset {name}" in result.output
    as_json = json.loads(invoke("--storage", url, "validate", "--preset", name,
                                "--questions", "2", "--json").stdout)
    assert as_json["id"] == 2 and len(as_json["latencies_s"]) == 2


def test_validate_of_an_unknown_preset_is_one_error_line(preset):
    url, _ = preset
    result = invoke("--storage", url, "validate", "--preset", "nope", catch=True)
    assert result.exit_code == 2
    assert result.output.startswith("Error: no preset 'nope'")


def test_seeds_select_disjoint_slices():
    from profilers.tasks import ArithmeticTask

    first = select_questions(ArithmeticTask(), "validation", 4, 0)
    second = select_questions(ArithmeticTask(), "validation", 4, 1)
    assert len(first) == len(second) == 4
    assert not {q.question_id for q in first} & {q.question_id for q in second}


def test_configuration_of_a_preset_names_models_as_the_profile_does(preset):
    url, name = preset
    from storage import PresetStore
    from tuner.core.presets import Preset

    with Database(url) as db:
        config = configuration_of(Preset.model_validate(PresetStore(db).get(name).body),
                                  PROFILE)
    assert config.model in {m.name for m in PROFILE.models}
