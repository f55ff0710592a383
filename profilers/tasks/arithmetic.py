"""The testbed task: chained two-digit addition/subtraction with a scratchpad.

A question is a chain such as ``37+25-18+44``; the model writes one scratchpad step per
operation and a final answer: ``37+25=62;62-18=44;44+44=88#88``. Errors compound with
the number of steps, so longer answers are more often wrong, as with real reasoning tasks.

Splits are disjoint by construction: a question belongs to the split chosen by a stable
hash of its text, so no held-out question can appear in training data.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator

from profilers.tasks.base import Question

SPLIT_BUCKETS = {"heldout": {0}, "validation": {1}, "train": set(range(2, 20))}
HASH_BUCKETS = 20
MIN_STEPS, MAX_STEPS = 2, 5
MAX_VALUE = 99
_ANSWER = re.compile(r"#(-?\d+)\s*$")


def _split_of(text: str) -> str:
    bucket = zlib.crc32(text.encode()) % HASH_BUCKETS
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def _random_chain(rng: random.Random) -> tuple[str, list[tuple[int, str, int, int]]]:
    """Return the question text and its steps as (left, op, right, result)."""
    value = rng.randint(10, MAX_VALUE)
    text = str(value)
    steps = []
    for _ in range(rng.randint(MIN_STEPS, MAX_STEPS)):
        ops = [op for op, room in (("+", MAX_VALUE - value), ("-", value)) if room >= 1]
        op = rng.choice(ops)
        room = MAX_VALUE - value if op == "+" else value
        operand = rng.randint(1, room)
        result = value + operand if op == "+" else value - operand
        steps.append((value, op, operand, result))
        text += f"{op}{operand}"
        value = result
    return text, steps


def scratchpad(steps: list[tuple[int, str, int, int]]) -> str:
    """Return the worked solution for `steps`, ending in ``#answer``."""
    lines = [f"{left}{op}{right}={result}" for left, op, right, result in steps]
    return ";".join(lines) + f"#{steps[-1][3]}"


def iter_examples(split: str, seed: int) -> Iterator[tuple[str, str, str]]:
    """Yield (question text, scratchpad, answer) of `split` forever, deterministically."""
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_BUCKETS)}")
    rng = random.Random(f"arithmetic:{split}:{seed}")
    while True:
        text, steps = _random_chain(rng)
        if _split_of(text) == split:
            yield text, scratchpad(steps), str(steps[-1][3])


class ArithmeticTask:
    """Chained arithmetic with a scratchpad; exact-match grading of the ``#answer``."""

    name = "arithmetic"
    stop: tuple[str, ...] = ()  # the testbed models end with EOS

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def load_questions(self, split: str, count: int) -> list[Question]:
        examples = iter_examples(split, self.seed)
        questions = []
        for index in range(count):
            text, _, answer = next(examples)
            questions.append(Question(f"{split}-{index}", text, answer))
        return questions

    def build_prompt(self, question: Question, model: str | None = None) -> str:
        return f"{question.text}:"

    def extract_answer(self, completion: str) -> str | None:
        match = _ANSWER.search(completion)
        return match.group(1) if match else None

    def grade(self, question: Question, answer: str | None) -> bool:
        return answer is not None and answer == question.gold_answer
