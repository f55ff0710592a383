"""The testbed task: disjoint splits, correct scratchpads, extraction and grading."""

import re

from profilers.tasks import get_task
from profilers.tasks.arithmetic import MAX_STEPS, MAX_VALUE, MIN_STEPS, iter_examples


def _evaluate(text: str) -> int:
    tokens = re.findall(r"[+-]|\d+", text)
    value = int(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
        value = value + int(operand) if op == "+" else value - int(operand)
    return value


def test_scratchpad_steps_are_correct_and_end_in_the_answer():
    examples = iter_examples("train", seed=3)
    for _ in range(500):
        text, solution, answer = next(examples)
        assert int(answer) == _evaluate(text)
        steps, final = solution.split("#")
        assert final == answer
        parts = steps.split(";")
        assert MIN_STEPS <= len(parts) <= MAX_STEPS
        for part in parts:
            left, result = part.split("=")
            assert _evaluate(left) == int(result)
            assert 0 <= int(result) <= MAX_VALUE


def test_splits_are_disjoint():
    def first(split, count):
        examples = iter_examples(split, seed=0)
        return {next(examples)[0] for _ in range(count)}

    train, heldout = first("train", 5000), first("heldout", 300)
    validation = first("validation", 300)
    assert not train & heldout
    assert not train & validation
    assert not heldout & validation


def test_questions_are_deterministic_and_graded_by_exact_answer():
    task = get_task("arithmetic")
    first, again = task.load_questions("heldout", 20), task.load_questions("heldout", 20)
    assert first == again
    question = first[0]
    assert task.build_prompt(question) == f"{question.text}:"
    completion = f"whatever;steps#{question.gold_answer}"
    assert task.grade(question, task.extract_answer(completion))
    assert not task.grade(question, task.extract_answer(completion + "1"))
    assert task.extract_answer("no final answer") is None
    assert not task.grade(question, None)
