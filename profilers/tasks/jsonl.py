"""Your own data: a JSONL file of questions and answers, with a grader of your choice.

Rows: ``{"question": ..., "answer": ...}`` plus an optional ``id`` (default: a hash of
the question), which also picks the row's split (`profilers.tasks.rows`). Graders:

- ``exact``: the extracted answer equals the gold one after trimming whitespace;
- ``numeric``: both parse as numbers and agree within ``rel_tol`` or ``abs_tol``;
- ``math-verify``: LaTeX equivalence (gold first), as MATH-500.

The extracted answer is turned into the grader's vote key (`profilers.tasks.graders`), so
spellings the grader treats as one answer ("17." and "17") are also one vote.

The answer is extracted with ``extract``: ``boxed`` (the last ``\\boxed{}``; default for
math-verify), ``last-number`` (default for numeric) or ``last-line`` (default for exact).
"""

from __future__ import annotations

import hashlib
import re

from profilers.tasks.base import Question
from profilers.tasks.graders import GRADERS, make_grader
from profilers.tasks.latex import last_boxed
from profilers.tasks.prompts import PromptBuilder, check_stop
from profilers.tasks.rows import read_jsonl, rows_of_split
from storage import UserInputError

EXTRACTORS = ("boxed", "last-number", "last-line")
DEFAULT_EXTRACTOR = {"exact": "last-line", "numeric": "last-number", "math-verify": "boxed"}
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


EXTRACT = {"boxed": last_boxed, "last-number": _last_number, "last-line": _last_line}


def row_id(row: dict) -> str:
    """A row's id: its ``id`` field, else a hash of its question."""
    if "id" in row:
        return str(row["id"])
    return hashlib.sha256(str(row["question"]).encode()).hexdigest()[:12]


class JsonlTask:
    """Questions from a JSONL file, graded by `grader`; `name` is the task string."""

    def __init__(self, path: str, grader: str = "exact", extract: str | None = None,
                 rel_tol: float = 1e-6, abs_tol: float = 0.0, instruction: str = "",
                 chat_template: str | None = None, name: str | None = None,
                 prompt_template: str | None = None, stop: tuple[str, ...] = ()) -> None:
        if grader not in GRADERS:
            raise UserInputError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}"
                                 " (e.g. jsonl:data.jsonl?grader=numeric)")
        extract = extract or DEFAULT_EXTRACTOR[grader]
        if extract not in EXTRACTORS:
            raise UserInputError(f"unknown extract {extract!r}; choose one of "
                                 f"{', '.join(EXTRACTORS)}")
        if rel_tol < 0 or abs_tol < 0:
            raise UserInputError("rel_tol and abs_tol must be >= 0, e.g. rel_tol=1e-6")
        self.path, self.extract = path, extract
        self.grader = make_grader(grader, rel_tol, abs_tol)
        self.name = name or f"jsonl:{path}"
        self.prompt = PromptBuilder(instruction, chat_template, prompt_template)
        self.stop = check_stop(stop)
        self._rows = read_jsonl(path, ("question", "answer"))
        for row in self._rows:
            row["id"] = row_id(row)

    def load_questions(self, split: str, count: int) -> list[Question]:
        chosen = rows_of_split(self._rows, "id", split, count, self.path)
        return [Question(row["id"], str(row["question"]), str(row["answer"])) for row in chosen]

    def build_prompt(self, question: Question, model: str | None = None) -> str:
        return self.prompt(question.text)

    def extract_answer(self, completion: str) -> str | None:
        """The grader's vote key of the answer `extract` finds."""
        return self.grader.vote_key(EXTRACT[self.extract](completion))

    def grade(self, question: Question, answer: str | None) -> bool:
        return self.grader.correct(question.gold_answer, answer)
