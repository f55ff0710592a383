"""`latts-tune profile decode --budget` (on a fake-cost engine) and `--server-url` wiring."""

import json

from click.testing import CliRunner
from fake_cost_engine import FakeCostEngine

import tuner.cli.profile
from storage import Database, ProfileStore
from tuner.cli import cli


class FakePool:
    def __init__(self, *args, **kwargs):
        self.started = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def get(self, model, speculative=None):
        engine = FakeCostEngine()
        engine.model = model
        self.started.append(model)
        return engine


def test_budget_measures_a_subset_and_says_how_many(tmp_path, monkeypatch):
    model = tmp_path / "tb-fake"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"vocab_size": 64}))
    monkeypatch.setattr(tuner.cli.profile, "engine_pool", FakePool)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = CliRunner().invoke(cli, [
        "--storage", url, "profile", "decode", "--model", str(model), "--batch-sizes",
        "1,2,4,8,16", "--prompt-tokens", "8,32,64", "--decode-tokens", "8", "--repeats", "1",
        "--budget", "5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no draft: 15 of 15 points in" in result.output and "(grid complete)" in result.output
    points = ProfileStore(Database(url)).load_profile_set().cost_points
    assert len([p for p in points if p.phase == "decode"]) == 15


def test_a_non_positive_budget_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{tmp_path / 'p.db'}", "profile",
                                      "decode", "--model", str(tmp_path), "--budget", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--budget': 0.0 is not in the range x>0." in result.output


def test_an_unreachable_server_is_one_error_line(tmp_path):
    model = tmp_path / "tb-fake"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"vocab_size": 64}))
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{tmp_path / 'p.db'}", "profile",
                                      "decode", "--model", str(model), "--server-url",
                                      "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: cannot reach the server at http://127.0.0.1:9 (")
    assert result.output.strip().endswith("start it (vllm serve MODEL --port N) or fix "
                                          "--server-url")
