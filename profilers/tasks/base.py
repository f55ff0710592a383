"""The task interface: questions, prompts, answer extraction and grading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Question:
    """One question of a task, with the gold answer as the grader expects it."""

    question_id: str
    text: str
    gold_answer: str


class Task(Protocol):
    """What a profiler or the executor needs from a task."""

    name: str

    def load_questions(self, split: str, count: int) -> list[Question]:
        """Return `count` questions of `split` ("train", "heldout", "validation")."""
        ...

    def build_prompt(self, question: Question) -> str:
        """Return the prompt text sent to the engine for `question`."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """Return the final answer in `completion`, or None when it gives none."""
        ...

    def grade(self, question: Question, answer: str | None) -> bool:
        """Return whether `answer` is correct for `question`."""
        ...
