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
    # Strings that end a generated answer (the engine drops them from the text); sent with
    # every request of this task: profiling, validation, presets and the gateway.
    stop: tuple[str, ...]

    def load_questions(self, split: str, count: int) -> list[Question]:
        """Return `count` questions of `split` ("train", "heldout", "validation")."""
        ...

    def build_prompt(self, question: Question, model: str | None = None) -> str:
        """Return the prompt text sent to `model` (its name as profiles store it, e.g.
        "tb-large"; None when unknown) for `question`. Only tasks with a chat template per
        model need the model."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """Return the final answer in `completion` as its vote key (spellings the grader
        counts as one answer are one key), or None when it gives none."""
        ...

    def grade(self, question: Question, answer: str | None) -> bool:
        """Return whether `answer` is correct for `question`."""
        ...
