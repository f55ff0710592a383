"""Graders: the canonical vote key of an extracted answer, and whether a key is correct.

A grader owns both, so that what voting counts as one answer is what grading counts as one
answer: under the numeric grader "17.", "17" and "17.0" are one key ("17"), one vote and
one grade. Tasks return the key from `extract_answer`, so the accuracy profile stores it,
the simulator votes on it, and the executor and the gateway vote on it too.
"""

from __future__ import annotations

import math
from typing import Protocol

from profilers.tasks.latex import canonical_latex, math_equal


class Grader(Protocol):
    """Turns extracted answers into vote keys and grades keys against a gold answer."""

    name: str

    def vote_key(self, answer: str | None) -> str | None:
        """The canonical spelling `answer` votes with; None when it is no answer."""
        ...

    def correct(self, gold: str, key: str | None) -> bool:
        """Whether the vote key `key` is a right answer for `gold`."""
        ...


def parse_number(text: str) -> float | None:
    """The finite number `text` spells ("1,000", "17.", " -3.5e2 "), or None."""
    cleaned = text.strip().replace(",", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def canonical_number(value: float) -> str:
    """One spelling per value: whole numbers without a fraction ("17"), others as Python's
    shortest round-trip repr ("0.5", "1e-07"); -0 is "0"."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class ExactGrader:
    """The key is the answer trimmed of whitespace; right when it equals the gold answer."""

    name = "exact"

    def vote_key(self, answer: str | None) -> str | None:
        return (answer or "").strip() or None

    def correct(self, gold: str, key: str | None) -> bool:
        return key is not None and key == gold.strip()


class NumericGrader:
    """The key is the number, spelled canonically; right within `rel_tol` or `abs_tol`."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> None:
        self.rel_tol, self.abs_tol = rel_tol, abs_tol

    def vote_key(self, answer: str | None) -> str | None:
        value = None if answer is None else parse_number(answer)
        return None if value is None else canonical_number(value)

    def correct(self, gold: str, key: str | None) -> bool:
        gold_value = parse_number(gold)
        value = None if key is None else parse_number(key)
        return (gold_value is not None and value is not None
                and math.isclose(gold_value, value, rel_tol=self.rel_tol, abs_tol=self.abs_tol))


class MathVerifyGrader:
    """The key is a light canonical LaTeX spelling (`canonical_latex`); right when
    math-verify finds it equivalent to the gold answer (gold first)."""

    name = "math-verify"

    def vote_key(self, answer: str | None) -> str | None:
        return canonical_latex(answer)

    def correct(self, gold: str, key: str | None) -> bool:
        return math_equal(gold, key)


def make_grader(name: str, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> Grader:
    """The grader called `name` (one of GRADERS); tolerances apply to the numeric one."""
    if name == "numeric":
        return NumericGrader(rel_tol, abs_tol)
    return ExactGrader() if name == "exact" else MathVerifyGrader()


GRADERS = ("exact", "numeric", "math-verify")
