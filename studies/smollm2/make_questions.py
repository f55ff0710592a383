"""Write studies/smollm2/questions.jsonl: the addition questions of the SmolLM2 study.

Every one-digit sum (0+0 .. 9+9, 100 questions; about 45% of SmolLM2-135M-Instruct's
single samples are right there, issue 17) and TWO_DIGIT_COUNT sums of a two-digit and a
one-digit number drawn with a fixed seed, so the study has enough questions for its splits
(profiling ~60%, validation ~30%, by `profilers.tasks.rows.split_of` on the id). Rows are
shuffled with the seed: a split's first N questions (what `--questions N` takes) then mix
the kinds as the whole file does, so a profile and a validation of different sizes ask the
same kind of questions. Each row: ``{"id", "question", "answer", "kind"}``. Deterministic:
the same file on every run.

    python studies/smollm2/make_questions.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 17
TWO_DIGIT_COUNT = 300
OUTPUT = Path(__file__).resolve().parent / "questions.jsonl"


def _row(left: int, right: int, kind: str) -> dict:
    return {"id": f"add-{left}-{right}", "question": f"What is {left} + {right}?",
            "answer": str(left + right), "kind": kind}


def questions(seed: int = SEED, two_digit_count: int = TWO_DIGIT_COUNT) -> list[dict]:
    """Every one-digit sum and `two_digit_count` distinct two-digit + one-digit sums,
    drawn and shuffled with `seed`."""
    rng = random.Random(seed)
    rows = [_row(left, right, "one-digit") for left in range(10) for right in range(10)]
    pairs = [(left, right) for left in range(10, 100) for right in range(1, 10)]
    rows += [_row(left, right, "two-digit") for left, right in rng.sample(pairs, two_digit_count)]
    rng.shuffle(rows)
    return rows


def main() -> None:
    OUTPUT.write_text("".join(json.dumps(row) + "\n" for row in questions()), encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(questions())} questions)")


if __name__ == "__main__":
    main()
