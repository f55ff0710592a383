"""The task of studies/smollm2: its questions file is what its script writes, and its
prompts go through SmolLM2-135M-Instruct's own chat template (the converted model in
latts-tune's cache), with its stop strings and numeric vote keys."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from unavailable import missing

from profilers.tasks import get_task
from profilers.voting import Ballot, MajorityVote
from storage import UserInputError

STUDY = Path(__file__).resolve().parents[2] / "studies" / "smollm2"


def _script():
    spec = importlib.util.spec_from_file_location("make_questions", STUDY / "make_questions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task():
    return get_task(f"task:{STUDY / 'task.yaml'}")


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    """SmolLM2 converted into latts-tune's cache, where the task's chat_template points."""
    from profilers.gguf import ensure_smollm2

    for module in ("transformers", "gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            missing(f"converting SmolLM2 needs {module}: pip install gguf accelerate "
                    "transformers")
    try:
        return ensure_smollm2()
    except UserInputError as error:
        missing(f"NO SMOLLM2 GGUF: {error}")


def test_the_committed_questions_are_what_the_script_writes():
    rows = [json.loads(line) for line in (STUDY / "questions.jsonl").read_text().splitlines()]
    assert rows == _script().questions()
    assert len({row["id"] for row in rows}) == len(rows) == 400
    for row in rows:  # "plus-7-6": "What is 7 plus 6?", 13
        kind, left, right = row["id"].split("-")
        assert row["kind"] == kind and row["answer"] == str(int(left) + int(right))
        assert re.search(rf"\b{left}\b.*\b{right}\?$", row["question"]), row
    assert {row["kind"] for row in rows} == {"add", "plus", "sum", "much"}


def test_the_splits_hold_enough_questions_for_profiling_and_validation(task):
    assert len(task.load_questions("heldout", 200)) == 200
    assert len(task.load_questions("validation", 100)) == 100  # issue 17's fidelity runs


def test_the_task_is_numeric_with_stop_strings_and_a_stable_id(task):
    assert (task.name, task.stop) == ("smollm2-addition", ("\n", "<|im_end|>"))
    question = next(q for q in task.load_questions("test", 400) if q.question_id == "add-9-8")
    keys = [task.extract_answer(text) for text in ("17.", "17", "The answer is 17.0", "18")]
    assert keys == ["17", "17", "17", "18"]
    ballots = [Ballot(key, 2, index) for index, key in enumerate(keys)]
    assert MajorityVote().decide(ballots, 4).answer == "17" and task.grade(question, "17")


def test_the_prompt_renders_through_smollm2s_chat_template(task, smollm2_dir):
    question = next(q for q in task.load_questions("test", 400) if q.question_id == "add-9-8")
    prompt = task.build_prompt(question, smollm2_dir.name)
    assert prompt.endswith("<|im_start|>user\nWhat is 9 + 8?\n\nAnswer with just the number."
                           "<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.startswith("<|im_start|>system\n")  # SmolLM2's template adds its system turn
    with pytest.raises(UserInputError, match="no chat template for model 'tb-large'"):
        task.build_prompt(question, "tb-large")
