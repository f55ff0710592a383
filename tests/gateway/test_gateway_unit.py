"""Gateway parts that need no engine: settings, request checks, the admission limit, and
network faults (an upstream that is down, or one that accepts and never answers)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
import pytest

from profilers.tasks import get_task
from storage import UserInputError
from tuner.gateway import Admission, GatewayError, GatewaySettings, create_app, free_port
from tuner.gateway.client_request import parse_request
from tuner.gateway.server import start_in_thread
from tuner.gateway.upstream import upstream_payload

SERVER_SLACK_S = 0.05  # deadline to response, measured by the gateway
CLIENT_SLACK_S = 0.25  # plus the client's side on a loaded 2-core machine


def make_settings(**overrides) -> GatewaySettings:
    values = dict(upstream_url="http://127.0.0.1:9", served_model="m", task="arithmetic",
                  n_branches=4, deadline_s=1.0, temperature=0.6, max_tokens=64,
                  api_key=None, upstream_api_key=None)
    return GatewaySettings(**{**values, **overrides})


def test_api_keys_come_from_the_environment_and_stay_out_of_repr(monkeypatch):
    monkeypatch.setenv("LATTS_TUNE_API_KEY", "s3cret")
    settings = GatewaySettings("http://127.0.0.1:8000/v1/", "m", "arithmetic", 4, 1.0)
    assert settings.api_key == settings.upstream_api_key == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.upstream_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("LATTS_TUNE_API_KEY", "")
    assert GatewaySettings("http://h:1", "m", "arithmetic", 4, 1.0).api_key is None


@pytest.mark.parametrize("overrides,fragment", [
    ({"deadline_s": 0}, "deadline_s must be positive"),
    ({"n_branches": 0}, "n_branches must be positive"),
    ({"queue_policy": "drop"}, "queue policy 'drop'"),
    ({"upstream_url": "127.0.0.1:8000"}, "must start with http://"),
    ({"top_p": 1.5}, "top_p in (0, 1]"),
    ({"stream_interval_tokens": 0}, "stream_interval_tokens must be positive"),
])
def test_bad_settings_say_what_to_fix(overrides, fragment):
    with pytest.raises(UserInputError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        make_settings(**overrides)


def test_create_app_refuses_an_unknown_vote_rule_or_task():
    with pytest.raises(UserInputError, match="unknown vote rule 'best'"):
        create_app(make_settings(vote_rule="best"))
    with pytest.raises(UserInputError, match="unknown task 'poetry'"):
        create_app(make_settings(task="poetry"))


def test_a_task_resolved_from_the_database_is_the_one_the_gateway_votes_with(tmp_path):
    task_file = tmp_path / "task.yaml"
    (tmp_path / "q.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    task_file.write_text("id: sums\nfile: q.jsonl\ngrader: numeric\nstop: ['\\n']\n")
    task = get_task(f"task:{task_file}")
    app = create_app(make_settings(task="sums", resolved_task=task))  # "sums": no task string
    assert app.state.gateway.task is task and task.extract_answer("2.") == "2"


def test_the_upstream_request_carries_the_preset_sampling_and_n_branches():
    settings = make_settings(stop=("\n",))
    payload = upstream_payload("chat", {"messages": []}, 7, settings)
    assert payload == {"model": "m", "messages": [], "n": 4, "temperature": 0.6, "top_p": 1.0,
                       "max_tokens": 64, "stream": True,
                       "stream_options": {"include_usage": True}, "return_token_ids": True,
                       "stop": ["\n"], "seed": 7, "stream_interval": 16}
    per_token = upstream_payload("completions", {"prompt": "x"}, None,
                                 make_settings(stream_interval_tokens=None))
    assert "stream_interval" not in per_token and "seed" not in per_token


def _parse(kind: str, **fields) -> object:
    try:
        return parse_request(kind, json.dumps(fields).encode(), make_settings(stop=("\n",)))
    except GatewayError as error:
        return (error.status, error.param, error.code)


def test_values_equal_to_the_preset_are_accepted_and_the_seed_is_forwarded():
    request = _parse("completions", model="m", prompt=["1+2:"], n=1, stream=False,
                     temperature=0.6, max_tokens=64, stop="\n", seed=5, user="u",
                     frequency_penalty=0)
    assert request.prompt == {"prompt": "1+2:"} and request.seed == 5
    chat = _parse("chat", model="m", messages=[{"role": "user", "content": "1+2:"}],
                  max_completion_tokens=64, top_p=1)
    assert chat.prompt == {"messages": [{"role": "user", "content": "1+2:"}]}


@pytest.mark.parametrize("fields,refusal", [
    ({"prompt": "x"}, (400, "model", "missing_required_parameter")),
    ({"model": "other", "prompt": "x"}, (404, "model", "model_not_found")),
    ({"model": "m", "prompt": ""}, (400, "prompt", "invalid_type")),
    ({"model": "m", "prompt": "x", "n": True}, (400, "n", "unsupported_value")),
    ({"model": "m", "prompt": "x", "temperature": "0.6"}, (400, "temperature",
                                                           "unsupported_value")),
    ({"model": "m", "prompt": "x", "stop": ["\n", "#"]}, (400, "stop", "unsupported_value")),
    ({"model": "m", "prompt": "x", "seed": 1.5}, (400, "seed", "invalid_type")),
    ({"model": "m", "prompt": "x", "tools": [{"type": "function"}]}, (400, "tools",
                                                                     "unsupported_value")),
])
def test_requests_that_conflict_with_the_preset_are_refused(fields, refusal):
    assert _parse("completions", **fields) == refusal


def test_chat_messages_need_roles():
    assert _parse("chat", model="m", messages=[{"content": "hi"}]) == \
        (400, "messages[0]", "invalid_value")
    assert _parse("chat", model="m", messages="hi") == (400, "messages", "invalid_type")


def test_admission_admits_the_limit_queues_the_bound_and_rejects_the_rest():
    async def scenario() -> list[str]:
        admission = Admission(running_limit=1, waiting_limit=1)
        loop = asyncio.get_running_loop()
        outcomes: list[str] = []

        async def request(name: str, hold_s: float) -> None:
            try:
                async with admission.slot(loop.time() + 1.0):
                    outcomes.append(f"{name} in")
                    await asyncio.sleep(hold_s)
            except GatewayError as error:
                retry_ms = int(error.headers["retry-after-ms"])
                outcomes.append(f"{name} {error.status} retry<={retry_ms <= 1000}")

        await asyncio.gather(request("a", 0.1), request("b", 0), request("c", 0))
        return outcomes

    assert asyncio.run(scenario()) == ["a in", "c 429 retry<=True", "b in"]


def test_a_queued_request_gives_up_at_its_deadline():
    async def scenario() -> int:
        admission = Admission(running_limit=1, waiting_limit=5)
        loop = asyncio.get_running_loop()
        async with admission.slot(loop.time() + 5):
            with pytest.raises(GatewayError) as refused:
                async with admission.slot(loop.time() + 0.05):
                    pass
        return refused.value.status

    assert asyncio.run(scenario()) == 429


def test_an_unreachable_upstream_is_a_502_and_unhealthy():
    gateway = start_in_thread(make_settings(upstream_url=f"http://127.0.0.1:{free_port()}"))
    try:
        failed = httpx.post(f"{gateway.base_url}/v1/completions",
                            json={"model": "m", "prompt": "1+2:"})
        health = httpx.get(f"{gateway.base_url}/health")
    finally:
        gateway.stop()
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "upstream_error"
    assert health.status_code == 503 and "unreachable" in health.json()["reason"]


@pytest.fixture
def silent_upstream(silent_port):
    """An upstream that accepts connections and never answers (a hung vLLM)."""
    return f"http://127.0.0.1:{silent_port}"


def test_a_hung_upstream_still_gets_an_answer_at_the_deadline(silent_upstream):
    gateway = start_in_thread(make_settings(upstream_url=silent_upstream, deadline_s=0.3))
    client = httpx.Client(timeout=10)  # made before timing: building one takes ~0.1 s
    try:
        started = time.perf_counter()
        response = client.post(f"{gateway.base_url}/v1/completions",
                               json={"model": "m", "prompt": "1+2:"})
        elapsed_s = time.perf_counter() - started
    finally:
        client.close()
        gateway.stop()
    body = response.json()
    print(f"\nhung upstream, deadline 0.3 s: answered after {elapsed_s:.3f} s (client), "
          f"{body['latts']['elapsed_s']:.3f} s (gateway)")
    assert response.status_code == 200
    assert 0.3 <= body["latts"]["elapsed_s"] <= 0.3 + SERVER_SLACK_S
    assert 0.3 <= elapsed_s <= 0.3 + CLIENT_SLACK_S
    assert body["latts"]["deadline_cut"] and body["latts"]["branches_finished"] == 0
    assert body["latts"]["answer"] is None
    assert body["choices"][0] == {"index": 0, "finish_reason": "length", "logprobs": None,
                                  "text": ""}


def test_importing_the_gateway_loads_no_engine():
    import subprocess

    code = ("import sys, tuner.gateway; print(sorted({'vllm', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
