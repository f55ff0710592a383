"""MATH-500 (HuggingFaceH4/MATH-500): competition maths, answers in LaTeX, math-verify grading.

Rows: problem, solution, answer, subject, level, unique_id. Loaded from a local JSONL file
(``math500:PATH``) or, with network access, from the `datasets` hub (``math500``; needs
``pip install datasets``). The benchmark has one split, "test" (500 rows); our splits are
disjoint subsets chosen by a stable hash of ``unique_id`` (see `profilers.tasks.rows`):
heldout ~60% (accuracy profiles), validation ~30% (`latts-tune validate`), train ~10%
(warm-up), and "test" is all 500 (the paper's number; overlaps the others).

The answer is the last ``\\boxed{...}`` of the completion, lightly canonicalised so equal
spellings vote together (`canonical_latex`); it is graded with math-verify
against the gold ``answer`` (gold first), so ``\\frac{1}{2}``, ``0.5`` and ``\\dfrac12`` agree.
"""

from __future__ import annotations

from profilers.tasks.base import Question
from profilers.tasks.graders import MathVerifyGrader
from profilers.tasks.latex import last_boxed
from profilers.tasks.prompts import DEFAULT_INSTRUCTION, PromptBuilder, check_stop
from profilers.tasks.rows import read_jsonl, rows_of_split
from storage import UserInputError

HUB_DATASET = "HuggingFaceH4/MATH-500"
FIELDS = ("problem", "answer", "unique_id")


def _hub_rows() -> list[dict]:
    try:
        import datasets
    except ImportError as error:
        raise UserInputError("loading MATH-500 from the hub needs datasets: pip install "
                             "datasets, or pass a local file as --task math500:PATH") from error
    return [dict(row) for row in datasets.load_dataset(HUB_DATASET, split="test")]


class Math500Task:
    """MATH-500 from `path` (JSONL) or the hub; `name` is the task string it was built from."""

    def __init__(self, path: str | None = None, instruction: str = DEFAULT_INSTRUCTION,
                 chat_template: str | None = None, name: str = "math500",
                 prompt_template: str | None = None, stop: tuple[str, ...] = ()) -> None:
        self.name = name
        self.path = path
        self.prompt = PromptBuilder(instruction, chat_template, prompt_template)
        self.stop = check_stop(stop)
        self.grader = MathVerifyGrader()
        self._rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        if self._rows is None:
            self._rows = read_jsonl(self.path, FIELDS) if self.path else _hub_rows()
        return self._rows

    def load_questions(self, split: str, count: int) -> list[Question]:
        chosen = rows_of_split(self.rows(), "unique_id", split, count, self.path or HUB_DATASET)
        return [Question(str(row["unique_id"]), row["problem"], str(row["answer"]))
                for row in chosen]

    def build_prompt(self, question: Question, model: str | None = None) -> str:
        return self.prompt(question.text)

    def extract_answer(self, completion: str) -> str | None:
        return self.grader.vote_key(last_boxed(completion))

    def grade(self, question: Question, answer: str | None) -> bool:
        return self.grader.correct(question.gold_answer, answer)
