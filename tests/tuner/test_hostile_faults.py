"""Issue 18's faults: interrupts, hangs, foreign databases, open doors, unsafe stored names.

Each refusal is one line with its exit code (2; 130 for an interrupt) and leaves the
database as it was (a full SQL dump before and after). docs/bad-input.md lists them.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile

from profilers import SamplingConfig
from profilers.openai_engine import OpenAIServerEngine, ServerTimeout
from storage import Database, ProfileRecords, ProfileStore
from tuner.cli import cli
from tuner.review.dashboard import (
    DashboardWriteRefused,
    ReadOnlyDashboardStorage,
    dashboard_app,
)

REPO = Path(__file__).resolve().parents[2]
PROFILE = family_profile(questions=10, k=8)
TIMEOUT_S = 2  # --network-timeout in these tests
SLACK_S = 5.0  # a bounded wait ends within its timeout plus this
INTERRUPTED = "Interrupted: stopped before writing anything half-done."


def _new_world(root: Path) -> tuple[str, Path]:
    """A database holding the synthetic profile, and a spec over it."""
    url = f"sqlite:///{root / 'latts.db'}"
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    spec = root / "fam.yaml"
    spec.write_text("name: fam\ntask: arithmetic\n")
    return url, spec


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The profile, a study `fam-6s-q0.9` and its preset (`_preset_name`)."""
    root = tmp_path_factory.mktemp("faults")
    url, spec = _new_world(root)
    _ok(url, "run", "--deadline", "6s", "--spec", str(spec))
    _ok(url, "export", "--study", "fam-6s-q0.9", "-o", str(root / "presets"))
    return url, root


def _preset_name(url: str) -> str:
    """The world's one preset, named for the study's best trial (`fam-6s-q0.9-tN`)."""
    (preset,) = json.loads(_ok(url, "presets", "list", "--json").output)
    return preset["name"]


def _ok(url: str, *args: str):
    result = CliRunner().invoke(cli, ["--storage", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _dump(path: Path | str) -> list[str]:
    with sqlite3.connect(str(path).removeprefix("sqlite:///")) as connection:
        return list(connection.iterdump())


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


# -- Ctrl-C and SIGTERM -------------------------------------------------------------------

# Runs `latts-tune` through its entry point, with the signal sent to the process itself
# at a chosen moment: while scoring (the 5th trial) or while writing the study.
INTERRUPTING = """
import os, signal, sys
import tuner.core.study as study
number = getattr(signal, sys.argv[1])
if sys.argv[2] == "scoring":
    scored = []
    objective = study.objective
    def interrupting(*args):
        scored.append(1)
        if len(scored) == 5:
            os.kill(os.getpid(), number)
        return objective(*args)
    study.objective = interrupting
else:
    add = study.add_finished_trials
    def interrupting(*args):
        os.kill(os.getpid(), number)
        return add(*args)
    study.add_finished_trials = interrupting
from tuner.cli import main
sys.argv = ["latts-tune", *sys.argv[3:]]
main()
"""


def _interrupted_run(url: str, spec: Path, signal_name: str, moment: str):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--storage", url, "run", "--deadline", "6s", "--spec", str(spec)]
    return subprocess.run([sys.executable, "-c", INTERRUPTING, signal_name, moment, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_one_line_and_writes_nothing(tmp_path, signal_name):
    url, spec = _new_world(tmp_path)
    before = _dump(url)
    done = _interrupted_run(url, spec, signal_name, "scoring")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == [INTERRUPTED]  # no Optuna traceback
    assert _dump(url) == before  # no empty study left behind


def test_an_interrupt_while_the_study_is_written_lets_it_finish(world, tmp_path):
    url, spec = _new_world(tmp_path)
    done = _interrupted_run(url, spec, "SIGINT", "writing")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == [INTERRUPTED]
    (name,) = optuna.get_all_study_names(url)
    interrupted, whole = (_trials_and_attrs(url, name),
                          _trials_and_attrs(world[0], name))  # the run not interrupted
    assert interrupted == whole  # the held write was not cut: every trial, figure and note


def _trials_and_attrs(url: str, name: str) -> tuple[int, list[str]]:
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name(name)
    return (len(storage.get_all_trials(study_id)),
            sorted(storage.get_study_system_attrs(study_id)))


# -- bounded waits ---------------------------------------------------------------------------


def test_validate_against_a_silent_server_gives_up_after_the_timeout(world, silent_port,
                                                                      caplog):
    url, _root = world
    before = _dump(url)
    server = f"http://127.0.0.1:{silent_port}"
    start_s = time.monotonic()
    result = CliRunner().invoke(cli, [
        "--storage", url, "--network-timeout", f"{TIMEOUT_S}s", "validate", "--preset",
        _preset_name(url), "--questions", "1", "--server-url", server])
    elapsed_s = time.monotonic() - start_s
    assert result.exit_code == 2, result.output
    assert _last_line(result.output) == (
        f"Error: the server at {server} did not answer GET /v1/models within {TIMEOUT_S} s; "
        "check that it is up and serving, or raise --network-timeout")
    assert elapsed_s < TIMEOUT_S + SLACK_S
    assert f"still waiting for the server at {server} to answer GET /v1/models" in caplog.text
    assert _dump(url) == before


def test_a_silent_postgresql_server_gives_up_after_the_timeout(world, silent_port):
    url, root = world
    before = _dump(url)
    storage = f"postgresql+psycopg://u@127.0.0.1:{silent_port}/db"
    start_s = time.monotonic()
    result = CliRunner().invoke(cli, [
        "--storage", storage, "--network-timeout", f"{TIMEOUT_S}s", "run", "--deadline", "6s",
        "--spec", str(root / "fam.yaml")])
    elapsed_s = time.monotonic() - start_s
    assert result.exit_code == 2, result.output
    assert _last_line(result.output) == (
        f"Error: cannot open database '{storage}': connection timeout expired; check the "
        "--storage URL")
    assert elapsed_s < TIMEOUT_S + SLACK_S
    assert _dump(url) == before


def test_the_server_engine_bounds_each_wait(silent_port):
    start_s = time.monotonic()
    with pytest.raises(ServerTimeout, match="did not answer GET /v1/models within 1 s"):
        OpenAIServerEngine(f"http://127.0.0.1:{silent_port}", timeout_s=1)
    assert time.monotonic() - start_s < 1 + SLACK_S


class _StallingCompletions(BaseHTTPRequestHandler):
    """Answers the engine's setup requests; a completion request gets headers, then nothing."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"data": [{"id": "m"}]} if self.path == "/v1/models" else {})
        self._send(200, body.encode())

    def do_POST(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        self.server.stop.wait(30)  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_stalled_completion_stream_is_bounded_too():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallingCompletions)
    server.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        engine = OpenAIServerEngine(f"http://127.0.0.1:{server.server_port}", timeout_s=1)
        start_s = time.monotonic()
        with pytest.raises(ServerTimeout, match="did not answer a completion request within"):
            engine.generate(["1+1="], SamplingConfig(n=1, max_tokens=4))
        assert time.monotonic() - start_s < 1 + SLACK_S
        engine.close()
    finally:
        server.stop.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


# -- foreign databases -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "profiles-import"])
def test_a_foreign_database_is_refused_before_any_write(world, tmp_path, command):
    _url, root = world
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, title TEXT)")
        connection.execute("INSERT INTO studies (title) VALUES ('not an Optuna study')")
    before = _dump(path)
    args = {"run": ["run", "--deadline", "6s", "--spec", str(root / "fam.yaml")],
            "profiles-import": ["profiles", "import",
                                str(REPO / "studies" / "testbed" / "profile.json.gz")]}
    result = CliRunner().invoke(cli, ["--storage", f"sqlite:///{path}", *args[command]])
    assert result.exit_code == 2, result.output
    assert _last_line(result.output) == (
        f"Error: database 'sqlite:///{path}' holds tables neither latts-tune nor Optuna wrote "
        "(studies); name a new or a latts-tune database with --storage")
    assert _dump(path) == before


def test_an_optuna_database_is_not_foreign(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name="theirs")
    Database(url).close()  # our tables join Optuna's, as in every latts-tune database


# -- the dashboard ---------------------------------------------------------------------------


def _request(app, method: str, path: str, body: bytes = b"") -> tuple[str, bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update({"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body),
                    "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json"})
    status: list[str] = []
    chunks = app(environ, lambda line, headers, exc_info=None: status.append(line))
    return status[0], b"".join(chunks)


def _study_id(url: str, name: str) -> int:
    return optuna.storages.RDBStorage(url).get_study_id_from_name(name)


WRITES = [("DELETE", "/api/studies/{id}", b""),
          ("POST", "/api/studies", json.dumps({"study_name": "x", "directions": ["maximize"]})),
          ("POST", "/api/studies/{id}/rename", json.dumps({"study_name": "renamed"})),
          ("PUT", "/api/studies/{id}/note", json.dumps({"version": 1, "body": "hi"}))]


@pytest.mark.parametrize(("method", "path", "body"), WRITES,
                         ids=[f"{method} {path}" for method, path, _ in WRITES])
def test_the_dashboard_refuses_writes_by_default(world, method, path, body):
    url, _root = world
    before = _dump(url)
    app = dashboard_app(url)
    route = path.format(id=_study_id(url, "fam-6s-q0.9"))
    status, answer = _request(app, method, route, body.encode() if isinstance(body, str)
                              else body)
    assert status == "403 Forbidden"
    assert json.loads(answer) == {"reason": "the dashboard is read-only; restart it with "
                                            "`latts-tune dashboard --allow-writes` to edit "
                                            "studies"}
    assert _request(app, "GET", "/api/studies")[0] == "200 OK"
    assert _dump(url) == before


def test_the_read_only_storage_refuses_writes_behind_the_routes(world):
    url, _root = world
    before = _dump(url)
    with pytest.raises(DashboardWriteRefused, match="delete_study: the dashboard is read-only"):
        ReadOnlyDashboardStorage(url).delete_study(_study_id(url, "fam-6s-q0.9"))
    assert _dump(url) == before


def test_allow_writes_opens_the_dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    Database(url).close()
    optuna.create_study(storage=url, study_name="doomed")
    status, _ = _request(dashboard_app(url, allow_writes=True), "DELETE",
                         f"/api/studies/{_study_id(url, 'doomed')}")
    assert status.startswith("204")
    assert optuna.get_all_study_names(url) == []


# -- names stored by an older release ---------------------------------------------------------


def test_export_of_an_unsafely_named_stored_study_writes_inside_the_folder(world, tmp_path):
    url, _root = world
    trial = _preset_name(url).rsplit("-", 1)[1]
    optuna.copy_study(from_study_name="fam-6s-q0.9", from_storage=url, to_storage=url,
                      to_study_name="../../escaped")  # as release 0.2 accepted it
    out = tmp_path / "deep" / "out"
    _ok(url, "export", "--study", "../../escaped", "--format", "json", "-o", str(out))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.parent for p in written] == [out]
    assert written[0].name.startswith("escaped-")
    assert written[0].name.endswith(f"-{trial}.preset.json")
