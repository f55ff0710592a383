"""The OpenAI-server engine against a scripted HTTP transport (the real server: contract)."""

import json
import time

import httpx
import pytest

from profilers import SamplingConfig, SpeculativeConfig, describe_local_hardware
from profilers.openai_engine import (
    OpenAIServerEngine,
    hardware_from_server_info,
    parse_spec_counters,
)
from storage import UserInputError

METRICS = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 10.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="m"} 1.7e9
vllm:spec_decode_num_drafts_total{engine="1",model_name="m"} 5.0
# TYPE vllm:spec_decode_num_draft_tokens counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 30.0
# TYPE vllm:spec_decode_num_accepted_tokens counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 21.0
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 8.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 9.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 4.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""


def sse(*events) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def chunk(index, text, tokens, finish=None, **extra):
    return {"choices": [{"index": index, "text": text, "token_ids": list(range(tokens)),
                         "finish_reason": finish, **extra}]}


class FakeServer:
    """Answers the routes the engine uses; `completions` is the scripted stream."""

    def __init__(self, metrics=METRICS, completions=b""):
        self.metrics, self.completions, self.bodies = metrics, completions, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served/tb-small"}]})
        if path == "/metrics":
            return httpx.Response(200, text=self.metrics)
        if path == "/version":
            return httpx.Response(200, json={"version": "0.32.0"})
        if path == "/v1/completions":
            self.bodies.append(json.loads(request.content))
            return httpx.Response(200, content=self.completions)
        return httpx.Response(404)


def engine_on(server, **kwargs):
    return OpenAIServerEngine("http://127.0.0.1:1/v1", transport=httpx.MockTransport(server),
                              **kwargs)


def test_counters_are_summed_over_engines_and_ordered_by_position():
    counters = parse_spec_counters(METRICS)
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (
        15, 30, 21)
    assert counters.accepted_per_position == (9, 8, 4)
    assert parse_spec_counters("") == parse_spec_counters("# nothing\n")


def test_hardware_comes_from_server_info_or_is_remote_unknown_per_host():
    info = {"system_env": {"cpu_info": "Architecture: x86_64\nCPU(s): 64\nModel name: EPYC",
                           "nvidia_gpu_models": "GPU 0: NVIDIA H100\nGPU 1: NVIDIA H100"}}
    known = hardware_from_server_info(info, "http://gpu-box:8000")
    assert (known.cpu_model, known.cpu_cores, known.gpu_model, known.gpu_count) == (
        "EPYC", 64, "NVIDIA H100", 2)
    one = hardware_from_server_info(None, "http://a:8000")
    other = hardware_from_server_info(None, "http://b:8000")
    assert one.cpu_model == "remote, unknown (a:8000)" and one.fingerprint != other.fingerprint


def test_generate_sends_one_streaming_request_and_splits_choices_per_prompt():
    stream = sse(chunk(0, "1", 1, prompt_token_ids=[5, 6, 7]), chunk(1, "2", 1),
                 chunk(2, "a", 2, prompt_token_ids=[5, 6]), chunk(3, "b", 1),
                 chunk(0, "+1", 2, "stop"), chunk(1, "", 0, "length"), chunk(2, "", 0, "stop"),
                 chunk(3, "c", 1, "length"), {"choices": [], "usage": {"prompt_tokens": 5}})
    server = FakeServer(completions=stream)
    engine = engine_on(server, model="tb-small", speculative=SpeculativeConfig.draft_model("d", 3))
    results = engine.generate(["p1", "p2"], SamplingConfig(n=2, max_tokens=8, seed=4))
    body = server.bodies[0]
    assert (body["model"], body["prompt"], body["n"], body["seed"], body["stream"]) == (
        "served/tb-small", ["p1", "p2"], 2, 4, True)
    first, second = results
    assert [(b.text, b.generated_tokens, b.finish_reason) for b in first.branches] == [
        ("1+1", 3, "stop"), ("2", 1, "length")]
    assert [b.generated_tokens for b in second.branches] == [2, 2]
    assert (first.prompt_tokens, second.prompt_tokens) == (3, 2)
    assert first.generated_tokens_timed == 3 and first.decode_s >= 0 < first.first_token_s
    assert engine.model == "tb-small" and engine.engine_version() == "vllm-server 0.32.0"
    # a server on a loopback address runs on this machine: one machine, one fingerprint
    assert engine.hardware() == describe_local_hardware()


def test_stop_strings_are_sent_only_when_the_task_has_some():
    stream = sse(chunk(0, "7", 1, "stop", prompt_token_ids=[1]))
    server = FakeServer(metrics="", completions=stream)  # no speculation
    engine = engine_on(server, model="tb-small")
    engine.generate(["p"], SamplingConfig(max_tokens=8, stop=("\n", "Q:")))
    engine.generate(["p"], SamplingConfig(max_tokens=8))
    assert server.bodies[0]["stop"] == ["\n", "Q:"] and "stop" not in server.bodies[1]


def test_streaming_interface_yields_deltas_until_every_branch_finished():
    server = FakeServer(completions=sse(chunk(0, "4", 1), chunk(1, "4", 1, "stop"),
                                        chunk(0, "#4", 2, "stop")))
    engine = engine_on(server, speculative=SpeculativeConfig.draft_model("d", 3))
    engine.submit("r1", [1, 2, 3], SamplingConfig(n=2, max_tokens=8))
    deltas = []
    deadline_s = time.perf_counter() + 10
    while sum(d.finish_reason is not None for d in deltas) < 2:  # as the executor loops
        assert time.perf_counter() < deadline_s
        deltas += engine.step()
    assert [(d.request_id, d.branch_index, d.text, d.new_tokens, d.finish_reason)
            for d in deltas] == [("r1", 0, "4", 1, None), ("r1", 1, "4", 1, "stop"),
                                 ("r1", 0, "#4", 2, "stop")]
    assert all(d.prompt_tokens == 3 for d in deltas) and engine.step() == []
    assert not engine.has_unfinished()


def test_aborted_requests_produce_no_further_deltas():
    engine = engine_on(FakeServer(completions=sse(chunk(0, "x", 1, "stop"))),
                       speculative=SpeculativeConfig.draft_model("d", 3))
    engine.submit("r1", "q", SamplingConfig())
    engine.abort(["r1"])
    assert not engine.has_unfinished() and engine.step() == []


def test_a_gamma_that_disagrees_with_the_server_is_refused():
    with pytest.raises(UserInputError, match=r"drafts 3 token\(s\) per step but gamma=2 was "
                       r"given; profile decode and acceptance take --draft and --gamma 3 "
                       r"\(decode also --no-baseline\); profile accuracy needs a server "
                       r"without --speculative-config"):
        engine_on(FakeServer(), speculative=SpeculativeConfig.draft_model("d", 2))
    with pytest.raises(UserInputError, match="gamma=0 was given"):
        engine_on(FakeServer())
    plain = 'vllm:num_requests_running{engine="0"} 0.0\n'
    with pytest.raises(UserInputError, match="drafts 0 token.* start it with --speculative-con"):
        engine_on(FakeServer(metrics=plain), speculative=SpeculativeConfig.draft_model("d", 2))
    assert engine_on(FakeServer(metrics=plain)).speculative_counters().num_drafts == 0


def test_an_unreachable_server_is_a_user_error():
    with pytest.raises(UserInputError, match="cannot reach the server at http://127.0.0.1:9"):
        OpenAIServerEngine("http://127.0.0.1:9", timeout_s=2)


NO_DRAFT = 'vllm:num_requests_running{engine="0"} 0.0\n'  # a server without a draft


def test_a_preset_model_the_server_does_not_serve_is_a_user_error():
    server = FakeServer(metrics=NO_DRAFT)
    assert engine_on(server, model="served/tb-small",
                     model_must_be_served=True).served_model == "served/tb-small"
    with pytest.raises(UserInputError, match="serves served/tb-small, not models/tb-large; "
                                             "start it with the preset's command"):
        engine_on(server, model="models/tb-large", model_must_be_served=True)
    # profiling stores under the given name whatever the server calls its model
    assert engine_on(server, model="tb-large").served_model == "served/tb-small"


def test_the_api_key_is_sent_and_a_refusal_names_the_variable():
    def guarded(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer k3y":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return FakeServer(metrics=NO_DRAFT)(request)

    assert engine_on(guarded, api_key="k3y").served_model == "served/tb-small"
    with pytest.raises(UserInputError, match="401 Unauthorized.*set LATTS_TUNE_API_KEY"):
        engine_on(guarded, api_key="wrong")
