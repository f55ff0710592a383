"""Bad input to `latts-tune profile ...` ends in one error line, exit code 2, nothing written.

Every input is checked before an engine starts: the engine pool is replaced by one that
fails the test if asked for an engine, and each case runs in an empty working directory
that must stay empty (no default latts-tune.db) beside the database the test names.
"""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

import tuner.cli.profile
from storage import Database, ProfileStore
from tuner.cli import cli


class EngineStarted(Exception):
    """Raised instead of starting an engine, so a test sees how far the command got."""


class _NoEnginePool:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def get(self, model, speculative=None):
        raise EngineStarted(model)


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    monkeypatch.setattr(tuner.cli.profile, "engine_pool", _NoEnginePool)


@pytest.fixture
def model_dir(tmp_path_factory) -> str:
    """A model directory as save_pretrained leaves it, as far as the CLI reads it."""
    directory = tmp_path_factory.mktemp("models") / "tb-small"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"vocab_size": 64}))
    return str(directory)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory; a default database would appear here."""
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def db_file(tmp_path):
    return tmp_path / "asked.db"


def run_error(db_file, args):
    """Run with --storage db_file; the command must fail cleanly without writing anything."""
    runner = CliRunner()
    result = runner.invoke(cli, ["--storage", f"sqlite:///{db_file}", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert not db_file.exists()
    return result


def one_error_line(result) -> str:
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(autouse=True)
def nothing_written_in_workdir(workdir):
    yield
    assert list(workdir.iterdir()) == []


def test_unknown_model_path(db_file):
    result = run_error(db_file, ["profile", "decode", "--model", "/nonexistent/model"])
    assert one_error_line(result).startswith(
        "Error: model path '/nonexistent/model' is not a model directory")


def test_unknown_draft_path(db_file, model_dir):
    result = run_error(db_file, ["profile", "decode", "--model", model_dir,
                                 "--draft", "/nonexistent/draft"])
    assert one_error_line(result).startswith(
        "Error: model path '/nonexistent/draft' is not a model directory")


def test_model_directory_with_broken_config(db_file, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = run_error(db_file, ["profile", "accuracy", "--model", str(broken)])
    assert one_error_line(result).startswith(
        f"Error: model path '{broken}' has an unreadable config.json")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch-sizes", "0", "0 is below the minimum 1"),
    ("--batch-sizes", "1,x", "'1,x' is not a comma-separated list of integers"),
    ("--batch-sizes", ",", "give at least one value"),
    ("--prompt-tokens", "0", "0 is below the minimum 1"),
    ("--repeats", "0", "0 is not in the range x>=1"),
    ("--decode-tokens", "1", "1 is not in the range x>=2"),
])
def test_decode_grid_usage_errors_name_the_option(db_file, model_dir, option, value, message):
    result = run_error(db_file, ["profile", "decode", "--model", model_dir, option, value])
    assert f"Error: Invalid value for '{option}': {message}" in result.output


@pytest.mark.parametrize("command", ["decode", "acceptance"])
def test_gamma_below_one_is_a_usage_error(db_file, model_dir, command):
    result = run_error(db_file, ["profile", command, "--model", model_dir, "--draft", model_dir,
                                 "--gamma", "0"])
    assert "Error: Invalid value for '--gamma': 0 is below the minimum 1" in result.output


@pytest.mark.parametrize("samples", ["0", "-3"])
def test_accuracy_samples_below_one(db_file, model_dir, samples):
    result = run_error(db_file, ["profile", "accuracy", "--model", model_dir,
                                 "--samples", samples])
    assert one_error_line(result) == (
        f"Error: --samples must be at least 1 (got {samples}); use at least the largest "
        "branch count you want to search")


@pytest.mark.parametrize("command", ["accuracy", "acceptance"])
def test_unknown_task_names_the_known_ones(db_file, model_dir, command):
    result = run_error(db_file, ["profile", command, "--model", model_dir, "--draft", model_dir,
                                 "--task", "nope"] if command == "acceptance" else
                       ["profile", command, "--model", model_dir, "--task", "nope"])
    assert one_error_line(result) == (
        "Error: unknown task 'nope'; known tasks: arithmetic, jsonl, math500 (e.g. arithmetic, "
        "math500:FILE.jsonl, jsonl:FILE.jsonl?grader=numeric, task:DEFINITION.yaml)")


@pytest.mark.parametrize("command", [
    ["profile", "decode"],
    ["profile", "accuracy"],
    ["profile", "acceptance", "--draft", "MODEL"],
])
def test_unreachable_sqlite_fails_before_an_engine(model_dir, command):
    args = [model_dir if arg == "MODEL" else arg for arg in command]
    result = CliRunner().invoke(cli, ["--storage", "sqlite:////nonexistent/dir/x.db", *args,
                                      "--model", model_dir])
    assert result.exit_code == 2, result.exception
    assert one_error_line(result) == (
        "Error: cannot open database 'sqlite:////nonexistent/dir/x.db': unable to open "
        "database file; check the --storage URL")


def test_unreachable_postgresql_fails_before_an_engine(model_dir):
    # Without a driver installed the message says so; with one, the connection is refused.
    result = CliRunner().invoke(cli, ["--storage", "postgresql://127.0.0.1:1/x",
                                      "profile", "decode", "--model", model_dir])
    assert result.exit_code == 2, result.exception
    assert one_error_line(result).startswith(
        "Error: cannot open database 'postgresql://127.0.0.1:1/x': ")


def test_invalid_storage_url_fails_before_an_engine(model_dir):
    result = CliRunner().invoke(cli, ["--storage", "sqlit:///x.db",
                                      "profile", "decode", "--model", model_dir])
    assert result.exit_code == 2, result.exception
    assert one_error_line(result).startswith("Error: invalid database URL 'sqlit:///x.db'")


def test_valid_input_opens_the_store_then_asks_for_the_engine(db_file, model_dir):
    # The other half of the guard: good input gets as far as the engine, with the store
    # already open and the model recorded.
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{db_file}", "profile", "decode",
                                      "--model", model_dir, "--batch-sizes", "1"])
    assert isinstance(result.exception, EngineStarted)
    with Database(f"sqlite:///{db_file}") as database:
        assert [record.name for record in ProfileStore(database).models()] == ["tb-small"]


@pytest.mark.parametrize("command", ["decode", "acceptance"])
def test_a_draft_free_method_with_options_gets_to_the_engine(db_file, model_dir, command):
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{db_file}", "profile", command,
                                      "--model", model_dir, "--method", "ngram", "--gamma",
                                      "3", "--option", "prompt_lookup_min=1",
                                      "--option", "prompt_lookup_max=3"])
    assert isinstance(result.exception, EngineStarted)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--method", "eagle3"], "Error: speculation method 'eagle3' needs a draft model"),
    (["--method", "ngram", "--option", "window=3"],
     "Error: speculation method 'ngram' has no option 'window'"),
    (["--method", "lookahead"], "Error: unknown speculation method 'lookahead'"),
])
def test_speculation_methods_are_checked_before_an_engine(db_file, model_dir, arguments,
                                                           message):
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{db_file}", "profile",
                                      "acceptance", "--model", model_dir, *arguments])
    assert result.exit_code == 2, result.exception
    assert one_error_line(result).startswith(message)


def test_a_malformed_option_is_a_usage_error(db_file, model_dir):
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{db_file}", "profile", "decode",
                                      "--model", model_dir, "--method", "ngram",
                                      "--option", "prompt_lookup_max"])
    assert result.exit_code == 2 and "is not NAME=INTEGER" in result.output


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    commands = [((), cli), *_commands(cli)]
    assert len(commands) > 10
    for path, command in commands:
        name = " ".join(("latts-tune", *path))
        help_text = (command.help or "").strip()
        assert help_text and help_text.splitlines()[0].strip(), f"{name} has no help"
        example = next((line.strip() for line in help_text.splitlines()
                        if line.strip().startswith("Example: latts-tune")), None)
        assert example, f"{name} has no 'Example: latts-tune ...' line"
        result = runner.invoke(cli, [*path, "--help"], catch_exceptions=False)
        assert result.exit_code == 0
        assert example in result.output
